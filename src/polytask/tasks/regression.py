"""``regression``: one real number per text or text pair (similarity as in STS-B, ratings).

Predicts a score from the encoder's pooled vector with a single linear output; trained with
mean squared error. Targets are used as given (no scaling), so keep them in a modest range
(for example 0-5 for STS-B) or scale them in the data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.config.schema import TaskConfig
from polytask.data.example import Example
from polytask.errors import ConfigError, DataError
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
    has_pairs,
    missing_label_error,
    pair_state,
    tokenize,
)


@dataclass
class RegressionTaskConfig:
    """Options of ``regression`` (none yet; the dataclass keeps every member alike)."""


def parse_target(example: Example) -> float:
    """The example's label as a finite float, or DataError naming the example."""
    raw = example.label
    try:
        if isinstance(raw, bool):  # float(True) is 1.0; a boolean is not a score
            raise ValueError
        value = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{at(example)}label '{raw}' is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{at(example)}label '{raw}' is not a finite number")
    return value


@TASKS.register("regression")
class RegressionTask(Task):
    """Regression of a text or a text pair onto one real number.

    Args:
        config: the task's config block; ``labels`` must be absent (there is no label set).
        max_length: tokens per example after truncation.

    Predicts ``{"score": float}``; metrics are Pearson's r (the default), Spearman's rho,
    MSE and MAE.
    """

    default_metric = "pearson"
    greater_is_better = True


    @classmethod
    def example_inputs(cls) -> list[Example]:
        return [Example("a man sleeps", "a man rests", label="4.5"), Example("cats", label="0.5"),
                Example("dogs", label="2")]

    def __init__(self, config: TaskConfig, max_length: int = 128):
        super().__init__(config, max_length)
        if config.labels:
            raise ConfigError(
                "a regression task has no label set; remove the labels list",
                field=f"tasks.{config.name}.labels",
            )

    options_class = RegressionTaskConfig

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """Nothing to fit: ``labels`` stays None (whether training uses pairs is recorded)."""
        self.labels = None
        self.pairs = has_pairs(train)

    def check(self, examples: list[Example], split: str) -> None:
        """Reject empty texts, non-numeric targets and (outside prediction) missing targets."""
        for ex in examples:
            check_text(ex)
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            parse_target(ex)
        check_pairs(self, examples)  # after the per-example checks: an empty pair is named first

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        feats: Features = tokenize(example, tokenizer, self.max_length)
        if example.label is not None:
            feats["labels"] = parse_target(example)
        return feats

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many examples with one tokenizer call."""
        return batched_encode(self, examples, tokenizer, RegressionTask.encode, parse_target)

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        batch = collate_inputs(features, pad_token_id)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float)  # (B,)
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return Head(hidden_size, 1, dropout, token_level=False)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean squared error. logits (B, 1) -> (B,) against labels (B,)."""
        return F.mse_loss(logits.float().squeeze(-1), batch["labels"].float())

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        scores = logits.detach().float().squeeze(-1).cpu().tolist()  # (B,)
        return [{"score": float(s)} for s in scores]

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        gold = [parse_target(ex) for ex in examples]
        pred = [p["score"] for p in predictions]
        return {
            "pearson": M.pearson(gold, pred),
            "spearman": M.spearman(gold, pred),
            "mse": M.mse(gold, pred),
            "mae": M.mae(gold, pred),
        }

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": None, "options": asdict(self.options), **pair_state(self)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = None
        self.pairs = state.get("pairs")
        if "options" in state:
            self.check_options(state["options"])
