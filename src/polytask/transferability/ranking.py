"""``polytask.transferability``: score candidate sources on a target before any training.

For each source: load it frozen, extract features of the target's labelled training examples
(or a seeded, stratified ``budget`` of them), run every estimate, time each, and rank.
``task_partners`` does the same between the tasks of a multi-task experiment, from one finished
run per task.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polytask.config.schema import ExperimentConfig
from polytask.errors import ConfigError
from polytask.transferability.base import ESTIMATORS, Estimator

# The feature and source modules import torch and transformers; they are imported inside the
# functions so that ``import polytask.transferability`` (and the estimators) stay light.

DEFAULT_ESTIMATES = ("logme", "leep", "hscore", "knn", "logistic")


@dataclass
class EstimateResult:
    """One estimate for one source: its value (None when skipped, with the reason) and seconds."""

    value: float | None
    seconds: float
    skipped: str | None = None


@dataclass
class SourceResult:
    """Every estimate of one source, with what its features cost."""

    source: str
    description: str
    dim: int
    rows: int
    feature_seconds: float
    head: str | None = None
    estimates: dict[str, EstimateResult] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        e = self.estimates.get(name)
        return None if e is None else e.value


@dataclass
class TransferabilityResult:
    """Sources ranked on one target task, best first by ``rank_by``."""

    task: str
    task_type: str
    examples: int
    rank_by: str
    estimates: list[str]
    sources: list[SourceResult]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_estimators(names: list[str] | None, options: dict[str, dict[str, Any]] | None) -> dict[str, Estimator]:
    """The named estimators (all by default) with their options (name -> raw options)."""
    from polytask.options import build_options

    options = options or {}
    unknown = sorted(set(options) - set(names or DEFAULT_ESTIMATES))
    if unknown:
        raise ConfigError(f"options for {', '.join(unknown)}, which is not among the estimates computed")
    out: dict[str, Estimator] = {}
    for name in names or DEFAULT_ESTIMATES:
        cls = ESTIMATORS.get(name, field="--estimates")
        opts = build_options(cls.options_class, options.get(name), name=name, kind="transferability estimate",
                             field=f"estimates.{name}")
        out[name] = cls(opts)
    return out


def _config(config: ExperimentConfig | str | Path | dict) -> tuple[ExperimentConfig, Path | None]:
    from polytask.config import load_config, parse_config

    if isinstance(config, ExperimentConfig):
        return config, None
    if isinstance(config, dict):
        return parse_config(config), None
    return load_config(config), Path(config).resolve().parent


def transferability(
    config: ExperimentConfig | str | Path | dict,
    sources: list[str],
    task: str | None = None,
    budget: int | None = None,
    seed: int = 0,
    estimates: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    rank_by: str = "logme",
    batch_size: int = 32,
    max_length: int | None = None,
) -> TransferabilityResult:
    """Rank candidate sources for a target task from their frozen features, before training.

    Args:
        config: the target experiment (its first task, or ``task``, is the target), a YAML path,
            or a raw mapping.
        sources: the candidates' spellings (``default``, an HF folder or id, ``scratch:<id>``,
            ``bilstm:glove-6b-50d``, an encoder YAML file, a finished run folder); see
            ``polytask.transferability.sources``.
        task: the target task's name; the experiment's first task when None.
        budget: score on this many training examples (sentences for token tasks), drawn with
            ``seed`` and stratified by class; all of them when None.
        seed: seed of the sample and of random source weights.
        estimates: which estimates (``logme``, ``leep``, ``hscore``, ``knn``, ``logistic``); all
            by default. An estimate that does not apply (LEEP without a head, probes on
            regression) is reported as skipped with the reason.
        options: per-estimate options, e.g. ``{"knn": {"k": 10}}``.
        rank_by: the estimate that orders the table.
        batch_size: examples per forward pass.
        max_length: tokens per example; the task's (or ``train.max_length``) when None.

    Raises:
        ConfigError: an unknown task or estimate, a task type the estimates do not cover, or a
            source that cannot be loaded (naming it and why).
    """
    import torch

    from polytask.data.loading import load_splits
    from polytask.tasks import build_task
    from polytask.transferability.features import check_supported, extract, sample, texts_of
    from polytask.transferability.sources import load_source

    cfg, base = _config(config)
    if not sources:
        raise ConfigError("no sources given; name at least one (e.g. --sources default bilstm:glove-6b-50d)")
    names = [t.name for t in cfg.tasks]
    if task is not None and task not in names:
        raise ConfigError(f"no task {task!r} in the experiment; its tasks are {', '.join(names)}", field="--task")
    tcfg = cfg.task(task) if task else cfg.tasks[0]
    target = build_task(tcfg, max_length or cfg.train.max_length)
    if max_length is not None:
        target.max_length = max_length
    check_supported(target)
    estimators = build_estimators(estimates, options)
    if rank_by not in estimators:
        raise ConfigError(f"rank_by {rank_by!r} is not among the estimates computed ({', '.join(estimators)})",
                          field="--rank-by")
    train = load_splits(tcfg.data, token_level=target.token_level)["train"]
    target.fit_labels(train)
    target.check(train, "train")
    examples = sample(train, target, budget, seed)
    texts = texts_of(train)
    results = []
    for spec in sources:
        src = load_source(spec, texts, base=base, seed=seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            data = extract(src, target, examples, batch_size)
        res = SourceResult(spec, src.description, int(data.features.shape[1]), int(data.features.shape[0]),
                           time.perf_counter() - t0, head=src.head_for(target.token_level))
        for name, est in estimators.items():
            t1 = time.perf_counter()
            why = est.applies(data)
            value = None if why else est.score(data)
            res.estimates[name] = EstimateResult(value, time.perf_counter() - t1, why)
        results.append(res)
        del src
    results.sort(key=lambda r: (r.value(rank_by) is None, -(r.value(rank_by) or 0.0)))
    return TransferabilityResult(tcfg.name, target.registry_name, len(examples), rank_by, list(estimators), results)


def task_partners(
    config: ExperimentConfig | str | Path | dict, runs: dict[str, str], **kwargs: Any
) -> dict[str, TransferabilityResult]:
    """Which task's model suits which other task: every run scored on every other task's data.

    For a multi-task experiment with one finished single-task run per task (``runs``: task name
    -> run folder), each task B is scored as a target with the runs of the other tasks as
    sources: a run trained on A whose features (and head, for LEEP) fit B's labels well
    suggests A and B share what they need. Read next to ``polytask affinity``, which measures
    the same question during joint training.

    Args:
        config: the multi-task experiment (its tasks' training data are the targets).
        runs: task name -> a finished run folder trained on that task.
        **kwargs: passed to ``transferability`` (budget, seed, estimates, options, rank_by...).

    Returns:
        target task name -> its ranking of the other tasks' runs.
    """
    cfg, base = _config(config)
    names = [t.name for t in cfg.tasks]
    unknown = sorted(set(runs) - set(names))
    if unknown:
        raise ConfigError(f"--partners names {', '.join(unknown)}, not a task of the experiment "
                          f"(its tasks: {', '.join(names)})", field="--partners")
    if len(runs) < 2:
        raise ConfigError("--partners needs a run for at least two tasks (task=run_folder each)", field="--partners")
    kept = cfg if base is None else config
    out: dict[str, TransferabilityResult] = {}
    for target in names:
        if target not in runs:
            continue
        others = [runs[a] for a in names if a in runs and a != target]
        out[target] = transferability(kept, others, task=target, **kwargs)
    return out
