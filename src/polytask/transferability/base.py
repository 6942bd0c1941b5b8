"""Transferability estimates: how well a frozen source's features suit a target, before training.

An estimator reads ``TargetFeatures`` (the frozen features of the target's labelled examples, their
labels, and, where the source has a classifier head of its own, that head's probabilities) and
returns one number: higher means the source should transfer better. Members: ``logme``, ``leep``,
``hscore``, ``knn`` and ``logistic`` (cross-validated probes).

Dimension letters: N examples (or tokens, for token tasks), D feature size, C target classes,
Z source classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from polytask.registry import Registry


@dataclass
class TargetFeatures:
    """What every estimator reads.

    Args:
        features: (N, D) frozen features, one row per example (per word for token tasks).
        labels: (N,) class indices (int) for classification, targets (float) for regression.
        kind: ``classification`` or ``regression``.
        source_probs: (N, Z) the source head's class probabilities, or None when the source has
            no classifier head (LEEP then does not apply).
    """

    features: np.ndarray
    labels: np.ndarray
    kind: str = "classification"
    source_probs: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.kind == "classification" and len(self.labels) else 0


class Estimator(ABC):
    """One transferability estimate.

    Subclasses set ``options_class`` (a dataclass; ``self.options`` holds an instance) and
    implement ``score``; ``applies`` says why an estimate cannot be computed for some input.
    """

    registry_name: str
    options_class: ClassVar[type]

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.options_class()

    def applies(self, data: TargetFeatures) -> str | None:
        """None when ``score`` can run on ``data``; otherwise the reason it cannot (shown to users)."""
        return None

    @abstractmethod
    def score(self, data: TargetFeatures) -> float:
        """The estimate; higher predicts better transfer."""


ESTIMATORS: Registry[Estimator] = Registry("transferability estimate")


def only_classification(data: TargetFeatures, name: str) -> str | None:
    """The reason a classification-only estimate skips ``data`` (None when it is classification)."""
    if data.kind != "classification":
        return f"{name} needs class labels (the target is {data.kind})"
    if data.n_classes < 2:
        return f"{name} needs at least two classes in the sample"
    return None


def as_float64(features: np.ndarray) -> np.ndarray:
    """Features in float64: the closed forms below lose digits in float32."""
    return np.asarray(features, dtype=np.float64)
