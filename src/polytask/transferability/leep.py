"""``leep``: Log Expected Empirical Prediction, from the source's own classifier head.

Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of
Learned Representations", ICML 2020 (https://arxiv.org/abs/2002.12462).

With theta(x) (Z,) the source head's probabilities over its own Z classes, the empirical joint
P(y, z) = 1/N sum_i theta_z(x_i) [y_i = y] gives the conditional P(y | z) = P(y, z) / P(z), and

    LEEP = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i),

the mean log-likelihood of the "expected empirical predictor" that re-labels source classes as
target classes. It is at most 0; closer to 0 is better. It needs a source with a classifier
head (a polytask run with a classification head, or a token_classification head for token
targets); encoders alone have none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask.transferability.base import ESTIMATORS, Estimator, TargetFeatures, only_classification


@dataclass
class LEEPOptions:
    """Options of ``leep``.

    Args:
        eps: floor inside the logarithm, so a zero probability gives a large finite penalty.
    """

    eps: float = 1e-12


def leep(source_probs: np.ndarray, labels: np.ndarray, n_classes: int, eps: float = 1e-12) -> float:
    """LEEP of source probabilities (N, Z) for integer target labels (N,)."""
    theta = np.asarray(source_probs, dtype=np.float64)  # (N, Z)
    n = theta.shape[0]
    onehot = np.eye(n_classes)[np.asarray(labels, dtype=int)]  # (N, C)
    joint = onehot.T @ theta / n  # (C, Z) P(y, z)
    cond = joint / np.maximum(joint.sum(axis=0, keepdims=True), eps)  # (C, Z) P(y | z)
    eep = theta @ cond.T  # (N, C) sum_z P(y | z) theta_z(x)
    return float(np.mean(np.log(np.maximum(eep[np.arange(n), labels.astype(int)], eps))))


@ESTIMATORS.register("leep")
class LEEP(Estimator):
    """LEEP: mean log-likelihood of the source head's predictions mapped onto the target classes."""

    options_class = LEEPOptions

    def applies(self, data: TargetFeatures) -> str | None:
        if data.source_probs is None:
            return "leep needs a source with a classifier head (a polytask run)"
        return only_classification(data, "leep")

    def score(self, data: TargetFeatures) -> float:
        assert data.source_probs is not None
        return leep(data.source_probs, data.labels, data.n_classes, self.options.eps)
