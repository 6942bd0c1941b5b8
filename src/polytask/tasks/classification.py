"""``classification``: one label per text or text pair (sentiment, topic, NLI, paraphrase).

Predicts a distribution over the label set from the encoder's pooled vector; trained with
cross-entropy. Sentence pairs (``Example.text_pair``) are encoded as one sequence with two
segments, as in BERT (Devlin et al., NAACL 2019, https://arxiv.org/abs/1810.04805).
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
class ClassificationTaskConfig:
    """Options of ``classification`` (none yet; the dataclass keeps every member alike)."""


@TASKS.register("classification")
class ClassificationTask(Task):
    """Single-label classification of a text or a text pair.

    Labels are strings (a reader's integer labels become ``"0"``, ``"1"``, ...). Without
    ``labels`` in the config the label set is the training labels in natural order.

    Args:
        config: the task's config block (no options).
        max_length: tokens per example after truncation (longest-first for pairs).

    Predicts ``{"label": str, "probs": {label: float}}``; metrics are accuracy (the default),
    macro F1 and the Matthews correlation coefficient.
    """

    default_metric = "accuracy"
    greater_is_better = True

    options_class = ClassificationTaskConfig

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """Config labels when given (``check`` then enforces them), else the training labels."""
        self.pairs = has_pairs(train)
        if self.config.labels:
            self.labels = list(self.config.labels)
            return
        self.labels = sort_labels(ex.label for ex in train if ex.label is not None)
        if not self.labels:
            raise DataError(f"task {self.name!r}: no labels in train; label the training data")

    stratify = True  # single-label: a budget can be sampled per class

    @classmethod
    def example_inputs(cls) -> list[Example]:
        return [Example("good film", label="pos"), Example("bad", "very bad", label="neg"),
                Example("fine film", label="pos")]

    def check(self, examples: list[Example], split: str) -> None:
        """Reject empty texts, unknown labels and (outside prediction) missing labels."""
        known = set(self.labels or [])
        drop_unseen(self, examples, split, lambda ex: None if str(ex.label) in known else str(ex.label))
        for ex in examples:
            check_text(ex)
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            if str(ex.label) not in known:
                raise unknown_label_error(ex, str(ex.label), split, self)
        check_pairs(self, examples)  # after the per-example checks: an empty pair is named first

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        feats: Features = tokenize(example, tokenizer, self.max_length)
        if example.label is not None:
            feats["labels"] = self._index(example)
        return feats

    def _index(self, example: Example) -> int:
        try:
            return (self.labels or []).index(str(example.label))
        except ValueError:
            raise DataError(
                f"{at(example)}label '{example.label}' is not one of: {list_labels(self.labels)}"
            ) from None

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many examples with one tokenizer call."""
        return batched_encode(self, examples, tokenizer, ClassificationTask.encode, self._index)

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        batch = collate_inputs(features, pad_token_id)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)  # (B,)
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        if not self.labels:
            raise RuntimeError(f"task {self.name!r}: call fit_labels or load_state before build_head")
        return Head(hidden_size, len(self.labels), dropout, token_level=False)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy. logits (B, C), labels (B,)."""
        return F.cross_entropy(logits.float(), batch["labels"])

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        labels = self.labels or []
        probs = logits.detach().float().softmax(-1).cpu().tolist()  # (B, C)
        out = []
        for row in probs:
            best = max(range(len(row)), key=row.__getitem__)
            out.append({"label": labels[best], "probs": dict(zip(labels, row, strict=True))})
        return out

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        gold = [str(ex.label) for ex in examples]
        pred = [p["label"] for p in predictions]
        return {"accuracy": M.accuracy(gold, pred), "macro_f1": M.macro_f1(gold, pred), "mcc": M.mcc(gold, pred)}

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "options": asdict(self.options), **pair_state(self)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = state.get("labels")
        self.pairs = state.get("pairs")
        if "options" in state:
            self.check_options(state["options"])
