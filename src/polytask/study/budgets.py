"""Label budgets: seeded, stratified, nested samples of a task's training examples.

For one seed, the training set is put in a single order and a budget of ``n`` labels is the
first ``n`` examples of that order, so a smaller budget is always a subset of a larger one
(learning curves then differ only by the added labels, not by a new draw). For classification
the order is stratified: it starts with one example of every class, then repeatedly takes the
class furthest below its share of the training set, so every prefix has each class within one
example of its proportion. Other task types (regression, multi-label, token tagging) use a
seeded shuffle. ``per_class`` budgets take the first ``n`` examples of each class.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from polytask.data.example import Example
from polytask.errors import ConfigError


def stratified_order(labels: list[Any], seed: int) -> list[int]:
    """Indices of ``labels`` in a seeded order whose every prefix is stratified by label.

    Args:
        labels: one hashable label per example.
        seed: the sample's seed.

    Returns:
        A permutation of ``range(len(labels))``.
    """
    rng = random.Random(seed)
    by_class: dict[Any, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    classes = sorted(by_class, key=str)
    for c in classes:
        rng.shuffle(by_class[c])
    total = len(labels)
    share = {c: len(by_class[c]) / total for c in classes}
    taken = dict.fromkeys(classes, 0)
    order: list[int] = []
    # One of each class first, so any budget >= the number of classes sees every class.
    for c in rng.sample(classes, len(classes)):
        order.append(by_class[c][0])
        taken[c] = 1
    while len(order) < total:
        n = len(order) + 1
        open_classes = [c for c in classes if taken[c] < len(by_class[c])]
        # The class furthest below its share after this pick; ties go to the larger class.
        c = max(open_classes, key=lambda k: (share[k] * n - taken[k], share[k]))
        order.append(by_class[c][taken[c]])
        taken[c] += 1
    return order


def per_class_order(labels: list[Any], seed: int) -> dict[Any, list[int]]:
    """Each class's example indices in a seeded order (for ``per_class`` budgets)."""
    rng = random.Random(seed)
    by_class: dict[Any, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    for c in sorted(by_class, key=str):
        rng.shuffle(by_class[c])
    return dict(by_class)


def check_budgets(
    budgets: list[int | str], unit: str, examples: list[Example], stratify: bool, task: str
) -> None:
    """Refuse budgets the training data cannot give, before any run starts.

    Args:
        budgets: label budgets (numbers or ``all``).
        unit: ``total`` or ``per_class``.
        examples: the target task's training examples.
        stratify: whether the task has single class labels (classification).
        task: the task's name, for messages.

    Raises:
        ConfigError: a budget larger than the data, smaller than the number of classes, or
            ``per_class`` for a task without classes.
    """
    n = len(examples)
    counts: dict[Any, int] = defaultdict(int)
    for ex in examples:
        counts[ex.label] += 1
    if unit == "per_class" and not stratify:
        raise ConfigError(
            f"budget_unit per_class needs a classification target; task {task!r} has no single "
            "class per example: use budget_unit: total",
            field="budget_unit",
        )
    for b in budgets:
        if b == "all":
            continue
        if unit == "total":
            if b > n:
                raise ConfigError(
                    f"budget {b} is larger than the {n} training examples of task {task!r}; "
                    f"use a budget of at most {n}, or 'all'",
                    field="budgets",
                )
            if stratify and b < len(counts):
                raise ConfigError(
                    f"budget {b} is smaller than the {len(counts)} classes of task {task!r}, so "
                    f"some class would have no example; use a budget of at least {len(counts)}",
                    field="budgets",
                )
        else:
            short = {str(c): k for c, k in counts.items() if k < b}
            if short:
                listed = ", ".join(f"{c} ({k})" for c, k in sorted(short.items()))
                raise ConfigError(
                    f"budget {b} per class is more than task {task!r} has of class(es) {listed}; "
                    f"use a budget of at most {min(counts.values())} per class, or 'all'",
                    field="budgets",
                )


def sample_budgets(
    examples: list[Example], budgets: list[int | str], unit: str, seed: int, stratify: bool
) -> dict[str, list[Example]]:
    """The sampled training examples of every budget for one seed (nested: small within large).

    Args:
        examples: the full training set of the target task.
        budgets: label budgets (numbers or ``all``); check them first with ``check_budgets``.
        unit: ``total`` or ``per_class``.
        seed: the sample's seed.
        stratify: stratify by class label (classification).

    Returns:
        ``{budget label: examples}`` in the sampled order.
    """
    labels = [ex.label if stratify else 0 for ex in examples]
    out: dict[str, list[Example]] = {}
    if unit == "per_class":
        order = per_class_order(labels, seed)
        classes = sorted(order, key=str)
        for b in budgets:
            if b == "all":
                out[str(b)] = [examples[i] for i in stratified_order(labels, seed)]
            else:
                out[str(b)] = [examples[i] for c in classes for i in order[c][:b]]
        return out
    if stratify:
        order = stratified_order(labels, seed)
    else:
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
    for b in budgets:
        k = len(order) if b == "all" else int(b)
        out[str(b)] = [examples[i] for i in order[:k]]
    return out


def example_record(ex: Example, token_level: bool) -> dict[str, Any]:
    """An Example as a JSONL record the jsonl reader reads back unchanged."""
    if token_level:
        return {"tokens": list(ex.text), "tags": ex.label}
    rec: dict[str, Any] = {"text": ex.text}
    if ex.text_pair is not None:
        rec["text_pair"] = ex.text_pair
    rec["label"] = ex.label
    return rec


def write_jsonl(path: Path, examples: list[Example], token_level: bool) -> None:
    """Write examples as JSONL, atomically (a killed study never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(example_record(ex, token_level), ensure_ascii=False) + "\n")
    tmp.replace(path)
