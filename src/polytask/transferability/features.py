"""Frozen features of a target's labelled examples, from one source.

Sentence tasks: the encoder's pooled output, one row per example. Token tasks: the token state
at each word's first sub-token, one row per word (the position polytask's token head predicts
from), with that word's tag.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from polytask.data.example import Example
from polytask.tasks.base import Task
from polytask.transferability.base import TargetFeatures
from polytask.transferability.sources import Source

SUPPORTED = ("classification", "regression", "token_classification")


def sample(examples: list[Example], task: Task, budget: int | None, seed: int) -> list[Example]:
    """``budget`` examples drawn with ``seed``, stratified by label for classification; all when None."""
    if budget is None or budget >= len(examples):
        return examples
    if task.registry_name == "classification":
        from polytask.study.budgets import stratified_order

        order = stratified_order([str(e.label) for e in examples], seed)
    else:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
    return [examples[i] for i in sorted(order[:budget])]


def first_subtokens(word_ids: list[int | None]) -> list[int]:
    """Positions of the first sub-token of each word (special tokens have word id None)."""
    out, previous = [], None
    for j, w in enumerate(word_ids):
        if w is not None and w != previous:
            out.append(j)
        previous = w
    return out


@torch.inference_mode()
def extract(source: Source, task: Task, examples: list[Example], batch_size: int = 32) -> TargetFeatures:
    """Features (and, for a run with a fitting head, its class probabilities) of ``examples``.

    Args:
        source: the loaded source.
        task: the target task (labels fitted), which tokenises and collates with the source's
            tokenizer exactly as training would.
        examples: the labelled examples.
        batch_size: examples per forward pass.
    """
    encoder = source.encoder
    tokenizer = encoder.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    head = source.head_for(task.token_level)
    feats = [task.encode(ex, tokenizer) for ex in examples]
    # Sorted by length so each batch pads little; the rows are put back in order at the end.
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = task.collate([feats[i] for i in idx], pad_id)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        enc = encoder(**inputs)
        probs = None
        if head is not None:
            probs = torch.softmax(source.model.head_forward(head, enc).float(), dim=-1)  # (B, Z) or (B, T, Z)
        for b, i in enumerate(idx):
            if task.token_level:
                pos = first_subtokens(feats[i]["word_ids"])
                x = enc.token_states[b, pos].float().numpy()  # (W, H)
                y = np.asarray(feats[i]["labels"])[pos]  # (W,)
                p = probs[b, pos].numpy() if probs is not None else None
            else:
                x = enc.pooled[b].float().numpy()[None]  # (1, H)
                y = np.asarray([feats[i]["labels"]])
                p = probs[b].numpy()[None] if probs is not None else None
            rows[i] = (x, y, p)
    ordered = [rows[i] for i in range(len(feats))]
    kind = "regression" if task.registry_name == "regression" else "classification"
    labels = np.concatenate([r[1] for r in ordered]).astype(np.float64 if kind == "regression" else np.int64)
    probs_all = np.concatenate([r[2] for r in ordered]) if head is not None else None
    return TargetFeatures(np.concatenate([r[0] for r in ordered]), labels, kind, probs_all)


def check_supported(task: Task) -> None:
    """ConfigError for task types the estimates do not cover (multilabel, third-party types)."""
    from polytask.errors import ConfigError

    if task.registry_name not in SUPPORTED:
        raise ConfigError(
            f"task {task.name!r} is {task.registry_name!r}; transferability covers "
            f"{', '.join(SUPPORTED)}. Choose another task with --task",
            field=f"tasks.{task.name}.type",
        )


def texts_of(examples: list[Example]) -> Any:
    """The zero-argument texts callable word encoders build their vocabulary from."""
    return lambda: [t for e in examples for t in ([e.text] if e.text_pair is None else [e.text, e.text_pair])]
