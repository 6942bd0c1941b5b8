"""Seeded splits for data sets that ship without a dev set."""

from __future__ import annotations

import random
from collections import defaultdict

from polytask.data.example import Example


def train_dev_split(
    examples: list[Example], fraction: float, seed: int, stratify: bool = True
) -> tuple[list[Example], list[Example]]:
    """Hold out ``fraction`` of the examples as a dev set, reproducibly.

    Stratified by label (each class keeps its share, at least one example in train) when labels
    are single strings and every class has two or more examples; a plain seeded shuffle otherwise
    (token tags, multi-label lists, regression scores, very rare classes).
    """
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    if stratify and all(isinstance(e.label, str) for e in examples):
        for i, e in enumerate(examples):
            by_label[e.label].append(i)
    if by_label and len(by_label) < len(examples) / 2 and min(len(v) for v in by_label.values()) >= 2:
        dev_idx: set[int] = set()
        for label in sorted(by_label):
            idx = by_label[label]
            rng.shuffle(idx)
            k = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
            dev_idx.update(idx[:k])
    else:
        order = list(range(len(examples)))
        rng.shuffle(order)
        k = min(len(order) - 1, max(1, round(len(order) * fraction)))
        dev_idx = set(order[:k])
    train = [e for i, e in enumerate(examples) if i not in dev_idx]
    dev = [e for i, e in enumerate(examples) if i in dev_idx]
    return train, dev


def seeded_subset(examples: list[Example], limit: int, seed: int) -> list[Example]:
    """``limit`` examples drawn at random (seeded), kept in file order."""
    if limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]
