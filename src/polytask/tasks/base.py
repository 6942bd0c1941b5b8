"""Task family: each task owns its labels, head, loss, collation, decoding and metrics.

Dimension letters: B batch, T tokens, H hidden size, C classes.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polytask.config.schema import TaskConfig
from polytask.data.example import Example
from polytask.encoders.base import EncoderOutput
from polytask.errors import DataError
from polytask.options import build_options
from polytask.registry import Registry

Features = dict[str, Any]
Batch = dict[str, Any]
logger = logging.getLogger("polytask.data")
SHOWN_LABELS = 20  # labels named in an error; a slot-filling set has 170


@dataclass
class NoOptions:
    """Options of a member that takes none."""


class Task(ABC):
    """One prediction problem on top of the shared encoder.

    Args:
        config: the task's config block.
        max_length: tokens per example after truncation.

    Life cycle: ``fit_labels(train)`` fixes the label set (from config or data), ``check(examples,
    split)`` rejects bad rows before training, ``encode`` turns an Example into features,
    ``collate`` pads a list of features into a Batch, ``build_head`` makes the head module,
    ``loss``/``decode`` consume the head's output, ``metrics`` scores decoded predictions.
    """

    registry_name: str
    token_level: bool = False  # True: Example.text is a list of words, label a list of tags
    options_class: type = NoOptions  # the member's options dataclass (``tasks[].options``)
    default_metric: str = "loss"
    greater_is_better: bool = True
    # What a member supports, declared instead of checked by class elsewhere:
    stratify: bool = False  # label budgets may sample this task's examples per class
    # Whether this task reads the same features as other sequence tasks of its max_length (the
    # predictor then answers them from one encoder pass); False for a task with its own layout
    # (extractive QA's windows).
    shares_features: bool = True
    # Whether this task can join a shared-input stream (multitask.shared_inputs: one encoder pass,
    # each task's head on the rows it labels); False for heads that need more than the encoder's
    # states of the row (a decoder reading its targets) or features of their own.
    shares_inputs: bool = True

    @classmethod
    def example_inputs(cls) -> list[Example]:
        """A few labelled examples of the shape this task reads: documentation, and the samples
        the shared test battery runs every member on. A member overrides it."""
        raise NotImplementedError(f"task type {getattr(cls, 'registry_name', cls.__name__)} gives no example_inputs")

    def __init__(self, config: TaskConfig, max_length: int = 128):
        self.config = config
        self.name = config.name
        self.max_length = config.max_length or max_length
        self.labels: list[str] | None = list(config.labels) if config.labels else None
        # Whether training used text pairs (sequence tasks; set by fit_labels, saved in state):
        # None when unknown (token tasks, checkpoints from before it was recorded).
        self.pairs: bool | None = None
        self.check_options(config.options)

    # ---- labels and data checks -------------------------------------------------------------
    def check_options(self, options: dict[str, Any]) -> None:
        """Validate ``options`` into ``self.options`` (an ``options_class`` instance)."""
        self.options = options_from(self.options_class, options, self.name, self.registry_name)

    @abstractmethod
    def fit_labels(self, train: list[Example]) -> None:
        """Fix ``self.labels`` from the config or, when absent, from the training data."""

    @abstractmethod
    def check(self, examples: list[Example], split: str) -> None:
        """Raise DataError (naming file:line) for any example this task cannot use."""

    # ---- features ---------------------------------------------------------------------------
    @abstractmethod
    def encode(self, example: Example, tokenizer: Any) -> Features:
        """Tokenise one example; include ``labels`` when the example has a label."""

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many examples, in order; built-in tasks override it with one batched
        tokenizer call (what prediction uses). The default calls ``encode`` per example."""
        return [self.encode(e, tokenizer) for e in examples]

    @abstractmethod
    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        """Pad a list of features into tensors (dynamic padding to the longest in the batch)."""

    # ---- model ------------------------------------------------------------------------------
    @abstractmethod
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        """A module mapping EncoderOutput to this task's logits."""

    def build_head_for(self, encoder: Any, dropout: float) -> nn.Module:
        """The head on top of ``encoder``: ``build_head`` of its width. A member whose head is
        made from the encoder itself (a seq2seq decoder warm-started from its weights) overrides it."""
        return self.build_head(encoder.hidden_size, dropout)

    @abstractmethod
    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar training loss for one batch."""

    @abstractmethod
    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        """Per-example predictions as JSON-ready dicts."""

    def predict_output(
        self, logits: torch.Tensor, batch: Batch, examples: list[Example]
    ) -> list[dict[str, Any]]:
        """The predictions served to users (``polytask predict``, the server): ``decode``'s, to
        which a task may add fields that need the inputs (token tasks add entity spans with
        character offsets). ``examples`` are the batch's inputs as given, in batch order."""
        return self.decode(logits, batch)

    @abstractmethod
    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        """Scores of decoded predictions against the examples' gold labels."""

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready state saved with checkpoints (the label list)."""
        return {"labels": self.labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = state.get("labels")


def pad_sequences(seqs: list[list[int]], value: int) -> torch.Tensor:
    """Right-pad integer lists to the longest. -> (B, T) long tensor."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate_inputs(features: list[Features], pad_token_id: int) -> Batch:
    """Pad the encoder inputs shared by every task (input_ids, attention_mask, token_type_ids)."""
    batch: Batch = {
        "input_ids": pad_sequences([f["input_ids"] for f in features], pad_token_id),
        "attention_mask": pad_sequences([f["attention_mask"] for f in features], 0),
    }
    if all("token_type_ids" in f for f in features):
        batch["token_type_ids"] = pad_sequences([f["token_type_ids"] for f in features], 0)
    return batch


def tokenize(example: Example, tokenizer: Any, max_length: int) -> dict[str, list[int]]:
    """Tokenise a single text or a text pair with truncation (longest-first for pairs)."""
    enc = tokenizer(
        example.text,
        example.text_pair,
        truncation=True,
        max_length=max_length,
    )
    return {k: list(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def tokenize_batch(examples: list[Example], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """``tokenize`` of many examples in one tokenizer call (same output, example by example).

    One call needs every example with a pair text or none with one; a mixed list is tokenised
    example by example.
    """
    if not examples:
        return []
    pairs = [e.text_pair for e in examples]
    if any(p is None for p in pairs) and any(p is not None for p in pairs):
        return [tokenize(e, tokenizer, max_length) for e in examples]
    enc = tokenizer(
        [e.text for e in examples],
        None if pairs[0] is None else pairs,
        truncation=True,
        max_length=max_length,
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: list(enc[k][i]) for k in keys} for i in range(len(examples))]


def batched_encode(task: Task, examples: list[Example], tokenizer: Any, own_encode: Any, target: Any) -> list[Features]:
    """``encode`` of many sequence-level examples with one tokenizer call.

    Args:
        task: the task.
        examples: the examples, in order.
        tokenizer: the encoder's fast tokenizer.
        own_encode: the member's own ``encode`` function: a subclass that changed ``encode`` is
            honoured (called per example) instead of being bypassed.
        target: ``example -> labels`` for a labelled example.
    """
    if type(task).encode is not own_encode:
        return [task.encode(e, tokenizer) for e in examples]
    feats: list[Features] = tokenize_batch(examples, tokenizer, task.max_length)
    for f, ex in zip(feats, examples, strict=True):
        if ex.label is not None:
            f["labels"] = target(ex)
    return feats


class Head(nn.Module):
    """Dropout + linear over the pooled vector (sequence tasks) or token states (token tasks)."""

    def __init__(self, hidden_size: int, out_features: int, dropout: float, token_level: bool):
        super().__init__()
        self.token_level = token_level
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, out_features)

    def forward(self, enc: EncoderOutput) -> torch.Tensor:
        x = enc.token_states if self.token_level else enc.pooled  # (B, T, H) or (B, H)
        return self.out(self.dropout(x))  # (B, T, C) or (B, C)


TASKS: Registry[Task] = Registry("task type")


# ---- helpers shared by the members (added with the first four task types) -------------------
def natural_key(label: str) -> list[Any]:
    """Sort key that orders digit runs by value, so "label2" < "label10" and "2" < "10".

    ``re.split`` with a capturing group alternates text and digit runs, so two keys compare
    text with text and int with int and never mix types.
    """
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", label))]


def sort_labels(labels: Any) -> list[str]:
    """A deterministic label order: unique labels in natural order (see ``natural_key``)."""
    # The string itself breaks ties ("01" and "1" share a key), so set order never leaks in.
    return sorted({str(x) for x in labels}, key=lambda x: (natural_key(x), x))


UNLABELLED_SPLITS = frozenset({"predict"})
"""Splits whose examples may lack a label (prediction inputs); every other split needs labels,
because training uses them and dev/test/eval metrics score against them."""


def at(example: Example) -> str:
    """The ``file:line: `` prefix for an error about ``example`` (empty when unknown)."""
    return f"{example.where}: " if example.where else ""


def check_text(example: Example) -> None:
    """Raise DataError when the example's text (or its pair text) is empty."""
    text = example.text
    if text is None or (isinstance(text, str) and not text.strip()) or (isinstance(text, list) and not text):
        raise DataError(f"{at(example)}empty text; every example needs some text")
    pair = example.text_pair
    if pair is not None and isinstance(pair, str) and not pair.strip():
        raise DataError(f"{at(example)}empty text_pair; give the second text or leave the field out")


def missing_label_error(example: Example, split: str) -> DataError:
    """DataError for an unlabelled example in a split that needs labels."""
    return DataError(
        f"{at(example)}no label in {split}; every {split} example needs one "
        "(only prediction inputs may be unlabelled)"
    )


def list_labels(labels: list[str] | None, limit: int = SHOWN_LABELS) -> str:
    """``a, b, c`` for a few labels; the first ``limit`` and the count for many."""
    labels = list(labels or [])
    if len(labels) <= limit:
        return ", ".join(labels)
    return f"{', '.join(labels[:limit])}, ... ({len(labels)} labels; the first {limit} shown)"


def has_pairs(train: list[Example]) -> bool:
    """Whether any training example is a text pair (what ``Task.pairs`` records)."""
    return any(ex.text_pair is not None for ex in train)


def check_pairs(task: Task, examples: list[Example]) -> None:
    """A DataError for the first example with a ``text_pair`` when ``task`` was trained on
    single texts: the pair would be fed to a model that never saw one, silently."""
    if task.pairs is not False:
        return
    for ex in examples:
        if ex.text_pair is not None:
            raise DataError(
                f"{at(ex)}this example has a text_pair, but task {task.name!r} was trained on "
                "single texts (its training data has no text_pair); leave the pair out, or train "
                "the task on pairs"
            )


def pair_state(task: Task) -> dict[str, Any]:
    """The ``pairs`` entry of a sequence task's saved state (empty when unknown)."""
    return {} if task.pairs is None else {"pairs": task.pairs}


DROPPABLE_SPLITS = frozenset({"dev", "test", "eval"})
"""Splits whose examples ``data.unseen_labels: skip`` may leave out (never train)."""


def drop_unseen(task: Task, examples: list[Example], split: str, unseen: Callable[[Example], str | None]) -> None:
    """Under ``data.unseen_labels: skip``, remove (in place) the ``split`` examples whose label
    training never saw and log how many, on which lines, with which labels.

    Args:
        task: the task (its ``config.data.unseen_labels`` is read).
        examples: the split's examples; changed in place, so the caller trains and scores
            only what is left.
        split: the split's name; train is never touched.
        unseen: the first label of an example that is not known, or None.
    """
    if split not in DROPPABLE_SPLITS or getattr(task.config.data, "unseen_labels", "error") != "skip":
        return
    dropped = [(ex, lab) for ex in examples if ex.label is not None and (lab := unseen(ex)) is not None]
    if not dropped:
        return
    if len(dropped) == len(examples):
        ex, lab = dropped[0]
        raise DataError(
            f"{at(ex)}every {split} example of task {task.name!r} has a label training never saw "
            f"(the first: {lab!r}); data.unseen_labels: skip would leave none. Known labels: "
            f"{list_labels(task.labels)}"
        )
    gone = {id(ex) for ex, _ in dropped}
    examples[:] = [ex for ex in examples if id(ex) not in gone]
    where = ", ".join(ex.where for ex, _ in dropped[:SHOWN_LABELS])
    more = f" and {len(dropped) - SHOWN_LABELS} more" if len(dropped) > SHOWN_LABELS else ""
    labels = list_labels(sorted({lab for _, lab in dropped}))
    logger.warning(
        "task %s: skipped %d %s example(s) whose label training never saw (data.unseen_labels: "
        "skip): %s%s; labels: %s", task.name, len(dropped), split, where, more, labels,
    )


def unknown_label_error(
    example: Example, label: str, split: str, task: Task, noun: str = "label", where: str | None = None
) -> DataError:
    """DataError for a label outside the task's label set.

    Args:
        example: the offending example (its ``where`` is named).
        label: the unknown label.
        split: the split it was found in.
        task: the task; whether its labels came from the config decides the advice.
        noun: what a label is called in this task ("label", "tag").
        where: the ``file:line`` to name instead of the example's (a token's own line).
    """
    known = list_labels(task.labels)
    prefix = f"{where}: " if where else at(example)
    skip = " (or set data.unseen_labels: skip to leave such examples out)" if split in DROPPABLE_SPLITS else ""
    if task.config.labels:
        # Labels given in the config: the config is the reference, not the training data.
        return DataError(
            f"{prefix}{noun} '{label}' in {split} is not in tasks.{task.name}.labels "
            f"(known labels: {known}). Add it there or fix the data{skip}"
        )
    return DataError(
        f"{prefix}{noun} '{label}' in {split} was never seen in training; known labels: "
        f"{known}. Add it to tasks.{task.name}.labels or fix the data{skip}"
    )


def options_from(
    config_cls: type, options: dict[str, Any], task_name: str, task_type: str
) -> Any:
    """A task member's options dataclass from ``tasks.<name>.options`` (see ``build_options``)."""
    return build_options(config_cls, options, name=task_type, kind="task type", field=f"tasks.{task_name}.options")
