"""A training run's state in one object: built by ``build_run``, restored by ``restore``.

``build_run`` reads top to bottom like a recipe (torchtune's ``setup``): check the run folder
and the data (everything that can fail on bad input, before any model loads), then the model,
the schedule of batches, the strategies, the optimizer and the step engine, then the run folder.
``restore`` puts a checkpoint's weights, optimizer, schedule and loop position back; it is the
one place a resume reads.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed

from polytask import precision, runs
from polytask.config.loader import dump_config, parse_config
from polytask.config.schema import ExperimentConfig
from polytask.errors import CheckpointError, ConfigError
from polytask.evaluation.evaluate import evaluate_task
from polytask.io import write_json
from polytask.multitask.model import PolytaskModel, build_weighting_for, step_mode
from polytask.multitask.shared import build_streams, schedule_feats
from polytask.training import checkpoint as ckpt
from polytask.training import schedule
from polytask.training.engine import StepEngine
from polytask.training.feature_cache import FeatureCache
from polytask.training.gradients import TaskGradients
from polytask.training.logging import MetricsLogger, Progress
from polytask.training.optim import build_optimizer, build_scheduler
from polytask.training.setup import TaskData, prepare_tasks
from polytask.transfer import Strategies, build_strategies


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
    seconds: float = 0.0  # wall-clock training time of the sessions before this one (resumes)


@dataclass
class Plan:
    """How many steps, made of which batches (see ``training/schedule.py``)."""

    mode: str  # one_task | all_tasks
    sampler: Any
    per_step: int  # micro-batches per optimizer step
    steps_per_epoch: int
    total_steps: int
    n_epochs: int
    run_epochs: float  # fractional: the sampler's notion of progress


@dataclass
class Run:
    """Everything a training run holds: built by ``build_run``, advanced by ``training.loop``."""

    cfg: ExperimentConfig
    run_dir: Path
    accelerator: Accelerator
    data: dict[str, TaskData]
    feats: dict[str, dict[str, list[dict]]]  # task -> split -> encoded examples
    tokenizer: Any
    pad_id: int
    model: torch.nn.Module  # as prepared by Accelerate (DDP-wrapped under several processes)
    unwrapped: PolytaskModel
    strategies: Strategies
    plan: Plan
    engine: StepEngine
    scheduler: Any
    logger: MetricsLogger
    metric: str
    greater: bool
    surgery: Any = None
    task_grads: TaskGradients | None = None
    surgery_rng: torch.Generator | None = None
    cache: FeatureCache | None = None
    state: LoopState = field(default_factory=LoopState)
    callbacks: list[Any] = field(default_factory=list)
    dev_metrics: dict[str, float] = field(default_factory=dict)
    evaluated_at: int = -1  # step of the latest evaluation
    epoch_loss: dict[str, list] = field(default_factory=dict)
    shown_loss: float = float("nan")  # the latest logged training loss (progress bar)
    lock: runs.RunLock | None = None
    started: float = 0.0  # perf_counter() when this session's training began
    features_epoch: int = 0  # the epoch the training features are of (augmented copies)
    consistency: dict[str, Any] = field(default_factory=dict)  # task -> UDA objective
    # Shared-input streams (multitask/shared.py) and what the schedule batches: the tasks outside
    # a stream and each stream as one entry (just ``feats`` when there is none).
    streams: dict[str, Any] = field(default_factory=dict)
    sched_feats: dict[str, dict] = field(default_factory=dict)
    # task -> a training loss used instead of the task's own: ``objective(logits, batch, idx)``
    # with idx the batch's indices into the training features (distillation's teacher targets)
    objective: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> dict[str, Any]:
        return {name: td.task for name, td in self.data.items()}

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def all_tasks(self) -> bool:
        return self.plan.mode == "all_tasks"

    @property
    def manual_sync(self) -> bool:
        # Steps whose gradients DDP cannot average on its own (see training/gradients.py) are
        # synchronised by hand: every backward under no_sync, then one explicit reduction.
        return self.all_tasks or self.cache is not None


def make_accelerator(**kwargs: Any) -> Accelerator:
    """An Accelerator; in a single process, also after an earlier run with other device settings.

    Accelerate keeps process-wide state and refuses a second Accelerator whose ``cpu`` or
    ``mixed_precision`` differs (a notebook training twice, a test suite). Without a distributed
    launch that state holds nothing worth keeping, so it is rebuilt; under one, the error stands.
    ``mixed_precision="auto"`` is resolved here for the device (``polytask.precision``).
    """
    if kwargs.get("mixed_precision") == "auto":
        kwargs["mixed_precision"] = precision.resolve("auto", precision.device_type(cpu=kwargs.get("cpu", False)))
    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" not in str(exc) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


def build_run(cfg: ExperimentConfig, output_dir: str | Path | None = None, resume: bool = False,
              overwrite: bool = False, callbacks: list[Any] | None = None) -> Run:
    """A run of ``cfg`` ready for its first step (or, once ``restore``d, for its next one).

    Args:
        cfg: the experiment.
        output_dir: the run directory (default ``cfg.output_dir`` or ``runs/<name>``).
        resume: the run directory's ``last`` checkpoint will be restored (its label sets and
            encoder are used here; ``restore`` loads the rest).
        overwrite: start afresh even if the run directory already has checkpoints.
        callbacks: objects with any of ``on_log``, ``on_evaluate``, ``on_save``, ``on_end``.
    """
    run_dir = Path(output_dir) if output_dir else runs.default_run_dir(cfg)
    resume_from = resume_checkpoint(cfg, run_dir) if resume else None
    tc = cfg.train
    accelerator = make_accelerator(
        cpu=tc.cpu, mixed_precision=tc.mixed_precision,
        # Heads of tasks absent from a batch get no gradient; DDP must be told so.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=len(cfg.tasks) > 1)],
    )
    set_seed(tc.seed)
    # 1. Everything that can fail on bad input happens before the model loads.
    strategies = build_strategies(cfg.transfer)
    for member in strategies.members:
        type(member).check_config(cfg)
    mode = step_mode(cfg)
    data = prepare_tasks(cfg, ckpt.load_meta(resume_from)["tasks"] if resume_from else None)
    _check_augment(cfg, data)
    lock = runs.RunLock(run_dir).acquire() if accelerator.is_main_process else None
    try:
        return _build(cfg, run_dir, resume, overwrite, callbacks, resume_from, accelerator, strategies, mode, data,
                      lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _build(cfg: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool, callbacks: list[Any] | None,
           resume_from: Path | None, accelerator: Accelerator, strategies: Strategies, mode: str,
           data: dict[str, TaskData], lock: runs.RunLock | None) -> Run:
    tc = cfg.train
    claim_run_dir(run_dir, resume, overwrite)
    if lock is not None:
        runs.remove_stale_temporaries(run_dir)
    # 2. The model and its features.
    model, feats, init_report = _setup_model(cfg, data, strategies, resume_from)
    tokenizer = model.encoder.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metric = _metric_name(cfg, data)
    _check_metric(metric, model, data, feats, pad_id, tc.eval_batch_size)
    streams = build_streams(cfg, data, feats)
    sched_feats = schedule_feats(feats, streams) if streams else feats
    plan = _setup_plan(cfg, sched_feats, accelerator, mode)
    anchor = _setup_strategies(cfg, run_dir, model, strategies, data, feats, pad_id, accelerator, resume_from)
    # 3. Optimizer, schedule, the step engine.
    optimizer = build_optimizer(model, tc, strategies.param_groups(model, tc), device=accelerator.device)
    scheduler = build_scheduler(optimizer, tc, plan.total_steps)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    engine = StepEngine(accelerator, prepared, optimizer, scheduler, tc.max_grad_norm)
    # 4. The run folder: resolved config, encoder files, logs.
    _write_run_dir(cfg, run_dir, model, anchor if resume_from is None else None, init_report, accelerator)
    trackers: list[Any] = []
    if accelerator.is_main_process and tc.report_to:
        from polytask.callbacks import build_callbacks

        trackers = build_callbacks(tc.report_to, run_dir, cfg)
    run = Run(cfg=cfg, run_dir=run_dir, accelerator=accelerator, data=data, feats=feats, tokenizer=tokenizer,
              pad_id=pad_id, model=prepared, unwrapped=accelerator.unwrap_model(prepared), strategies=strategies,
              plan=plan, engine=engine, scheduler=scheduler,
              # A named tensorboard tracker writes the events itself (one writer per folder).
              logger=MetricsLogger(run_dir, enabled=accelerator.is_main_process,
                                   tensorboard="tensorboard" not in tc.report_to),
              metric=metric, greater=_greater_is_better(metric, data), callbacks=trackers + list(callbacks or []),
              lock=lock, streams=streams, sched_feats=sched_feats)
    run.consistency = _setup_consistency(cfg, data, tokenizer, plan)
    if cfg.multitask.surgery is not None:
        from polytask.multitask.surgery import build_surgery

        run.surgery = build_surgery(cfg.multitask.surgery.type, cfg.multitask.surgery.options)
        run.task_grads = TaskGradients([p for p in run.unwrapped.encoder.parameters() if p.requires_grad],
                                       list(data))
        run.surgery_rng = torch.Generator().manual_seed(tc.seed)
    return run


def restore(run: Run, checkpoint: Path) -> None:
    """Put a ``last`` checkpoint back: weights, optimizer, RNGs, schedule, loop position."""
    runs.load_weights(run.unwrapped, checkpoint, run.strategies)
    saved = ckpt.load_training_state(checkpoint, run.engine.optimizer)
    run.scheduler.load_state_dict(saved.pop("scheduler"))
    run.state = LoopState(**saved["loop"])
    run.epoch_loss = {n: list(v) for n, v in run.state.epoch_loss.items()}
    if run.main:  # lines a killed session logged after this checkpoint would be duplicated
        runs.truncate_metrics(run.run_dir, run.state.step)


def epoch_features(run: Run, epoch: int) -> None:
    """The training features of ``epoch``: new augmented copies for tasks with ``augment``
    (seeded by the run's seed and the epoch, so a resumed run sees the same copies)."""
    if run.features_epoch == epoch:
        return
    for name, train in _augmented(run.cfg, run.data, epoch, run.tokenizer).items():
        run.feats[name]["train"] = train
    run.features_epoch = epoch


def _augmented(cfg: ExperimentConfig, data: dict[str, TaskData], epoch: int, tokenizer: Any) -> dict[str, list]:
    """Encoded originals + augmented copies of each augmenting task's training split."""
    out = {}
    for tcfg in cfg.tasks:
        if getattr(tcfg, "augment", None) is None:
            continue
        from polytask.augment import augment_examples

        task = data[tcfg.name].task
        examples = augment_examples(data[tcfg.name].splits["train"], tcfg.augment, token_level=task.token_level,
                                    seed=cfg.train.seed, epoch=epoch, field=f"tasks.{tcfg.name}.augment")
        out[tcfg.name] = [task.encode(ex, tokenizer) for ex in examples]
    return out


def _setup_consistency(cfg: ExperimentConfig, data: dict[str, TaskData], tokenizer: Any, plan: Plan) -> dict:
    """A UDA objective for every task whose ``unlabeled`` block sets ``uda``."""
    out = {}
    for tcfg in cfg.tasks:
        if tcfg.unlabeled is None or tcfg.unlabeled.uda is None:
            continue
        from polytask.augment import build_pipeline
        from polytask.data.unlabeled import read_unlabeled
        from polytask.training.consistency import UDA

        task = data[tcfg.name].task
        pipeline = build_pipeline(tcfg.augment, token_level=task.token_level, field=f"tasks.{tcfg.name}.augment")
        pipeline.fit(data[tcfg.name].splits["train"])
        out[tcfg.name] = UDA(task, read_unlabeled(tcfg, task.token_level), tcfg.unlabeled.uda, pipeline, tokenizer,
                             cfg.train.batch_size, cfg.train.seed, plan.total_steps)
    return out


def _check_augment(cfg: ExperimentConfig, data: dict[str, TaskData]) -> None:
    """Build every ``augment`` pipeline before the model loads: bad ops and missing resources fail now."""
    for tcfg in cfg.tasks:
        if tcfg.unlabeled is not None and tcfg.unlabeled.uda is not None and tcfg.augment is None:
            raise ConfigError(f"tasks.{tcfg.name}.unlabeled.uda needs tasks.{tcfg.name}.augment: consistency "
                              "training compares each unlabelled text with an augmented copy, and augment "
                              "says how to make it", field=f"tasks.{tcfg.name}.augment")
        if getattr(tcfg, "augment", None) is not None:
            from polytask.augment import build_pipeline

            build_pipeline(tcfg.augment, token_level=data[tcfg.name].task.token_level,
                           field=f"tasks.{tcfg.name}.augment")


def build_feature_cache(run: Run) -> None:
    """Encoder outputs of the training set, once, when the encoder stays fixed for the run (and the
    training inputs too: augmented copies change every epoch)."""
    augmenting = any(getattr(t, "augment", None) is not None for t in run.cfg.tasks)
    # The cache keeps one row per example; a task whose features are its own (QA windows: several
    # rows per example) trains through the encoder instead.
    own = any(not t.shares_features for t in run.tasks.values())
    if run.strategies.fixed_encoder and not run.unwrapped.towers and not augmenting and not own and not run.streams:
        run.unwrapped.to(run.accelerator.device)
        run.cache = FeatureCache(run.unwrapped, run.tasks, {n: f["train"] for n, f in run.feats.items()},
                                 run.pad_id, run.accelerator.device, run.cfg.train.eval_batch_size)


def _setup_model(cfg: ExperimentConfig, data: dict[str, TaskData], strategies: Strategies,
                 resume_from: Path | None) -> tuple[PolytaskModel, dict, Any]:
    tasks = {name: td.task for name, td in data.items()}
    init_report = None
    if resume_from is not None and strategies.saves_full_model:
        encoder = runs.load_encoder_files(cfg, resume_from / ckpt.ENCODER_DIR)
    else:
        # A fresh run, or a resumed one whose checkpoints hold only part of the weights (adapters
        # and heads): the rest comes from the starting encoder.
        encoder, init_report = runs.starting_encoder(cfg, _vocab_texts(data))
    weighting = build_weighting_for(cfg, list(tasks))
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout, weighting=weighting)
    if init_report is not None and resume_from is None:
        init_report.new += [k for k in model.state_dict() if not k.startswith("encoder.")]
    else:
        init_report = None
    tok = encoder.tokenizer
    feats = {name: {s: [td.task.encode(ex, tok) for ex in exs] for s, exs in td.splits.items()}
             for name, td in data.items()}
    for name, train in _augmented(cfg, data, 0, tok).items():  # same count every epoch: the plan holds
        feats[name]["train"] = train
    return model, feats, init_report


def _setup_plan(cfg: ExperimentConfig, feats: dict, accelerator: Accelerator, mode: str) -> Plan:
    tc = cfg.train
    sampler = None
    if cfg.multitask.sampler is not None:
        from polytask.multitask.samplers import build_sampler

        sizes = {name: len(schedule.task_batches(feats, tc, name, 0)) for name in feats}
        sampler = build_sampler(cfg.multitask.sampler.type, sizes, cfg.multitask.sampler.options)
    per_step = schedule.group_size(len(feats), tc, mode)
    first = schedule.epoch_batches(feats, tc, 0, accelerator.num_processes, accelerator.process_index,
                                   mode=mode)
    steps_per_epoch = math.ceil(len(first) / per_step)
    total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * steps_per_epoch))
    return Plan(mode, sampler, per_step, steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch),
                total_steps / steps_per_epoch)


def _setup_strategies(cfg: ExperimentConfig, run_dir: Path, model: PolytaskModel, strategies: Strategies,
                      data: dict[str, TaskData], feats: dict, pad_id: int, accelerator: Accelerator,
                      resume_from: Path | None) -> Any:
    """The strategies' one-off work (``prepare`` on a fresh run) and ``setup``; returns the anchor."""
    anchor = None
    if strategies.needs_anchor:  # the starting weights, kept in the run so a resume uses the same
        anchor_file = run_dir / runs.ANCHOR_FILE
        if resume_from is None:
            anchor = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
        elif anchor_file.is_file():
            anchor = ckpt.load_tensors(anchor_file)
        else:
            raise CheckpointError(f"{anchor_file} is missing: l2_sp cannot resume without its starting weights")
    if resume_from is None:
        tasks = {name: td.task for name, td in data.items()}
        strategies.prepare(model, tasks, {n: f["train"] for n, f in feats.items()}, pad_id,
                           accelerator, progress=cfg.train.progress and accelerator.is_main_process)
    strategies.setup(model, anchor)
    return anchor


def _write_run_dir(cfg: ExperimentConfig, run_dir: Path, model: PolytaskModel, anchor: Any, init_report: Any,
                   accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / runs.CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
        model.encoder.save_files(run_dir / runs.ENCODER_DIR)
        if anchor is not None:
            ckpt.save_tensors(run_dir / runs.ANCHOR_FILE, anchor)
        if init_report is not None:
            write_json(run_dir / runs.INIT_REPORT_FILE, init_report.to_json())
            Progress(0, enabled=cfg.train.progress).note(init_report.summary())
    accelerator.wait_for_everyone()


def resume_checkpoint(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """The ``last`` checkpoint to resume from; its encoder and tasks must be ``cfg``'s."""
    last = runs.existing_checkpoint(run_dir, "last")
    if last is None:
        folder = runs.checkpoint_dir(run_dir, "last")
        if folder.is_dir():
            raise CheckpointError(f"{folder}: no {ckpt.META_FILE}, so this checkpoint is damaged and cannot be "
                                  "resumed; restore it from a copy, or train afresh with --overwrite")
        raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/last); train without --resume")
    saved = parse_config(ckpt.load_meta(last)["config"])
    for part in ("encoder", "tasks"):
        if getattr(saved, part) != getattr(cfg, part):
            raise ConfigError(
                f"cannot resume {run_dir}: the '{part}' section differs from the run's saved config "
                f"({run_dir / runs.CONFIG_FILE}); only train.* settings may change on resume"
            )
    return last


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds a run unless resuming or overwriting; clear it for overwrite."""
    if resume:
        return
    if runs.existing_checkpoint(run_dir, "last") is not None and not overwrite:
        raise CheckpointError(
            f"{run_dir} already holds a run; use --resume to continue it, --overwrite to start "
            "afresh, or set output_dir"
        )
    if overwrite and (run_dir / runs.CHECKPOINTS_DIR).exists():
        shutil.rmtree(run_dir / runs.CHECKPOINTS_DIR)
        for name in (runs.METRICS_FILE, runs.RESULTS_FILE):
            (run_dir / name).unlink(missing_ok=True)


def _vocab_texts(data: dict[str, TaskData]):  # noqa: ANN202
    """A zero-argument callable over every task's training texts (word encoders build their
    vocabulary from it)."""

    def texts():  # noqa: ANN202
        for td in data.values():
            for ex in td.splits["train"]:
                yield ex.text
                if ex.text_pair is not None:
                    yield ex.text_pair

    return texts


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


def _check_metric(metric: str, model: PolytaskModel, data: dict[str, TaskData], feats: dict, pad_id: int,
                  batch_size: int) -> None:
    """Fail before training if ``train.metric`` names no metric evaluation produces."""
    names = {"average"}
    for name, td in data.items():
        sample = td.splits["dev"][:8]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, _ = evaluate_task(model, td.task, sample, model.encoder.tokenizer, pad_id, batch_size,
                                 features=feats[name]["dev"][:8])
        names.update(f"{name}/{k}" for k in m)
    if metric not in names:
        raise ConfigError(
            f"metric {metric!r} is not produced by evaluation; choose one of: {', '.join(sorted(names))}",
            field="train.metric",
        )
