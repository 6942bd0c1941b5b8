"""A task's ``augment`` block applied to its training set: the one call the training loop makes.

``augment_examples(train, spec, token_level=..., seed=..., epoch=...)`` returns the originals
followed by ``spec.copies`` augmented copies of each; in each copy every op of ``spec.ops`` is
applied, in order, with probability ``spec.p``. Every random choice comes from a generator seeded
by ``(seed, epoch, index of the example, copy)`` alone, so the same call gives the same copies in
any process, a resumed run gets the epoch's copies again, and another epoch gets new ones.
Nothing is written to disk; dev and test data are never passed here.
"""

from __future__ import annotations

import functools
import json
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.augment.base import AUGMENTERS, Augmenter, check_fits_task, op_name
from polytask.data.example import Example
from polytask.errors import ConfigError
from polytask.options import build_options

if TYPE_CHECKING:
    from polytask.config.schema import AugmentConfig, ExperimentConfig

SIDES = {"both": ("text", "text_pair"), "first": ("text",), "second": ("text_pair",)}
SEQUENCE_TYPES = frozenset({"classification", "multilabel", "regression"})
PATH_OPTIONS = ("model", "back_model", "source")


def regression_error(task: str) -> str:
    return (
        f"augmentation is not available for the regression task {task!r}: an edited text's score is not "
        "known to stay the same (deleting 'not' or swapping two words moves a rating), so augmented copies "
        f"would train on wrong targets; remove tasks.{task}.augment"
    )


def build_op(raw: Any, field: str) -> Augmenter:
    """One member from its ``{type: name, ...options}`` mapping.

    Args:
        raw: the op's YAML mapping.
        field: its config path (``tasks.sst2.augment.ops.0``), named in errors.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ConfigError(
            f"each augmentation op is a mapping with a type (one of: {', '.join(AUGMENTERS.names())}) "
            f"and its options, e.g. {{type: random_swap, alpha: 0.1}}; got {raw!r}",
            field=field,
        )
    options = {k: v for k, v in raw.items() if k != "type"}
    cls = AUGMENTERS.get(raw["type"], field=f"{field}.type")
    return cls(build_options(cls.options_class, options, name=raw["type"], kind="augmentation op", field=field))


def check_spec(spec: AugmentConfig, task_name: str, task_type: str) -> None:
    """Config-time checks of a task's ``augment`` block (no files are read): every op is known,
    its options are valid and it fits the task kind; regression tasks are refused.

    Raises:
        ConfigError: the first problem, naming the field.
    """
    if task_type == "regression":
        raise ConfigError(regression_error(task_name))
    token_level = task_type == "token_classification"
    known_kind = token_level or task_type in SEQUENCE_TYPES
    for i, raw in enumerate(spec.ops):
        op = build_op(raw, f"tasks.{task_name}.augment.ops.{i}")
        if known_kind:
            check_fits_task(type(op), token_level, f"tasks.{task_name}.augment.ops.{i}")


@dataclass
class AugmentPipeline:
    """A built ``augment`` block: its ops, checked, ready to fit and apply.

    Args:
        spec: the task's ``augment`` block.
        token_level: whether examples are tagged word lists (token classification).
        where: config path of the block, named in errors.
    """

    spec: AugmentConfig
    token_level: bool
    where: str = "augment"
    ops: list[Augmenter] = field(init=False)

    def __post_init__(self) -> None:
        self.ops = []
        for i, raw in enumerate(self.spec.ops):
            op = build_op(raw, f"{self.where}.ops.{i}")
            check_fits_task(type(op), self.token_level, f"{self.where}.ops.{i}")
            op.check(f"{self.where}.ops.{i}")
            self.ops.append(op)

    def fit(self, examples: list[Example]) -> None:
        """Let every op see the original training examples (mention inventories and the like)."""
        for op in self.ops:
            op.fit(examples)

    def copy(self, example: Example, index: int, copy: int, seed: int, epoch: int) -> Example:
        """Copy number ``copy`` of the ``index``-th training example, for this seed and epoch."""
        rng = example_rng(seed, epoch, index, copy)
        sides = SIDES[self.spec.pair]
        if self.token_level and isinstance(example.text, str):
            # Token tasks also accept words as one string (tags likewise); ops need the lists.
            label = example.label.split() if isinstance(example.label, str) else example.label
            example = replace(example, text=example.text.split(), label=label)
        out = example
        applied: list[str] = []
        for op in self.ops:
            if rng.random() < self.spec.p:
                out = op.augment(out, rng, sides)
                applied.append(op_name(type(op)))
        where = f"{example.where} (augmented copy {copy + 1})" if example.where else f"augmented copy {copy + 1}"
        return replace(out, where=where, meta={**example.meta, "augmented": {"copy": copy + 1, "ops": applied}})

    def augment(self, examples: list[Example], seed: int, epoch: int) -> list[Example]:
        """The originals, then ``copies`` copies of each (example by example)."""
        copies = [self.copy(ex, i, c, seed, epoch) for i, ex in enumerate(examples) for c in range(self.spec.copies)]
        return list(examples) + copies


def example_rng(seed: int, epoch: int, index: int, copy: int) -> random.Random:
    """The generator of one copy. A string seed is hashed with SHA-512 by ``random``, so it is the
    same in every process (unlike ``hash()``) and independent of any global random state."""
    return random.Random(f"polytask.augment:{seed}:{epoch}:{index}:{copy}")


def as_spec(spec: Any) -> AugmentConfig:
    """An ``AugmentConfig`` from itself or its mapping (ConfigError on bad keys)."""
    from pydantic import ValidationError

    from polytask.config.loader import format_validation_error
    from polytask.config.schema import AugmentConfig

    if isinstance(spec, AugmentConfig):
        return spec
    try:
        return AugmentConfig.model_validate(spec)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc).replace("experiment config", "augment block")) from None


@functools.lru_cache(maxsize=8)
def _pipeline(spec_json: str, token_level: bool, field: str) -> AugmentPipeline:
    # Cached so a loop calling once per epoch builds and checks the ops (and loads models) once.
    return AugmentPipeline(as_spec(json.loads(spec_json)), token_level, field)


def build_pipeline(spec: Any, *, token_level: bool, field: str = "augment") -> AugmentPipeline:
    """The (cached) pipeline of ``spec``; ConfigError for an op that is unknown, badly
    configured, unfit for the task kind, or whose resources (packages, model folders) are missing.

    The training loop may call this once before training so bad input fails before the model loads.
    """
    spec = as_spec(spec)
    return _pipeline(json.dumps(spec.model_dump(mode="json"), sort_keys=True), token_level, field)


def augment_examples(
    examples: list[Example], spec: Any, *, token_level: bool, seed: int, epoch: int, field: str = "augment"
) -> list[Example]:
    """The training examples followed by their augmented copies for this epoch.

    Args:
        examples: the task's (original) training examples; never dev or test.
        spec: the task's ``augment`` block (an ``AugmentConfig`` or its mapping).
        token_level: whether examples are tagged word lists (token classification).
        seed: the run's seed.
        epoch: the epoch (0-based); each gives new copies, the same ones every time it is asked.
        field: config path of the block, named in errors (``tasks.ner.augment``).

    Returns:
        ``examples`` (unchanged, first) then ``spec.copies`` copies of each, example by example;
        a copy's ``meta["augmented"]`` says which copy it is and which ops were applied.
    """
    pipeline = build_pipeline(spec, token_level=token_level, field=field)
    pipeline.fit(examples)
    return pipeline.augment(examples, seed, epoch)


def resolve_paths(cfg: ExperimentConfig, base_dir: str | os.PathLike) -> None:
    """Make the relative paths of ``augment`` op options (``model``, ``back_model``, a vectors
    ``source``) and of ``unlabeled.path`` absolute against ``base_dir`` (the experiment file's
    folder), as the loader does for data paths. Absolute paths and packaged names stay."""
    base = Path(base_dir)

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value) and (base / value).exists():
            return str((base / value).resolve())
        return value

    for task in cfg.tasks:
        if task.augment is not None:
            task.augment.ops = [
                {k: fix(v) if k in PATH_OPTIONS else v for k, v in op.items()} if isinstance(op, dict) else op
                for op in task.augment.ops
            ]
        if task.unlabeled is not None:
            task.unlabeled.path = fix(task.unlabeled.path)


@dataclass
class Preview:
    """An original training example and its augmented copies (``polytask augment``)."""

    original: Example
    copies: list[Example]


def preview(cfg: ExperimentConfig, task: str | None = None, n: int = 20, seed: int | None = None,
            epoch: int = 0) -> list[Preview]:
    """The first ``n`` training examples of ``task`` beside the copies training would make of them
    in ``epoch`` (ops fitted on the whole training set, as in training).

    Args:
        cfg: the experiment.
        task: the task (may be omitted when the experiment has one task with an ``augment`` block).
        n: how many training examples to show.
        seed: the seed (default ``train.seed``).
        epoch: which epoch's copies to show.
    """
    from polytask.data.loading import load_splits
    from polytask.tasks import build_task

    tc = cfg.task_with(task, "augment", "preview", "tasks[].augment",
                       "tasks.{name}.augment (copies, p, ops) to the experiment")
    task = tc.name
    token_level = build_task(tc, cfg.train.max_length).token_level
    train = load_splits(tc.data, token_level)["train"]
    pipeline = build_pipeline(tc.augment, token_level=token_level, field=f"tasks.{task}.augment")
    pipeline.fit(train)
    seed = cfg.train.seed if seed is None else seed
    return [
        Preview(ex, [pipeline.copy(ex, i, c, seed, epoch) for c in range(tc.augment.copies)])
        for i, ex in enumerate(train[: max(0, n)])
    ]
