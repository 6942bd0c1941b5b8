"""``multilabel``: any number of labels per text or text pair (tags, topics, toxicity types).

Predicts one independent probability per label from the encoder's pooled vector (one sigmoid
per label, the binary-relevance formulation); trained with binary cross-entropy on logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.data.example import Example
from polytask.errors import DataError
from polytask.evaluation import metrics as M
from polytask.tasks.base import (
    TASKS,
    UNLABELLED_SPLITS,
    Batch,
    Features,
    Head,
    Task,
    at,
    batched_encode,
    check_pairs,
    check_text,
    collate_inputs,
    drop_unseen,
    has_pairs,
    list_labels,
    missing_label_error,
    pair_state,
    sort_labels,
    tokenize,
    unknown_label_error,
)


@dataclass
class MultilabelTaskConfig:
    """Options of ``multilabel``.

    Args:
        threshold: a label is predicted when its probability is at least this (0 < t < 1).
        separator: splits a label string into labels (``"sports,politics"``); JSON lists need
            no splitting. Labels are stripped; an empty string means "no labels".
    """

    threshold: float = 0.5
    separator: str = ","

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (exclusive); got {self.threshold}")
        if not self.separator:
            raise ValueError("separator must be a non-empty string")


@TASKS.register("multilabel")
class MultilabelTask(Task):
    """Multi-label classification of a text or a text pair.

    A raw label is a list of label names or a string split on ``options.separator``.

    Args:
        config: the task's config block; options ``threshold`` and ``separator``.
        max_length: tokens per example after truncation.

    Predicts ``{"labels": [...], "probs": {label: float}}``; metrics are micro F1 (the default),
    macro F1 and subset accuracy (exact match of the label set).
    """

    default_metric = "micro_f1"
    greater_is_better = True

    options_class = MultilabelTaskConfig


    @classmethod
    def example_inputs(cls) -> list[Example]:
        return [Example("goal and vote", label="sports,politics"), Example("phone", label="tech"),
                Example("meh", label="")]

    def parse_label(self, raw: Any) -> list[str]:
        """Label names of one raw label: a list, or a string split on the separator."""
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split(self.options.separator)
        out: list[str] = []
        for item in items:
            name = str(item).strip()
            if name and name not in out:
                out.append(name)
        return out

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """Config labels when given, else every label used in training, in natural order."""
        self.pairs = has_pairs(train)
        if self.config.labels:
            self.labels = list(self.config.labels)
            return
        self.labels = sort_labels(
            name for ex in train if ex.label is not None for name in self.parse_label(ex.label)
        )
        if not self.labels:
            raise DataError(f"task {self.name!r}: no labels in train; label the training data")

    def check(self, examples: list[Example], split: str) -> None:
        """Reject empty texts, unknown labels and (outside prediction) missing labels.

        An empty label (``""`` or ``[]``) is a valid "none of the labels"; only None is missing.
        """
        known = set(self.labels or [])
        drop_unseen(self, examples, split,
                    lambda ex: next((n for n in self.parse_label(ex.label) if n not in known), None))
        for ex in examples:
            check_text(ex)
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            for name in self.parse_label(ex.label):
                if name not in known:
                    raise unknown_label_error(ex, name, split, self)
        check_pairs(self, examples)  # after the per-example checks: an empty pair is named first

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        feats: Features = tokenize(example, tokenizer, self.max_length)
        if example.label is not None:
            feats["labels"] = self._multi_hot(example)
        return feats

    def _multi_hot(self, example: Example) -> list[float]:
        labels = self.labels or []
        names = self.parse_label(example.label)
        for name in names:
            if name not in labels:
                raise DataError(f"{at(example)}label '{name}' is not one of: {list_labels(labels)}")
        return [1.0 if lab in names else 0.0 for lab in labels]

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many examples with one tokenizer call."""
        return batched_encode(self, examples, tokenizer, MultilabelTask.encode, self._multi_hot)

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        batch = collate_inputs(features, pad_token_id)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)  # (B, C)
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        if not self.labels:
            raise RuntimeError(f"task {self.name!r}: call fit_labels or load_state before build_head")
        return Head(hidden_size, len(self.labels), dropout, token_level=False)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Binary cross-entropy with logits, averaged over examples and labels. (B, C), (B, C)."""
        return F.binary_cross_entropy_with_logits(logits.float(), batch["labels"].float())

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        labels = self.labels or []
        probs = logits.detach().float().sigmoid().cpu().tolist()  # (B, C)
        t = self.options.threshold
        return [
            {
                "labels": [lab for lab, p in zip(labels, row, strict=True) if p >= t],
                "probs": dict(zip(labels, row, strict=True)),
            }
            for row in probs
        ]

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        gold = [self.parse_label(ex.label) for ex in examples]
        pred = [p["labels"] for p in predictions]
        return {
            "micro_f1": M.multilabel_micro_f1(gold, pred, self.labels),
            "macro_f1": M.multilabel_macro_f1(gold, pred, self.labels),
            "subset_accuracy": M.subset_accuracy(gold, pred),
        }

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "options": asdict(self.options), **pair_state(self)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = state.get("labels")
        self.pairs = state.get("pairs")
        if "options" in state:
            self.check_options(state["options"])
