"""``hscore``: H-score, how well the features separate the class means relative to their spread.

Bao, Li, Huang, Zhang, Chen and Zhang, "An Information-Theoretic Approach to Transferability in
Task Transfer Learning", ICIP 2019.

    H(f) = tr( cov(f)^-1 cov(E[f | y]) ),

with cov(f) (D, D) the features' covariance and cov(E[f | y]) the covariance of each example's
class-mean feature vector. It grows with the between-class spread measured in the metric of the
within-data spread; higher is better. With fewer examples than dimensions cov(f) is singular
and its pseudo-inverse inflates noise directions, so by default the covariance is shrunk
towards a scaled identity (Ledoit-Wolf), as Ibrahim, Ponomareva and Mazumder (ICLR 2023,
"Newer is not always better: rethinking transferability metrics") recommend; ``shrinkage: 0``
gives the original estimate (with a pseudo-inverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask.transferability.base import (
    ESTIMATORS,
    Estimator,
    TargetFeatures,
    as_float64,
    only_classification,
)


@dataclass
class HScoreOptions:
    """Options of ``hscore``.

    Args:
        shrinkage: weight of the scaled identity in the covariance, in [0, 1]; None chooses it
            by Ledoit-Wolf; 0 is the original H-score (pseudo-inverse of the sample covariance).
    """

    shrinkage: float | None = None


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: float | None = 0.0) -> float:
    """H-score of features (N, D) for integer labels (N,); see the module docstring."""
    f = as_float64(features)
    f = f - f.mean(axis=0, keepdims=True)  # (N, D)
    n, d = f.shape
    cov = f.T @ f / n  # (D, D)
    if shrinkage is None:
        from sklearn.covariance import ledoit_wolf_shrinkage

        shrinkage = float(ledoit_wolf_shrinkage(f, assume_centered=True))
    if shrinkage > 0:
        mu = np.trace(cov) / d
        cov = (1 - shrinkage) * cov + shrinkage * mu * np.eye(d)
    labels = np.asarray(labels, dtype=int)
    g = np.zeros_like(f)  # (N, D) each row's class mean
    for c in np.unique(labels):
        rows = labels == c
        g[rows] = f[rows].mean(axis=0)
    cov_g = g.T @ g / n  # (D, D)
    return float(np.trace(np.linalg.pinv(cov, rcond=1e-10, hermitian=True) @ cov_g))


@ESTIMATORS.register("hscore")
class HScore(Estimator):
    """H-score: between-class covariance in the metric of the feature covariance (higher is better)."""

    options_class = HScoreOptions

    def applies(self, data: TargetFeatures) -> str | None:
        return only_classification(data, "hscore")

    def score(self, data: TargetFeatures) -> float:
        return hscore(data.features, data.labels, self.options.shrinkage)
