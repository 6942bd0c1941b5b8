"""Seeded splits and subsets, for data sets that ship without a dev set and for ``data.limit``."""

from __future__ import annotations

import random
from collections import defaultdict

from polytask.data.example import Example
from polytask.errors import DataError


def train_dev_split(
    examples: list[Example], fraction: float, seed: int, stratify_labels: bool = True
) -> tuple[list[Example], list[Example]]:
    """Hold out ``fraction`` of the examples as a dev set, reproducibly.

    Stratified by label (each class gives ``round(fraction * its size)`` examples, at least one,
    and keeps at least one in train) when ``stratify_labels`` is set, every label is a single
    string and every class has two or more examples; a plain seeded shuffle otherwise (token
    tags, multi-label lists, unlabelled data, classes too rare to share). Both halves keep the
    input order. The same examples, fraction and seed always give the same split.

    Args:
        examples: the examples to split (not modified).
        fraction: share of examples that go to dev, in (0, 1).
        seed: seed of the shuffle (``data.split_seed``).
        stratify_labels: stratify by label where possible.

    When every example has a ``group`` (a SQuAD article), whole groups are held out instead:
    ``round(fraction * groups)`` of them (at least one, keeping at least one in train), so no
    context is seen in both halves (see ``group_split``).

    Returns:
        (train, dev).
    """
    if len(examples) >= 2 and all(e.group is not None for e in examples):
        return group_split(examples, fraction, seed)
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    if stratify_labels and all(isinstance(e.label, str) for e in examples):
        for i, e in enumerate(examples):
            by_label[e.label].append(i)
    if by_label and min(len(v) for v in by_label.values()) >= 2:
        dev_idx: set[int] = set()
        for label in sorted(by_label):
            idx = by_label[label]
            rng.shuffle(idx)
            dev_idx.update(idx[: _share(len(idx), fraction)])
    else:
        order = list(range(len(examples)))
        rng.shuffle(order)
        dev_idx = set(order[: _share(len(order), fraction)])
    train = [e for i, e in enumerate(examples) if i not in dev_idx]
    dev = [e for i, e in enumerate(examples) if i in dev_idx]
    return train, dev


def group_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out whole groups (``Example.group``): a seeded ``fraction`` of the distinct groups.

    Questions about one article share its context; split by question, the same paragraphs would
    be read in training and scored in dev. Groups are drawn from their sorted names, so the split
    depends only on the group names, the fraction and the seed. With a single group there is
    nothing to split by: DataError (give a dev file, or data with more articles).

    Args:
        examples: the examples, every one with a group.
        fraction: share of the groups that go to dev.
        seed: seed of the shuffle.
    Returns:
        (train, dev), each in input order.
    """
    names = sorted({str(e.group) for e in examples})
    if len(names) < 2:
        raise DataError(
            f"every example belongs to one group ({names[0]!r}), so no group can be held out as a "
            "dev set without leaking its contexts into training; add data.dev"
        )
    random.Random(seed).shuffle(names)
    held = set(names[: _share(len(names), fraction)])
    train = [e for e in examples if str(e.group) not in held]
    dev = [e for e in examples if str(e.group) in held]
    return train, dev


def _share(n: int, fraction: float) -> int:
    """round(n * fraction), but at least 1 and at most n - 1 (both halves non-empty when n >= 2)."""
    return min(n - 1, max(1, round(n * fraction)))


def seeded_subset(examples: list[Example], limit: int, seed: int) -> list[Example]:
    """``limit`` examples drawn at random with ``seed``, returned in their original order.

    The first ``limit`` of one seeded shuffle, so a larger limit keeps every example a smaller one
    kept (nested label budgets), and a file sorted by label still yields every class.

    Args:
        examples: the examples.
        limit: how many to keep; all of them when there are no more than that.
        seed: seed of the shuffle (``data.split_seed``).
    """
    if limit >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in sorted(order[:limit])]
