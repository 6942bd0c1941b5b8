"""Batched prediction and evaluation of one task, shared by the training loop and the Predictor."""

from __future__ import annotations

from typing import Any

import torch

from polytask.data.batching import bucket_batches
from polytask.data.example import Example
from polytask.multitask.model import PolytaskModel
from polytask.precision import autocast
from polytask.tasks.base import Features, Task


def move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device``; Python lists (word ids) stay as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@torch.inference_mode()
def predict_features(
    model: PolytaskModel,
    tasks: dict[str, Task],
    features: list[Features],
    pad_token_id: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    with_loss: bool = False,
    precision: str = "no",
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Predict several tasks with one encoder pass per batch, in the input order.

    Batches are sorted by length (dynamic padding), then predictions are put back in order.

    Args:
        model: the shared model (eval mode is set here and restored).
        tasks: the tasks to answer, by name; all must accept the same features.
        features: encoded inputs (from any one of the tasks' ``encode``).
        with_loss: also return each task's mean loss (features must carry labels).
        precision: ``no`` (fp32), ``bf16`` or ``fp16``: the encoder runs under that autocast
            (``polytask.precision``; resolved, not ``auto``).
    Returns:
        predictions per task (one dict per feature) and losses per task (empty without labels).
    """
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    names = list(tasks)
    out: dict[str, list[dict[str, Any] | None]] = {n: [None] * len(features) for n in names}
    loss_sum = dict.fromkeys(names, 0.0)
    try:
        lengths = [len(f["input_ids"]) for f in features]
        for idx in bucket_batches(lengths, batch_size, shuffle=False):
            first = tasks[names[0]]
            batch = move(first.collate([features[i] for i in idx], pad_token_id), device)
            with autocast(precision, device.type):
                logits = model.forward_all(batch, names)
            for n in names:
                for i, pred in zip(idx, tasks[n].decode(logits[n], batch), strict=True):
                    out[n][i] = pred
                if with_loss and "labels" in batch:
                    loss_sum[n] += float(tasks[n].loss(logits[n], batch)) * len(idx)
    finally:
        model.train(was_training)
    losses = {n: loss_sum[n] / max(1, len(features)) for n in names} if with_loss else {}
    return out, losses  # type: ignore[return-value]


def evaluate_task(
    model: PolytaskModel,
    task: Task,
    examples: list[Example],
    tokenizer: Any,
    pad_token_id: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    features: list[Features] | None = None,
    precision: str = "no",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (plus ``loss``) of one task on labelled examples, and the predictions."""
    if features is None:
        features = [task.encode(ex, tokenizer) for ex in examples]
    preds, losses = predict_features(
        model, {task.name: task}, features, pad_token_id, batch_size, device, with_loss=True, precision=precision
    )
    metrics = task.metrics(preds[task.name], examples)
    metrics["loss"] = losses[task.name]
    return metrics, preds[task.name]
