"""Plan, check and run a study's grid: (target, arm, budget, seed) cells, each one training run.

Everything that can fail on bad input (unknown task or run, a budget the data cannot give, a bad
override, an ``init_from`` source whose encoder type is not the cell's) fails in ``plan_study``,
before any run starts: ``polytask compare --check`` runs exactly that. ``run_study`` then trains the sources
the arms need, then every cell, skipping finished ones: a cell is finished when its run directory
holds ``results.json`` from an uninterrupted run. A killed cell (``checkpoints/last`` without
results) resumes exactly where it stopped; one killed before its first checkpoint starts afresh.
So a killed study, started again with the same command, continues.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polytask import runs
from polytask.config.loader import apply_overrides, load_config, parse_config, read_yaml_mapping
from polytask.config.schema import ExperimentConfig
from polytask.errors import CheckpointError, ConfigError, DataError
from polytask.study.budgets import check_budgets, sample_budgets, write_jsonl
from polytask.study.config import StudyConfig, dump_study
from polytask.training import checkpoint as ckpt

PLAN_FILE = "plan.json"
STUDY_FILE = "study.yaml"


@dataclass
class Cell:
    """One run of the grid."""

    target: str
    arm: str
    budget: str  # "16" or "all"
    seed: int
    run_dir: str
    n_train: int  # labels the run trains on
    train_file: str

    @property
    def key(self) -> str:
        return f"{self.target}/{self.arm}/{self.budget}/seed{self.seed}"


@dataclass
class StudyPlan:
    """A checked study: its cells and sources, with each one's resolved experiment."""

    study: StudyConfig
    study_dir: Path
    split: dict[str, str]  # target -> "dev" | "test": where its metric is read
    metric: dict[str, str]  # target -> metric name
    cells: list[Cell] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # source name -> run dir
    configs: dict[str, ExperimentConfig] = field(default_factory=dict)  # cell key / "source:<name>"
    samples: dict[str, dict[int, dict[str, list]]] = field(default_factory=dict)  # target -> seed -> budget -> examples
    eval_files: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> split -> file
    eval_examples: dict[str, dict[str, list]] = field(default_factory=dict)
    token_level: dict[str, bool] = field(default_factory=dict)


@dataclass
class StudyRun:
    """What ``run_study`` did."""

    study_dir: Path
    trained: list[str] = field(default_factory=list)  # cell keys (and "source:<name>") trained now
    skipped: list[str] = field(default_factory=list)  # finished before
    interrupted: bool = False
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell key, error) with keep_going


def default_study_dir(study: StudyConfig) -> Path:
    return Path(study.output_dir or Path("studies") / study.name)


def set_to_overrides(values: dict[str, Any]) -> list[str]:
    """``{dotted.key: value}`` -> ``["dotted.key=value"]`` for ``apply_overrides`` (values kept exact)."""
    out = []
    for key, value in values.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
        out.append(f"{key}={text.removesuffix('...').strip()}")
    return out


def cell_status(run_dir: str | Path) -> str:
    """``done`` (results of an uninterrupted run), ``resume`` (a last checkpoint) or ``new``."""
    run_dir = Path(run_dir)
    results = run_dir / runs.RESULTS_FILE
    if results.is_file():
        try:
            if not json.loads(results.read_text(encoding="utf-8")).get("interrupted", False):
                return "done"
        except json.JSONDecodeError:
            pass
    if runs.existing_checkpoint(run_dir, "last") is not None:
        return "resume"
    return "new"


def plan_study(study: StudyConfig, output_dir: str | Path | None = None) -> StudyPlan:
    """Check a study completely and lay out its cells; writes nothing.

    Args:
        study: the study (from ``load_study``: paths absolute).
        output_dir: the study folder (default ``study.output_dir`` or ``studies/<name>``).

    Raises:
        ConfigError: unknown target, task, source or run; a budget the data cannot give; an arm
            whose overrides do not make a valid experiment; a finished cell whose saved config no
            longer matches the study.
    """
    from polytask.training.setup import prepare_tasks

    study_dir = Path(output_dir) if output_dir else default_study_dir(study)
    exp_path = Path(study.experiment)
    base_raw = _read_yaml(exp_path)
    base_raw = apply_overrides(base_raw, set_to_overrides(study.set))
    base_cfg = parse_config(base_raw, source=str(exp_path), base_dir=exp_path.parent)
    task_names = [t.name for t in base_cfg.tasks]
    plan = StudyPlan(study, study_dir, split={}, metric={})

    for target in study.targets:
        if target not in task_names:
            raise ConfigError(
                f"target task {target!r} is not in the experiment {exp_path} (tasks: {', '.join(task_names)})",
                field="target",
            )
    # Sources: names, experiments.
    for name, src in study.sources.items():
        cfg = load_config(src.experiment, set_to_overrides(src.set))
        # Absolute: arms name it in transfer.init_from, which resolves against the experiment's folder.
        run_dir = (study_dir / "sources" / name).resolve()
        cfg.output_dir = str(run_dir)
        plan.sources[name] = str(run_dir)
        plan.configs[f"source:{name}"] = cfg

    # Arms: references first (cheap), data after.
    for i, arm in enumerate(study.arms):
        where = f"arms.{i}"
        for other in arm.multitask_with:
            if other not in task_names:
                raise ConfigError(
                    f"arm {arm.name!r}: multitask_with names task {other!r}, which is not in the "
                    f"experiment {exp_path} (tasks: {', '.join(task_names)})",
                    field=f"{where}.multitask_with",
                )
            if other in study.targets:
                raise ConfigError(
                    f"arm {arm.name!r}: multitask_with names {other!r}, which is a target of this "
                    "study; list only the extra tasks",
                    field=f"{where}.multitask_with",
                )
        if arm.init_from and arm.init_from not in study.sources:
            try:
                from polytask.runs import find_checkpoint

                find_checkpoint(arm.init_from)
            except CheckpointError as exc:
                known = ", ".join(study.sources) or "none"
                raise ConfigError(
                    f"arm {arm.name!r}: init_from {arm.init_from!r} is neither a source of this "
                    f"study (sources: {known}) nor a finished run ({exc})",
                    field=f"{where}.init_from",
                ) from None
        for key in arm.set:
            for target in study.targets:
                if key.startswith(f"tasks.{target}.data"):
                    raise ConfigError(
                        f"arm {arm.name!r}: set {key!r} changes the target's data, which the study "
                        "replaces with its label budgets; set the data in the base experiment",
                        field=f"{where}.set",
                    )

    for target in study.targets:
        tcfg = base_cfg.model_copy(update={"tasks": [base_cfg.task(target)]})
        td = prepare_tasks(tcfg)[target]
        task = td.task
        stratify = task.stratify  # the task says whether its budgets are sampled per class
        train_examples = td.splits["train"]
        check_budgets(study.budgets, study.budget_unit, train_examples, stratify, target)
        plan.token_level[target] = task.token_level
        plan.metric[target] = study.metric or task.config.metric or task.default_metric
        if study.split == "test" and "test" not in td.splits:
            raise ConfigError(
                f"split is 'test' but target {target!r} has no test split; set data.test in the "
                "experiment or use split: dev",
                field="split",
            )
        plan.split[target] = ("test" if "test" in td.splits else "dev") if study.split == "auto" else study.split
        data_dir = study_dir / "data" / target
        plan.eval_files[target] = {s: str((data_dir / f"{s}.jsonl").resolve()) for s in td.splits if s != "train"}
        plan.eval_examples[target] = {s: exs for s, exs in td.splits.items() if s != "train"}
        plan.samples[target] = {}
        for seed in study.seeds:
            samples = sample_budgets(train_examples, study.budgets, study.budget_unit, seed, stratify)
            plan.samples[target][seed] = samples
            for budget, exs in samples.items():
                train_file = str((data_dir / f"seed{seed}" / f"train-{budget}.jsonl").resolve())
                for arm in study.arms:
                    run_dir = study_dir / "runs" / target / arm.name / budget / f"seed{seed}"
                    cell = Cell(target, arm.name, budget, seed, str(run_dir), len(exs), train_file)
                    plan.cells.append(cell)
                    plan.configs[cell.key] = _cell_config(
                        plan, base_raw, exp_path, cell, task.labels, plan.eval_files[target]
                    )
    # Grid order: seed, then budget, then target and arm, so a killed study has whole comparisons.
    budgets = [str(b) for b in study.budgets]
    arms = [a.name for a in study.arms]
    plan.cells.sort(key=lambda c: (study.seeds.index(c.seed), budgets.index(c.budget),
                                   study.targets.index(c.target), arms.index(c.arm)))
    _check_finished_cells(plan)
    return plan


def _cell_config(
    plan: StudyPlan,
    base_raw: dict[str, Any],
    exp_path: Path,
    cell: Cell,
    labels: list[str] | None,
    eval_files: dict[str, str],
) -> ExperimentConfig:
    study = plan.study
    arm = study.arm(cell.arm)
    try:
        raw = apply_overrides(base_raw, set_to_overrides(arm.set))
    except ConfigError as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}", field="arms.set") from None
    keep = {cell.target, *arm.multitask_with}
    tasks = [dict(t) for t in raw.get("tasks", []) if isinstance(t, dict) and t.get("name") in keep]
    for t in tasks:
        if t["name"] == cell.target:
            t["data"] = {"train": cell.train_file, "format": "jsonl", **eval_files}
            if labels is not None:
                t["labels"] = list(labels)
    raw["tasks"] = tasks
    raw["name"] = f"{study.name}-{cell.target}-{cell.arm}-{cell.budget}-seed{cell.seed}"
    raw["output_dir"] = cell.run_dir
    train = dict(raw.get("train") or {})
    train["seed"] = cell.seed
    if "train.metric" not in arm.set and "train.metric" not in study.set:
        # Checkpoint selection follows the study's metric on the target, not a multi-task average.
        train["metric"] = f"{cell.target}/{plan.metric[cell.target]}"
    raw["train"] = train
    if arm.init_from:
        transfer = dict(raw.get("transfer") or {})
        transfer["init_from"] = plan.sources.get(arm.init_from, arm.init_from)
        raw["transfer"] = transfer
    try:
        cfg = parse_config(raw, source=f"{exp_path} (arm {arm.name!r})", base_dir=exp_path.parent)
    except ConfigError as exc:
        raise ConfigError(f"arm {arm.name!r} does not make a valid experiment: {exc}") from None
    _check_components(cfg, arm.name)
    if arm.init_from:
        _check_init_from(plan, cfg, arm.name, arm.init_from)
    return cfg


def _check_init_from(plan: StudyPlan, cfg: ExperimentConfig, arm: str, init_from: str) -> None:
    """The cell's encoder type must be its source's: training would otherwise stop at that cell,
    possibly hours in. A study source is checked by its config (it is not trained yet), a
    finished run by its checkpoint's config."""
    from polytask.transfer.init_from_run import source_checkpoint

    if init_from in plan.sources:
        src_type = plan.configs[f"source:{init_from}"].encoder.type
        if src_type != cfg.encoder.type:
            raise ConfigError(
                f"arm {arm!r}: init_from source {init_from!r} trains a {src_type!r} encoder, but this "
                f"arm's experiment has encoder.type {cfg.encoder.type!r}; set encoder.type (and its "
                "settings) in the arm's set to match the source, or start from another source",
                field="arms.init_from",
            )
        return
    try:
        source_checkpoint(cfg.transfer.init_from, cfg.encoder.type)
    except ConfigError as exc:
        raise ConfigError(f"arm {arm!r}: {exc}", field="arms.init_from") from None


def _check_components(cfg: ExperimentConfig, arm: str) -> None:
    """Unknown encoder types, strategies or task types fail now, not hours into the study."""
    from polytask.encoders import ENCODERS
    from polytask.tasks import build_task
    from polytask.transfer import build_strategies

    try:
        ENCODERS.get(cfg.encoder.type, field="encoder.type")
        build_strategies(cfg.transfer)
        for t in cfg.tasks:
            build_task(t, cfg.train.max_length)
    except ConfigError as exc:
        raise ConfigError(f"arm {arm!r}: {exc}") from None


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """A cell config without what may change harmlessly: the progress bar, where the study folder
    lives (output_dir, the leading part of the sample paths)."""
    cfg = json.loads(json.dumps(cfg))
    cfg.pop("output_dir", None)
    cfg.get("train", {}).pop("progress", None)
    for task in cfg.get("tasks", []):
        data = task.get("data", {})
        for split in ("train", "dev", "test"):
            if isinstance(data.get(split), str):
                data[split] = "/".join(Path(data[split]).parts[-3:])
    return cfg


def _check_finished_cells(plan: StudyPlan) -> None:
    """A finished cell whose saved config differs from the study's would mix old and new results."""
    for cell in plan.cells:
        if cell_status(cell.run_dir) != "done":
            continue
        saved_path = Path(cell.run_dir) / runs.CONFIG_FILE
        if not saved_path.is_file():
            continue
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        now = plan.configs[cell.key].model_dump(mode="json")
        if _comparable(saved) != _comparable(now):
            raise ConfigError(
                f"cell {cell.key} finished with another configuration ({saved_path}) than the "
                "study now gives; delete that run directory to re-run it, or use a new output_dir"
            )


def write_plan(plan: StudyPlan) -> None:
    """Write the study's data samples, ``plan.json`` and the resolved ``study.yaml``."""
    d = plan.study_dir
    d.mkdir(parents=True, exist_ok=True)
    for target, per_seed in plan.samples.items():
        tl = plan.token_level[target]
        for split, path in plan.eval_files[target].items():
            write_jsonl(Path(path), plan.eval_examples[target][split], tl)
        for seed, per_budget in per_seed.items():
            for budget, exs in per_budget.items():
                write_jsonl(_train_file(plan, target, seed, budget), exs, tl)
    (d / STUDY_FILE).write_text(dump_study(plan.study), encoding="utf-8")
    ckpt.write_json(d / PLAN_FILE, plan_json(plan))


def _train_file(plan: StudyPlan, target: str, seed: int, budget: str) -> Path:
    for c in plan.cells:
        if c.target == target and c.seed == seed and c.budget == budget:
            return Path(c.train_file)
    raise KeyError((target, seed, budget))


def plan_json(plan: StudyPlan) -> dict[str, Any]:
    """What ``polytask report`` needs to read a study folder: cells, arms, metric, split."""
    s = plan.study
    return {
        "name": s.name,
        "targets": s.targets,
        "arms": [a.model_dump(mode="json") for a in s.arms],
        "baseline": s.baseline_arm,
        "budgets": [str(b) for b in s.budgets],
        "budget_unit": s.budget_unit,
        "seeds": s.seeds,
        "metric": plan.metric,
        "split": plan.split,
        "sources": {k: os.path.relpath(v, plan.study_dir) for k, v in plan.sources.items()},
        "cells": [{**asdict(c), "run_dir": os.path.relpath(c.run_dir, plan.study_dir),
                   "train_file": os.path.relpath(c.train_file, plan.study_dir)} for c in plan.cells],
        "configs": {k: v.model_dump(mode="json") for k, v in plan.configs.items()},
    }


def run_study(
    plan: StudyPlan,
    on_event: Callable[[str, str], None] | None = None,
    keep_going: bool = True,
) -> StudyRun:
    """Train the sources the arms need, then every unfinished cell, in grid order.

    Args:
        plan: from ``plan_study``.
        on_event: called with (kind, message) as cells start and end (``skip``, ``start``,
            ``done``, ``fail``), e.g. to print progress.
        keep_going: a cell that fails is reported (``fail``) and recorded in ``failed``, and
            the study goes on with the others (cells of an arm whose source failed are failed
            without training); False: the first failure stops the study with its error.

    Returns:
        Which cells were trained now, which were already finished and which failed;
        ``interrupted`` when a run was stopped with Ctrl-C (its state is saved; run the study
        again to continue).
    """
    from polytask.training import loop

    say = on_event or (lambda kind, msg: None)
    write_plan(plan)
    out = StudyRun(plan.study_dir)
    needed = {a.init_from for a in plan.study.arms if a.init_from in plan.sources}
    jobs: list[tuple[str, str]] = [(f"source:{n}", plan.sources[n]) for n in plan.sources if n in needed]
    jobs += [(c.key, c.run_dir) for c in plan.cells]
    source_of = {c.key: plan.study.arm(c.arm).init_from for c in plan.cells}
    failed_sources: set[str] = set()
    for i, (key, run_dir) in enumerate(jobs, 1):
        status = cell_status(run_dir)
        if status == "done":
            out.skipped.append(key)
            say("skip", f"[{i}/{len(jobs)}] {key}: finished before")
            continue
        if source_of.get(key) in failed_sources:
            message = f"its init_from source {source_of[key]!r} failed"
            out.failed.append((key, message))
            say("fail", f"[{i}/{len(jobs)}] {key}: not trained: {message}")
            continue
        say("start", f"[{i}/{len(jobs)}] {key}" + (" (resuming)" if status == "resume" else ""))
        cfg = plan.configs[key]
        try:
            result = loop.train(cfg, output_dir=run_dir, resume=status == "resume", overwrite=status == "new")
        except (ConfigError, CheckpointError, DataError) as exc:
            if not keep_going:
                raise type(exc)(f"study cell {key}: {exc}") from exc
            _record_failure(out, say, key, str(exc), failed_sources)
            continue
        except Exception as exc:  # noqa: BLE001 - one broken cell must not lose the others' hours
            if not keep_going:
                raise
            import logging

            logging.getLogger("polytask.study").error("study cell %s failed", key, exc_info=exc)
            _record_failure(out, say, key, f"{type(exc).__name__}: {exc}", failed_sources)
            continue
        out.trained.append(key)
        if result.interrupted:
            out.interrupted = True
            say("stop", f"{key}: interrupted; run the study again to continue")
            break
        _drop_resume_state(run_dir)
        # The report compares test scores: say the test score the cell will be compared on (dev
        # when the task has no test split), marked as which.
        dev = "-" if result.best_metric is None else f"{result.best_metric:.4f}"
        test = getattr(result, "test", None) or {}
        if result.metric in test:
            say("done", f"{key}: test {result.metric}={test[result.metric]:.4f} "
                        f"(dev {dev}; {result.seconds:.0f}s)")
        else:
            say("done", f"{key}: dev {result.metric}={dev} ({result.seconds:.0f}s)")
    return out


def _record_failure(out: StudyRun, say: Callable[[str, str], None], key: str, message: str,
                    failed_sources: set[str]) -> None:
    out.failed.append((key, message))
    if key.startswith("source:"):
        failed_sources.add(key.removeprefix("source:"))
    say("fail", f"{key} failed: {message}")


def _drop_resume_state(run_dir: str | Path) -> None:
    """A finished cell is never resumed: its optimizer state (twice the model's size) goes.
    The weights stay, so the run can still be loaded, evaluated or used as ``init_from``."""
    last = runs.existing_checkpoint(run_dir, "last")
    if last is not None:
        (last / ckpt.OPTIM_FILE).unlink(missing_ok=True)


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "experiment file", field="experiment")
