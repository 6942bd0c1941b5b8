"""The study file: which target task(s), which arms, which label budgets and seeds.

A study answers "did transfer (or multi-task training) help, and by how much?": every arm is
trained on the same stratified label budgets of the target task, with the same seeds, and
compared with a baseline arm. See docs/compare.md for the file format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polytask.config.loader import read_yaml_mapping
from polytask.errors import ConfigError

NAME = r"^[A-Za-z0-9_.-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """A source run trained once, before the arms that start from it (``init_from: <name>``).

    Args:
        experiment: the source's experiment YAML, relative to the study file.
        set: config overrides ``{dotted.key: value}`` applied to that experiment.
    """

    experiment: str
    set: dict[str, Any] = Field(default_factory=dict)


class ArmConfig(_Strict):
    """One way of training the target task.

    Args:
        name: the arm's name (a folder name: letters, digits, ``_ . -``).
        set: config overrides ``{dotted.key: value}`` applied to the base experiment
            (``transfer.strategy: freeze``, ``train.lr: 1e-4``, ``encoder.type: bilstm``).
        init_from: a source name from ``sources`` or a finished run directory (relative to the
            study file) whose encoder starts this arm (``transfer.init_from``).
        multitask_with: other tasks of the base experiment trained alongside the budgeted target,
            on their full data.
        description: a line shown in the report.
    """

    name: str = Field(pattern=NAME)
    set: dict[str, Any] = Field(default_factory=dict)
    init_from: str | None = None
    multitask_with: list[str] = Field(default_factory=list)
    description: str | None = None


Budget = int | Literal["all"]


class StudyConfig(_Strict):
    """A label-budget study.

    Args:
        name: the study's name.
        output_dir: the study folder (default ``studies/<name>``, relative to the working
            directory).
        experiment: the base experiment YAML (relative to the study file); it holds the target
            task(s) and any tasks ``multitask_with`` names.
        target: the task (or tasks) whose training labels are budgeted and which is scored.
        budgets: label budgets: numbers of training examples, or ``all``.
        budget_unit: ``total`` (examples in all) or ``per_class`` (examples of each class;
            classification only, for few-shot studies).
        seeds: one run per seed and cell; the seed draws the sample and sets ``train.seed``.
        metric: the target's metric compared across arms (default: the task's own metric).
        split: where the metric is read: ``test`` (the best checkpoint on the test split),
            ``dev`` (the best checkpoint's dev score), or ``auto`` (test when the target has a
            test split, dev otherwise).
        baseline: the arm every other arm is compared with (default: the first arm).
        set: overrides applied to every arm (before the arm's own ``set``).
        arms: the arms.
        sources: source runs that arms start from.
    """

    name: str = Field(pattern=NAME)
    output_dir: str | None = None
    experiment: str
    target: str | list[str]
    budgets: list[Budget] = Field(min_length=1)
    budget_unit: Literal["total", "per_class"] = "total"
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    metric: str | None = None
    split: Literal["auto", "dev", "test"] = "auto"
    baseline: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    arms: list[ArmConfig] = Field(min_length=1)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)

    @field_validator("budgets")
    @classmethod
    def _positive_unique(cls, budgets: list[Budget]) -> list[Budget]:
        for b in budgets:
            if isinstance(b, int) and b < 1:
                raise ValueError(f"a budget must be a positive number of labels or 'all'; got {b}")
        if len(set(budgets)) != len(budgets):
            raise ValueError("a budget is listed twice; list each once")
        # Smallest first, 'all' last: the order of curves and tables.
        return sorted(budgets, key=lambda b: (b == "all", b if isinstance(b, int) else 0))

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice; list each once")
        return seeds

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        import re

        for name in sources:
            if not re.match(NAME, name):
                raise ValueError(f"source name {name!r} may hold only letters, digits, '_', '.' and '-'")
        return sources

    @model_validator(mode="after")
    def _arms(self) -> StudyConfig:
        names = [a.name for a in self.arms]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"arm name {n!r} is used twice; give each arm its own name")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not an arm; arms: {', '.join(names)}")
        return self

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def baseline_arm(self) -> str:
        return self.baseline or self.arms[0].name

    def arm(self, name: str) -> ArmConfig:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)


def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study file; relative paths become absolute (against its folder).

    ``experiment``, each source's ``experiment`` and every ``init_from`` that is not a source
    name are resolved against the study file's folder, so a study runs from any directory.
    """
    path = Path(path)
    study = parse_study(read_yaml_mapping(path, "study file"), source=str(path))
    base = path.parent
    study.experiment = _absolute(base, study.experiment)
    for src in study.sources.values():
        src.experiment = _absolute(base, src.experiment)
    for arm in study.arms:
        if arm.init_from and arm.init_from not in study.sources:
            arm.init_from = _absolute(base, arm.init_from)
    return study


def parse_study(raw: dict[str, Any], source: str | None = None) -> StudyConfig:
    """Validate a study mapping; errors name each bad field."""
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source=source) from None


def dump_study(study: StudyConfig) -> str:
    return yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _absolute(base: Path, value: str) -> str:
    return value if os.path.isabs(value) else str((base / value).resolve())


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("function-" in p or p in ("int", "literal['all']")))]
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _owner(loc[:-1])
            allowed = ", ".join(owner.model_fields) if owner else "?"
            lines.append(f"unknown key '{dotted}'; allowed keys here: {allowed}")
        elif err["type"] == "missing":
            lines.append(f"missing required key '{dotted}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            lines.append(f"'{dotted}': {msg}{got_text}")
    unique = list(dict.fromkeys(lines))
    return "invalid study file:\n  " + "\n  ".join(unique)


def _owner(loc: list[Any]) -> type[BaseModel] | None:
    """The model owning the key at ``loc`` (to list its allowed keys)."""
    if not loc:
        return StudyConfig
    if loc[0] == "arms":
        return ArmConfig
    if loc[0] == "sources":
        return SourceConfig
    return None
