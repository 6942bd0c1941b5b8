"""The training loop: ``train`` reads top to bottom; steps, evaluation and saving are plain functions.

Shape of an epoch (``schedule``): in ``one_task`` mode every batch of every task once, in a
seeded shuffled order, or drawn by a ``multitask.sampler``; in ``all_tasks`` mode one batch of
every task per step. Each optimizer step may accumulate several micro-batches. Evaluation runs
every ``eval_every`` steps or at each epoch end; each evaluation writes the ``last`` checkpoint
(for --resume) and, on improvement, ``best``. The optimizer steps in the step engine only
(``training/engine.py``); a multi-task step's losses become gradients in the weighting's
``backward`` (``multitask/weighting/base.py``), a surgery combines the task gradients.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from polytask import runs
from polytask.config.schema import ExperimentConfig
from polytask.evaluation.evaluate import evaluate_task, move
from polytask.io import write_json
from polytask.precision import label as precision_label
from polytask.training import checkpoint as ckpt
from polytask.training import schedule
from polytask.training.gradients import top_shared_parameters
from polytask.training.logging import Progress
from polytask.training.run import (
    LoopState,
    Run,
    build_feature_cache,
    build_run,
    epoch_features,
    restore,
    resume_checkpoint,
)

__all__ = ["LoopState", "TrainResult", "evaluate", "read_metrics", "save", "train", "train_run", "train_step"]


@dataclass
class TrainResult:
    run_dir: Path
    metric: str
    best_metric: float | None
    best_step: int | None
    steps: int
    dev: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    examples_per_second: float = 0.0
    precision: str = "no"  # what the steps ran in: no (fp32), bf16 or fp16 (train.mixed_precision resolved)
    refined: dict[str, dict[str, Any]] = field(default_factory=dict)  # multitask.refine: task -> its run


def train(
    cfg: ExperimentConfig,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune the encoder and every task head of ``cfg``; return the result summary.

    Args:
        cfg: the experiment.
        output_dir: the run directory (default ``cfg.output_dir`` or ``runs/<name>``).
        resume: continue from ``<run>/checkpoints/last`` exactly where it stopped.
        overwrite: start afresh even if the run directory already has checkpoints.
        callbacks: objects with any of ``on_log(step, record)``, ``on_evaluate(step, metrics)``
            (return True to stop the run), ``on_save(step, path)`` and ``on_end(result)``.
    """
    return train_run(build_run(cfg, output_dir, resume, overwrite, callbacks), resume, callbacks)


def train_run(run: Run, resume: bool = False, callbacks: list[Any] | None = None) -> TrainResult:
    """Train a run made by ``build_run`` (which a procedure may have extended, e.g. with a
    ``run.objective``); releases the run folder's lock at the end. ``callbacks`` (the caller's,
    not the trackers) also reach the per-task runs of ``multitask.refine``."""
    cfg = run.cfg
    try:
        result = _train(run, resume)
    finally:
        if run.lock is not None:
            run.lock.release()
    if cfg.multitask.refine and len(cfg.tasks) > 1 and not result.interrupted:
        # MT-DNN: each task fine-tuned alone from the joint encoder.
        from polytask.procedures.refine import refine

        result.refined = refine(cfg, result.run_dir, callbacks)
        if run.main:
            write_json(result.run_dir / runs.RESULTS_FILE,
                       {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()})
    return result


def _train(run: Run, resume: bool) -> TrainResult:
    cfg = run.cfg
    if resume:
        restore(run, resume_checkpoint(cfg, run.run_dir))
    build_feature_cache(run)
    state, plan = run.state, run.plan
    result = TrainResult(run.run_dir, run.metric, None, None, 0, precision=run.accelerator.mixed_precision)
    progress = Progress(plan.total_steps, enabled=run.main and cfg.train.progress, start=state.step,
                        epoch=state.epoch + 1)
    progress.note(startup_summary(run))
    run.started, seen_at_start = time.perf_counter(), state.examples_seen
    run.model.train()
    with run.engine.stop, progress:
        while state.step < plan.total_steps and state.epoch < plan.n_epochs:
            epoch_features(run, state.epoch)
            batches = schedule.epoch_batches(run.sched_feats, cfg.train, state.epoch, run.accelerator.num_processes,
                                             run.accelerator.process_index, plan.sampler, plan.run_epochs, plan.mode)
            while state.batch_in_epoch < len(batches) and state.step < plan.total_steps:
                group = batches[state.batch_in_epoch : state.batch_in_epoch + plan.per_step]
                train_step(run, group)
                state.batch_in_epoch += len(group)
                speed = (state.examples_seen - seen_at_start) / max(time.perf_counter() - run.started, 1e-9)
                _log_step(run, speed, progress)
                if cfg.train.eval_every and state.step % cfg.train.eval_every == 0 and evaluate_and_save(run, progress):
                    result.stopped_early = True
                if result.stopped_early or run.engine.stop.requested:
                    break
            if result.stopped_early or run.engine.stop.requested:
                break
            if state.batch_in_epoch >= len(batches):
                _end_epoch(run)
                if not cfg.train.eval_every and evaluate_and_save(run, progress):
                    result.stopped_early = True
                    break
        if run.engine.stop.requested:
            result.interrupted = True
            save(run, "last", run.dev_metrics)
            progress.note(f"interrupted: state saved at step {state.step}; continue with --resume")
        elif run.evaluated_at != state.step:
            evaluate_and_save(run, progress)  # e.g. max_steps ended mid-epoch: score the final weights
    session = time.perf_counter() - run.started
    result.seconds = state.seconds + session  # every session of the run, resumes included
    result.examples_per_second = (state.examples_seen - seen_at_start) / max(session, 1e-9)
    result.steps, result.best_metric, result.best_step = state.step, state.best_metric, state.best_step
    result.dev = run.dev_metrics
    if not result.interrupted:
        result.test = test_metrics(run)
    if run.main:
        write_json(run.run_dir / runs.RESULTS_FILE,
                   {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()})
    run.logger.close()
    _notify(run, "on_end", result)
    return result


class _Step:
    """The ``StepContext`` a weighting sees during one optimizer step (``weighting/base.py``)."""

    def __init__(self, run: Run, group_len: int):
        self.run = run
        self.group_len = group_len
        self.rounds = max(1, group_len // len(run.sched_feats))
        self.batches: list[tuple[str, dict[str, Any], list[int]]] = []
        self.retain = False  # a shared-input pass: several backward calls through one graph

    def backward(self, task: str, objective: torch.Tensor) -> None:
        run = self.run
        if not run.all_tasks:  # all-tasks steps add the regulariser once, after surgery
            penalty = run.strategies.penalty(run.unwrapped)
            objective = objective if penalty is None else objective + penalty
        uda = run.consistency.get(task)
        if uda is not None:  # UDA: the consistency loss of this step's unlabelled batch
            objective = objective + uda.loss(lambda b: run.model(task, b), run.state.step, run.pad_id,
                                             run.accelerator.device)
        if self.retain:
            run.accelerator.backward(objective / self.group_len, retain_graph=True)
        else:
            run.engine.backward(objective / self.group_len)
        if run.task_grads is not None:
            run.task_grads.take(task)

    def top_shared_parameters(self) -> list[torch.nn.Parameter]:
        return top_shared_parameters(self.run.unwrapped)

    def losses_now(self) -> dict[str, torch.Tensor]:
        run = self.run
        was_training = run.unwrapped.training
        run.unwrapped.eval()
        out: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad(), run.accelerator.autocast():
            for name, batch, idx in self.batches:
                if name in run.streams:
                    for task, loss in _stream_losses(run, batch).items():
                        out.setdefault(task, []).append(loss.detach())
                    continue
                out.setdefault(name, []).append(run.data[name].task.loss(_logits(run, name, batch, idx), batch).detach())
        run.unwrapped.train(was_training)
        return {n: torch.stack(v).mean() for n, v in out.items()}


class _Unweighted:
    """No ``multitask.weighting``: each batch's loss counts as it is."""

    needs_all_tasks = False

    def backward(self, losses: dict[str, torch.Tensor], step: _Step) -> None:
        for task, loss in losses.items():
            step.backward(task, loss)

    def after_step(self, step: _Step) -> None:
        pass


def _logits(run: Run, name: str, batch: dict[str, Any], idx: list[int]) -> torch.Tensor:
    if run.cache is not None:
        return run.unwrapped.head_forward(name, run.cache.output(name, idx), batch)
    return run.model(name, batch)


def _stream_losses(run: Run, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each task's loss on a shared-input batch, from one encoder pass: only over the rows the
    task labels (``multitask/shared.py``); a task labelling none of them is absent."""
    logits = run.model(None, batch)
    return {t: run.data[t].task.loss(logits[t], sub) for t, (_rows, sub, _w) in batch["tasks"].items()}


def _shared_backward(run: Run, weighting: Any, losses: dict[str, torch.Tensor], step: _Step) -> None:
    """Back-propagate a shared-input batch's task losses. A weighting that weights each loss
    alone (the default ``backward``) with no per-task gradients to keep: one backward of the
    weighted sum. Otherwise (GradNorm, surgery) the weighting's own per-task backward, through
    the one graph, kept between the calls."""
    from polytask.multitask.weighting.base import LossWeighting

    own = type(weighting).backward
    if run.task_grads is None and own in (LossWeighting.backward, _Unweighted.backward):
        weigh = (lambda t, x: x) if isinstance(weighting, _Unweighted) else (lambda t, x: weighting({t: x}))
        step.backward(next(iter(losses)), torch.stack([weigh(t, x) for t, x in losses.items()]).sum())
        return
    step.retain = True
    try:
        weighting.backward(losses, step)
    finally:
        step.retain = False


def train_step(run: Run, group: list[tuple[str, list[int]]]) -> None:
    """One optimizer step over ``group``'s micro-batches (task, example indices)."""
    state, tasks = run.state, run.tasks
    run.strategies.on_step(run.unwrapped, state.step, run.plan.steps_per_epoch)
    if run.task_grads is not None:  # the trainable set may change (gradual unfreezing)
        run.task_grads.shared = [p for p in run.unwrapped.encoder.parameters() if p.requires_grad]
    weighting = run.unwrapped.weighting or _Unweighted()
    step = _Step(run, len(group))
    held: dict[str, torch.Tensor] = {}  # a round of every task's loss, for weightings that need it
    for i, (name, idx) in enumerate(group):
        # Only the last micro-batch of a step all-reduces gradients (DDP's own sync).
        sync = i == len(group) - 1 and not run.manual_sync
        if name in run.streams:  # tasks on the same inputs: one encoder pass, every task's loss
            _shared_item(run, weighting, step, held, name, idx, sync)
            continue
        batch = move(tasks[name].collate([run.feats[name]["train"][j] for j in idx], run.pad_id), run.accelerator.device)
        with run.engine.sync_context(sync), run.accelerator.autocast():
            logits = _logits(run, name, batch, idx)
            uda = run.consistency.get(name)  # with UDA, training-signal annealing of the labels
            objective = run.objective.get(name)  # a procedure's own loss (distillation)
            if objective is not None:
                loss = objective(logits, batch, idx)
            else:
                loss = uda.supervised(logits, batch, state.step) if uda is not None else tasks[name].loss(logits, batch)
            step.batches.append((name, batch, idx))
            held[name] = loss
            if not weighting.needs_all_tasks or len(held) == len(tasks):
                weighting.backward(held, step)
                held = {}
        run.engine.record(loss)
        acc = run.epoch_loss.setdefault(name, [0.0, 0])
        acc[0], acc[1] = acc[0] + loss.detach(), acc[1] + 1
        state.examples_seen += len(idx) * run.accelerator.num_processes
    if run.manual_sync:
        run.engine.sync(run.task_grads)
    if run.task_grads is not None:
        run.task_grads.combine(run.surgery, run.surgery_rng)
    if run.all_tasks:
        # A regulariser of the weights (L2-SP) counts once per step, after surgery, which is
        # about task gradients; it is the same on every process.
        penalty = run.strategies.penalty(run.unwrapped)
        if penalty is not None:
            run.engine.backward(penalty)
    run.engine.step()
    weighting.after_step(step)
    state.step += 1


def _shared_item(run: Run, weighting: Any, step: _Step, held: dict[str, torch.Tensor], name: str, idx: list[int],
                 sync: bool) -> None:
    """One micro-batch of a shared-input stream (see ``train_step``)."""
    from polytask.multitask.shared import collate_stream

    batch = collate_stream(run.streams[name], idx, run.tasks, run.feats, run.pad_id, run.accelerator.device)
    with run.engine.sync_context(sync), run.accelerator.autocast():
        losses = _stream_losses(run, batch)
        step.batches.append((name, batch, idx))
        held.update(losses)
        if not weighting.needs_all_tasks or len(held) == len(run.tasks):
            _shared_backward(run, weighting, dict(held), step)
            held.clear()
    for task, loss in losses.items():
        run.engine.record(loss)
        acc = run.epoch_loss.setdefault(task, [0.0, 0])
        acc[0], acc[1] = acc[0] + loss.detach(), acc[1] + 1
    run.state.examples_seen += len(idx) * run.accelerator.num_processes


def _log_step(run: Run, speed: float, progress: Progress) -> None:
    state, tc = run.state, run.cfg.train
    if state.step % tc.log_every == 0 or state.step == run.plan.total_steps:
        run.shown_loss = run.engine.mean_loss()
        record = {"loss": run.shown_loss, "lr": run.engine.lr, "examples_per_second": speed}
        if run.unwrapped.weighting is not None:
            record.update({f"weight/{t}": w for t, w in run.unwrapped.weighting.weights().items()})
        run.logger.log("train", state.step, state.epoch, record)
        _notify(run, "on_log", state.step, record)
    # On a CPU the running mean since the last log costs nothing to read; on a GPU reading it
    # every step would stall the queue, so the bar shows the last logged value.
    live = progress.enabled and run.accelerator.device.type == "cpu"
    shown = run.engine.peek_loss() if live else run.shown_loss
    progress.update(state.step, loss=shown if shown == shown else run.shown_loss, speed=speed, epoch=state.epoch + 1)


def startup_summary(run: Run) -> str:
    """What is about to happen, in one line per task and one for the schedule."""
    lines = []
    for name, td in run.data.items():
        labels = td.task.labels
        shown = "" if labels is None else f", {len(labels)} labels" + (
            f" ({', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''})" if labels else "")
        n_train = len(run.feats[name]["train"])
        extra = f" ({len(td.splits['train'])} + augmented copies)" if n_train != len(td.splits["train"]) else ""
        lines.append(f"task {name} ({td.task.registry_name}): {n_train} train{extra}, "
                     f"{len(td.splits['dev'])} dev examples{shown}")
    for stream in run.streams.values():
        lines.append(f"tasks {', '.join(stream.tasks)} share their inputs: one pass over {len(stream.rows)} "
                     "training examples, every head and loss on it (multitask.shared_inputs)")
    plan, acc = run.plan, run.accelerator
    lines.append(f"{plan.total_steps} steps ({plan.steps_per_epoch} per epoch, {plan.mode.replace('_', ' ')}), "
                 f"device {acc.device}, precision {precision_label(acc.mixed_precision)}"
                 + (f" (train.mixed_precision: {run.cfg.train.mixed_precision})"
                    if run.cfg.train.mixed_precision == "auto" else "")
                 + f", {acc.num_processes} process(es)"
                 + (f"; resuming at step {run.state.step}" if run.state.step else ""))
    return "\n".join(lines)


def _end_epoch(run: Run) -> None:
    weighting = run.unwrapped.weighting
    if weighting is not None and set(run.epoch_loss) == set(run.data):
        # Per-epoch weightings (DWA) see each task's mean loss of the finished epoch.
        weighting.end_epoch({n: float(v[0]) / v[1] for n, v in run.epoch_loss.items()})
    run.epoch_loss = {}
    run.state.epoch += 1
    run.state.batch_in_epoch = 0


def evaluate(run: Run) -> dict[str, float]:
    """Every task's dev metrics (``task/metric``) and their ``average`` primary metric."""
    metrics: dict[str, float] = {}
    tc = run.cfg.train
    for name, td in run.data.items():
        m, _ = evaluate_task(run.unwrapped, td.task, td.splits["dev"], run.tokenizer, run.pad_id,
                             tc.eval_batch_size, run.accelerator.device, features=run.feats[name]["dev"],
                             precision=run.accelerator.mixed_precision)
        metrics.update({f"{name}/{k}": v for k, v in m.items()})
    primaries = [metrics[f"{n}/{td.task.config.metric or td.task.default_metric}"] for n, td in run.data.items()]
    metrics["average"] = float(sum(primaries) / len(primaries))
    return metrics


def evaluate_and_save(run: Run, progress: Progress) -> bool:
    """Evaluate, write checkpoints; True when early stopping (or a callback) says stop."""
    state, tc = run.state, run.cfg.train
    run.dev_metrics, run.evaluated_at = evaluate(run), state.step
    value = run.dev_metrics[run.metric]
    best = state.best_metric
    improved = best is None or (value > best if run.greater else value < best)
    if improved:
        state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
        save(run, "best", run.dev_metrics)
    else:
        state.bad_evals += 1
    run.logger.log("dev", state.step, state.epoch, run.dev_metrics)
    progress.note(f"dev {run.metric}={value:.4f}" + (" (best)" if improved else ""))
    save(run, "last", run.dev_metrics)
    asked = any(_notify(run, "on_evaluate", state.step, run.dev_metrics))
    return asked or (tc.early_stopping_patience is not None and state.bad_evals >= tc.early_stopping_patience)


def save(run: Run, which: str, metrics: dict[str, float]) -> None:
    """Write checkpoint ``best`` (weights) or ``last`` (weights, optimizer, loop state)."""
    state = run.state
    if which == "last":
        state.epoch_loss = {n: [float(v[0]), int(v[1])] for n, v in run.epoch_loss.items()}
        seconds, state.seconds = state.seconds, state.seconds + time.perf_counter() - run.started
    if run.main:
        weights = run.strategies.checkpoint_state(run.unwrapped, run.unwrapped.state_dict())
        meta = {"config": run.cfg.model_dump(mode="json"), "tasks": {n: t.state() for n, t in run.tasks.items()},
                "encoder_type": run.cfg.encoder.type, "step": state.step, "metrics": metrics,
                "precision": run.accelerator.mixed_precision}
        extra = {}
        if which == "last":
            extra = {"optimizer": run.engine.optimizer,
                     "trainer_state": {"loop": asdict(state), "scheduler": run.scheduler.state_dict()}}
        path = ckpt.save_checkpoint(runs.checkpoint_dir(run.run_dir, which), weights, meta,
                                    run.run_dir / runs.ENCODER_DIR, **extra)
        _notify(run, "on_save", state.step, path)
    if which == "last":
        state.seconds = seconds  # the saved total includes this session so far; the live one does not
        run.accelerator.wait_for_everyone()


def test_metrics(run: Run) -> dict[str, float]:
    """Score the best checkpoint on each task's test split (if any)."""
    if not any("test" in td.splits for td in run.data.values()):
        return {}
    best = runs.existing_checkpoint(run.run_dir, "best")
    if best is not None:
        runs.load_weights(run.unwrapped, best, run.strategies)
    out: dict[str, float] = {}
    tc = run.cfg.train
    for name, td in run.data.items():
        if "test" in td.splits:
            m, _ = evaluate_task(run.unwrapped, td.task, td.splits["test"], run.tokenizer, run.pad_id,
                                 tc.eval_batch_size, run.accelerator.device, features=run.feats[name]["test"],
                                 precision=run.accelerator.mixed_precision)
            out.update({f"{name}/{k}": v for k, v in m.items()})
    return out


def _notify(run: Run, hook: str, *args: Any) -> list[Any]:
    """Call ``hook`` on every callback that has it (main process only); their answers."""
    if not run.main:
        return []
    return [getattr(cb, hook)(*args) for cb in run.callbacks if hasattr(cb, hook)]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl as a list of records."""
    path = Path(run_dir) / runs.METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
