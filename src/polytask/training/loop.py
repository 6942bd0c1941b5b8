"""The one training loop (Accelerate): read top to bottom.

Shape of an epoch (``schedule``): in ``one_task`` mode every batch of every task once, in a
seeded shuffled order, or drawn by a ``multitask.sampler``; in ``all_tasks`` mode one batch of
every task per step. Each optimizer step may accumulate several micro-batches. Evaluation runs
every ``eval_every`` steps or at each epoch end; each evaluation writes the ``last`` checkpoint
(for --resume) and, on improvement, ``best``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed

from polytask.config.loader import dump_config, parse_config
from polytask.config.schema import ExperimentConfig
from polytask.encoders import build_encoder
from polytask.errors import CheckpointError, ConfigError
from polytask.evaluation.evaluate import evaluate_task, move
from polytask.multitask.model import PolytaskModel, build_weighting_for
from polytask.training import checkpoint as ckpt
from polytask.training import schedule
from polytask.training.feature_cache import FeatureCache
from polytask.training.gradients import TaskGradients, sync_gradients, top_shared_parameters
from polytask.training.logging import MetricsLogger, Progress
from polytask.training.optim import build_optimizer, build_scheduler
from polytask.training.setup import TaskData, prepare_tasks
from polytask.transfer import build_strategies

ANCHOR_FILE = "anchor.safetensors"  # l2_sp's starting weights, for --resume


@dataclass
class LoopState:
    """Where the loop is; saved in ``trainer_state.json`` so --resume continues exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the current epoch consumed (at a step boundary)
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations without improvement (early stopping)
    examples_seen: int = 0
    epoch_loss: dict[str, list[float]] = field(default_factory=dict)  # task -> [sum, batches] so far this epoch


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


def default_run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.output_dir or Path("runs") / cfg.name)


def train(
    cfg: ExperimentConfig,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune the encoder and every task head of ``cfg``; return the result summary.

    Args:
        cfg: the experiment.
        output_dir: the run directory (default ``cfg.output_dir`` or ``runs/<name>``).
        resume: continue from ``<run>/checkpoints/last`` exactly where it stopped.
        overwrite: start afresh even if the run directory already has checkpoints.
    """
    run_dir = Path(output_dir) if output_dir else default_run_dir(cfg)
    last_dir = run_dir / "checkpoints" / "last"
    resume_from = _check_run_dir(cfg, run_dir, resume, overwrite)
    tc = cfg.train
    n_tasks = len(cfg.tasks)
    accelerator = _accelerator(
        cpu=tc.cpu,
        mixed_precision=tc.mixed_precision,
        # Heads of tasks absent from a batch get no gradient; DDP must be told so.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=n_tasks > 1)],
    )
    set_seed(tc.seed)

    # 1. Everything that can fail on bad input happens before the model loads.
    strategies = build_strategies(cfg.transfer)
    for member in strategies.members:
        type(member).check_config(cfg)
    states = ckpt.load_meta(resume_from)["tasks"] if resume_from else None
    data = prepare_tasks(cfg, states)
    tasks = {name: td.task for name, td in data.items()}
    weighting = build_weighting_for(cfg, list(tasks))
    metric_name = _metric_name(cfg, data)

    # 2. Model, features, optimiser.
    init_report = None
    if resume_from is not None and strategies.saves_full_model:
        encoder = _encoder_class(cfg).from_files(resume_from / ckpt.ENCODER_DIR, pooling=cfg.encoder.pooling)
    else:
        # A fresh run, or a resumed one whose checkpoints hold only part of the weights (adapters
        # and heads): the rest comes from the starting encoder.
        encoder, init_report = _starting_encoder(cfg, data)
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout, weighting=weighting)
    if init_report is not None and resume_from is None:
        init_report.new += [k for k in model.state_dict() if not k.startswith("encoder.")]
    else:
        init_report = None
    tokenizer = encoder.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    feats = {
        name: {s: [td.task.encode(ex, tokenizer) for ex in exs] for s, exs in td.splits.items()}
        for name, td in data.items()
    }
    _check_metric(metric_name, model, data, feats, tokenizer, pad_id, tc.eval_batch_size)

    mode = cfg.multitask.step_mode
    all_tasks = mode == "all_tasks"
    sampler = _build_sampler(cfg, feats, tc)
    per_step = schedule.group_size(n_tasks, tc, mode)  # micro-batches per optimizer step
    batches_per_epoch = len(_epoch_batches(feats, tc, 0, accelerator, mode=mode))
    steps_per_epoch = math.ceil(batches_per_epoch / per_step)
    total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * steps_per_epoch))
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    run_epochs = total_steps / steps_per_epoch  # fractional: the sampler's notion of progress
    anchor = None
    if strategies.needs_anchor:  # the starting weights, kept in the run so a resume uses the same
        anchor_file = run_dir / ANCHOR_FILE
        if resume_from is None:
            anchor = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        elif anchor_file.is_file():
            anchor = ckpt.load_tensors(anchor_file)
        else:
            raise CheckpointError(f"{anchor_file} is missing: l2_sp cannot resume without its starting weights")
    if resume_from is None:
        strategies.prepare(model, tasks, {n: f["train"] for n, f in feats.items()}, pad_id,
                           accelerator.device, progress=tc.progress and accelerator.is_main_process)
    strategies.setup(model, anchor)
    if resume_from is not None:
        _load_resume_weights(model, resume_from, strict=strategies.saves_full_model)
    cache = None
    if strategies.fixed_encoder and not model.towers:
        model.to(accelerator.device)
        cache = FeatureCache(model, tasks, {n: f["train"] for n, f in feats.items()}, pad_id,
                             accelerator.device, tc.eval_batch_size)
    surgery = None
    if cfg.multitask.surgery is not None:
        from polytask.multitask.surgery import build_surgery

        surgery = build_surgery(cfg.multitask.surgery.type, cfg.multitask.surgery.options)
    gradnorm = weighting is not None and hasattr(weighting, "gradnorm_loss")
    optimizer = build_optimizer(model, tc, strategies.param_groups(model, tc), device=accelerator.device)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = LoopState()
    if resume_from is not None:
        saved = ckpt.load_training_state(resume_from, optimizer)
        scheduler.load_state_dict(saved.pop("scheduler"))
        state = LoopState(**saved["loop"])

    # 3. Run directory: resolved config, encoder files, logs.
    main = accelerator.is_main_process
    encoder_files = run_dir / ckpt.ENCODER_DIR
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        encoder.save_files(encoder_files)
        if anchor is not None and resume_from is None:
            ckpt.save_tensors(run_dir / ANCHOR_FILE, anchor)
        if init_report is not None:
            ckpt.write_json(run_dir / "init_from.json", init_report.to_json())
            Progress(0, enabled=tc.progress).note(init_report.summary())
    accelerator.wait_for_everyone()
    logger = MetricsLogger(run_dir, enabled=main)
    unwrapped: PolytaskModel = accelerator.unwrap_model(model)
    # Steps whose gradients DDP cannot average on its own (see training/gradients.py) are
    # synchronised by the loop: every backward under no_sync, then one explicit reduction.
    manual_sync = all_tasks or cache is not None
    shared = [p for p in unwrapped.encoder.parameters() if p.requires_grad]
    task_grads = TaskGradients(shared, list(tasks)) if surgery is not None else None
    surgery_rng = torch.Generator().manual_seed(tc.seed)

    def evaluate_dev() -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, td in data.items():
            m, _ = evaluate_task(
                unwrapped, td.task, td.splits["dev"], tokenizer, pad_id, tc.eval_batch_size,
                accelerator.device, features=feats[name]["dev"],
            )
            metrics.update({f"{name}/{k}": v for k, v in m.items()})
        primaries = [metrics[f"{n}/{td.task.config.metric or td.task.default_metric}"] for n, td in data.items()]
        metrics["average"] = float(sum(primaries) / len(primaries))
        return metrics

    def meta(metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "config": cfg.model_dump(mode="json"),
            "tasks": {n: t.state() for n, t in tasks.items()},
            "encoder_type": cfg.encoder.type,
            "step": state.step,
            "metrics": metrics,
        }

    def saved_state() -> dict[str, torch.Tensor]:
        return strategies.checkpoint_state(unwrapped, unwrapped.state_dict())

    def save_last(metrics: dict[str, float]) -> None:
        state.epoch_loss = {n: [float(v[0]), int(v[1])] for n, v in epoch_loss.items()}
        if main:
            ckpt.save_checkpoint(
                last_dir, saved_state(), meta(metrics), encoder_files, optimizer,
                {"loop": asdict(state), "scheduler": scheduler.state_dict()},
            )
        accelerator.wait_for_everyone()

    greater = _greater_is_better(metric_name, data)
    dev_metrics: dict[str, float] = {}
    evaluated_at = -1  # step of the latest evaluation

    def evaluate_and_checkpoint() -> bool:
        """Evaluate, write checkpoints; True when early stopping says stop."""
        nonlocal dev_metrics, evaluated_at
        dev_metrics, evaluated_at = evaluate_dev(), state.step
        value = dev_metrics[metric_name]
        improved = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            if main:
                ckpt.save_checkpoint(run_dir / "checkpoints" / "best", saved_state(), meta(dev_metrics), encoder_files)
        else:
            state.bad_evals += 1
        logger.log("dev", state.step, state.epoch, dev_metrics)
        progress.note(f"dev {metric_name}={value:.4f}" + (" (best)" if improved else ""))
        save_last(dev_metrics)
        return tc.early_stopping_patience is not None and state.bad_evals >= tc.early_stopping_patience

    def backward(name: str, loss: torch.Tensor, group_len: int) -> None:
        """Back-propagate one micro-batch's weighted loss (a task row, under surgery)."""
        objective = loss if unwrapped.weighting is None else unwrapped.weighting({name: loss})
        if not all_tasks:
            penalty = strategies.penalty(unwrapped)
            objective = objective if penalty is None else objective + penalty
        accelerator.backward(objective / group_len)
        if task_grads is not None:
            task_grads.take(name)

    def gradnorm_round(losses: dict[str, torch.Tensor], last: bool, group_len: int) -> None:
        """One round of every task's loss: GradNorm's weight gradient, then each task's backward."""
        weights = unwrapped.weighting.task_weights
        top = top_shared_parameters(unwrapped)
        w_grad, = torch.autograd.grad(unwrapped.weighting.gradnorm_loss(losses, top), [weights], retain_graph=True)
        weights.grad = w_grad / (group_len // n_tasks) + (weights.grad if weights.grad is not None else 0)
        for name, loss in losses.items():
            backward(name, loss, group_len)

    # 4. The loop.
    stop_flag = _StopFlag()
    progress = Progress(total_steps, enabled=main and tc.progress, start=state.step)
    result = TrainResult(run_dir, metric_name, None, None, 0)
    t0 = time.perf_counter()
    seen_at_start = state.examples_seen
    model.train()
    with stop_flag, progress:
        loss_window: list[torch.Tensor] = []
        # Per-task loss sums of the current epoch (for per-epoch weightings such as DWA); kept
        # on the device, and in the checkpoint so a resumed epoch sums the same.
        epoch_loss: dict[str, list] = {n: list(v) for n, v in state.epoch_loss.items()}
        shown_loss = float("nan")
        while state.step < total_steps and state.epoch < n_epochs:
            batches = _epoch_batches(feats, tc, state.epoch, accelerator, sampler, run_epochs, mode)
            b = state.batch_in_epoch
            while b < len(batches) and state.step < total_steps:
                strategies.on_step(unwrapped, state.step, steps_per_epoch)
                group = batches[b : b + per_step]
                if task_grads is not None:  # the trainable set may change (gradual unfreezing)
                    task_grads.shared = [p for p in unwrapped.encoder.parameters() if p.requires_grad]
                # GradNorm needs every task's loss of a round alive at once; otherwise each
                # micro-batch is back-propagated as soon as its loss exists.
                held: dict[str, torch.Tensor] = {}
                for i, (name, idx) in enumerate(group):
                    task = tasks[name]
                    batch = move(task.collate([feats[name]["train"][j] for j in idx], pad_id), accelerator.device)
                    # Only the last micro-batch of a step all-reduces gradients (DDP's own sync).
                    sync = i == len(group) - 1 and not manual_sync
                    with (nullcontext() if sync else accelerator.no_sync(model)), accelerator.autocast():
                        if cache is not None:
                            logits = unwrapped.head_forward(name, cache.output(name, idx))
                        else:
                            logits = model(name, batch)
                        loss = task.loss(logits, batch)
                        if gradnorm:
                            held[name] = loss
                            if len(held) == n_tasks:
                                gradnorm_round(held, i == len(group) - 1, len(group))
                                held = {}
                        else:
                            backward(name, loss, len(group))
                    # Kept on the device: reading it every step would stall a GPU's queue.
                    loss_window.append(loss.detach())
                    acc = epoch_loss.setdefault(name, [0.0, 0])
                    acc[0], acc[1] = acc[0] + loss.detach(), acc[1] + 1
                    state.examples_seen += len(idx) * accelerator.num_processes
                if manual_sync:
                    sync_gradients(accelerator, unwrapped, task_grads)
                if task_grads is not None:
                    task_grads.combine(surgery, surgery_rng)
                if all_tasks:
                    # A regulariser of the weights (L2-SP) counts once per step, after surgery,
                    # which is about task gradients; it is the same on every process.
                    penalty = strategies.penalty(unwrapped)
                    if penalty is not None:
                        accelerator.backward(penalty)
                if tc.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
                optimizer.step()
                if gradnorm:
                    unwrapped.weighting.renormalise()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                b += len(group)
                state.step += 1
                state.batch_in_epoch = b
                elapsed = time.perf_counter() - t0
                speed = (state.examples_seen - seen_at_start) / max(elapsed, 1e-9)
                if state.step % tc.log_every == 0 or state.step == total_steps:
                    shown_loss = float(torch.stack(loss_window).float().mean())
                    record = {"loss": shown_loss, "lr": scheduler.get_last_lr()[0], "examples_per_second": speed}
                    if unwrapped.weighting is not None:
                        record.update({f"weight/{t}": w for t, w in unwrapped.weighting.weights().items()})
                    logger.log("train", state.step, state.epoch, record)
                    loss_window = []
                progress.update(state.step, loss=shown_loss, speed=speed, epoch=state.epoch + 1)
                if tc.eval_every and state.step % tc.eval_every == 0 and evaluate_and_checkpoint():
                    result.stopped_early = True
                    break
                if stop_flag.requested:
                    break
            if result.stopped_early or stop_flag.requested:
                break
            if b >= len(batches):
                if unwrapped.weighting is not None and set(epoch_loss) == set(tasks):
                    # Per-epoch weightings (DWA) see each task's mean loss of the finished epoch.
                    unwrapped.weighting.end_epoch({n: float(v[0]) / v[1] for n, v in epoch_loss.items()})
                epoch_loss = {}
                state.epoch += 1
                state.batch_in_epoch = 0
                if not tc.eval_every and evaluate_and_checkpoint():
                    result.stopped_early = True
                    break
        if stop_flag.requested:
            result.interrupted = True
            save_last(dev_metrics)
            progress.note(f"interrupted: state saved at step {state.step}; continue with --resume")
        elif evaluated_at != state.step:
            evaluate_and_checkpoint()  # e.g. max_steps ended mid-epoch: score the final weights

    elapsed = time.perf_counter() - t0
    result.seconds = elapsed
    result.examples_per_second = (state.examples_seen - seen_at_start) / max(elapsed, 1e-9)
    result.steps, result.best_metric, result.best_step = state.step, state.best_metric, state.best_step
    result.dev = dev_metrics
    if not result.interrupted:
        result.test = _test_metrics(run_dir, data, feats, unwrapped, tokenizer, pad_id, tc, accelerator.device,
                                    strict=strategies.saves_full_model)
    if main:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
        ckpt.write_json(run_dir / "results.json", summary)
    logger.close()
    return result


def _accelerator(**kwargs: Any) -> Accelerator:
    """An Accelerator; in a single process, also after an earlier run with other device settings.

    Accelerate keeps process-wide state and refuses a second Accelerator whose ``cpu`` or
    ``mixed_precision`` differs (a notebook training twice, a test suite). Without a distributed
    launch that state holds nothing worth keeping, so it is rebuilt; under one, the error stands.
    """
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" not in str(exc) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step and save; a second one aborts.

    Checkpoints are written atomically, so even an abort leaves the last good one intact.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _build_sampler(cfg: ExperimentConfig, feats: dict[str, dict[str, list[dict]]], tc: Any):  # noqa: ANN202
    if cfg.multitask.sampler is None:
        return None
    from polytask.multitask.samplers import build_sampler

    sizes = {name: len(schedule.task_batches(feats, tc, name, 0)) for name in feats}
    return build_sampler(cfg.multitask.sampler.type, sizes, cfg.multitask.sampler.options)


def _epoch_batches(
    feats: dict[str, dict[str, list[dict]]],
    tc: Any,
    epoch: int,
    accelerator: Accelerator,
    sampler: Any = None,
    run_epochs: float = 1.0,
    mode: str = "one_task",
) -> list[tuple[str, list[int]]]:
    """This epoch's (task, example indices) micro-batches for this process (``schedule``)."""
    return schedule.epoch_batches(feats, tc, epoch, accelerator.num_processes, accelerator.process_index,
                                  sampler, run_epochs, mode)


def _metric_name(cfg: ExperimentConfig, data: dict[str, TaskData]) -> str:
    name = cfg.train.metric
    if name is None:
        if len(data) == 1:
            (tname, td), = data.items()
            return f"{tname}/{td.task.config.metric or td.task.default_metric}"
        return "average"
    if name != "average" and "/" not in name and len(data) == 1:
        return f"{next(iter(data))}/{name}"
    return name


def _greater_is_better(metric: str, data: dict[str, TaskData]) -> bool:
    """Direction of the selection metric: errors and losses go down, scores go up."""
    task_name, _, short = metric.rpartition("/")
    if short in ("loss", "mse", "mae"):
        return False
    if task_name in data and short == data[task_name].task.default_metric:
        return data[task_name].task.greater_is_better
    return True


def _check_metric(metric, model, data, feats, tokenizer, pad_id, batch_size) -> None:  # noqa: ANN001
    """Fail before training if ``train.metric`` names no metric evaluation produces."""
    names = {"average"}
    for name, td in data.items():
        sample = td.splits["dev"][:8]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, _ = evaluate_task(model, td.task, sample, tokenizer, pad_id, batch_size, features=feats[name]["dev"][:8])
        names.update(f"{name}/{k}" for k in m)
    if metric not in names:
        raise ConfigError(
            f"metric {metric!r} is not produced by evaluation; choose one of: {', '.join(sorted(names))}",
            field="train.metric",
        )


def _check_run_dir(cfg: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    last = ckpt.resolve_dir(run_dir / "checkpoints" / "last")
    if resume:
        if last is None:
            raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/last); train without --resume")
        saved = parse_config(ckpt.load_meta(last)["config"])
        for part in ("encoder", "tasks"):
            if getattr(saved, part) != getattr(cfg, part):
                raise ConfigError(
                    f"cannot resume {run_dir}: the '{part}' section differs from the run's saved config "
                    f"({run_dir / 'config.yaml'}); only train.* settings may change on resume"
                )
        return last
    if last is not None and not overwrite:
        raise CheckpointError(
            f"{run_dir} already holds a run; use --resume to continue it, --overwrite to start "
            "afresh, or set output_dir"
        )
    if overwrite and (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
        for name in ("metrics.jsonl", "results.json"):
            (run_dir / name).unlink(missing_ok=True)
    return None


def _vocab_texts(data: dict[str, TaskData] | None):  # noqa: ANN202
    """A zero-argument callable over every task's training texts (word encoders build their
    vocabulary from it)."""
    if data is None:
        return None

    def texts():  # noqa: ANN202
        for td in data.values():
            for ex in td.splits["train"]:
                yield ex.text
                if ex.text_pair is not None:
                    yield ex.text_pair

    return texts


def _starting_encoder(cfg: ExperimentConfig, data: dict[str, TaskData] | None = None):  # noqa: ANN202
    """The encoder training starts from: a finished run's (``transfer.init_from``) with its
    weights and tokenizer, or the pretrained ``encoder.name_or_path`` (a word encoder builds its
    vocabulary from the training texts of ``data``). Returns (encoder, report)."""
    from polytask.multitask.model import PolytaskModel
    from polytask.transfer.init_from_run import InitReport, load_matching, source_checkpoint
    from polytask.transfer.lora import uses_lora

    if not cfg.transfer.init_from:
        return build_encoder(cfg.encoder, texts=_vocab_texts(data)), None
    src = source_checkpoint(cfg.transfer.init_from, cfg.encoder.type)
    if uses_lora(parse_config(ckpt.load_meta(src)["config"])):
        # An adapters-only source holds no base weights: its trained encoder is the base model
        # with the adapters merged in, all of it carried over.
        from polytask.export.save_load import load_run

        source_model = load_run(src).model
        report = InitReport(source=cfg.transfer.init_from)
        report.loaded = [k for k in source_model.state_dict() if k.startswith("encoder.")]
        report.skipped = [k for k in source_model.state_dict() if not k.startswith("encoder.")]
        return source_model.encoder, report
    encoder = _encoder_class(cfg).from_files(src / ckpt.ENCODER_DIR, pooling=cfg.encoder.pooling)
    # Matching runs on a model without heads: the report's "new" lists only encoder tensors.
    report = load_matching(PolytaskModel(encoder, {}), src, cfg.transfer.init_from)
    return encoder, report


def _load_resume_weights(model: PolytaskModel, checkpoint: Path, strict: bool) -> None:
    """Load a ``last`` checkpoint's weights; a partial one (adapters + heads) must fit exactly
    the weights it holds, and the rest stays as the starting encoder gave it."""
    state = ckpt.load_model_state(checkpoint)
    if strict:
        model.load_state_dict(state)
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise CheckpointError(f"{checkpoint}: weights that fit nothing in the model: {unexpected[:5]}")


def _encoder_class(cfg: ExperimentConfig):  # noqa: ANN202
    from polytask.encoders import ENCODERS

    return ENCODERS.get(cfg.encoder.type, field="encoder.type")


def _test_metrics(run_dir, data, feats, model, tokenizer, pad_id, tc, device, strict=True) -> dict[str, float]:  # noqa: ANN001
    """Score the best checkpoint on each task's test split (if any)."""
    if not any("test" in td.splits for td in data.values()):
        return {}
    best = ckpt.resolve_dir(run_dir / "checkpoints" / "best")
    if best is not None:
        _load_resume_weights(model, best, strict=strict)
    out: dict[str, float] = {}
    for name, td in data.items():
        if "test" in td.splits:
            m, _ = evaluate_task(model, td.task, td.splits["test"], tokenizer, pad_id, tc.eval_batch_size,
                                 device, features=feats[name]["test"])
            out.update({f"{name}/{k}": v for k, v in m.items()})
    return out


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl as a list of records."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
