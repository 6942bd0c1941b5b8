"""``knn`` and ``logistic``: cross-validated accuracy of a cheap classifier on the frozen features.

The plain baselines every transferability paper compares against (e.g. Kornblith, Shlens and
Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019, for the logistic probe on frozen
features; the kNN probe as in Wu et al. 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"). Both are scikit-learn, run with stratified k-fold
cross-validation on the target sample; the score is the mean held-out accuracy. They cost more
than the closed forms (one fit per fold) but say directly how separable the classes are.
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


def _folds(labels: np.ndarray, folds: int, seed: int):  # noqa: ANN202
    from sklearn.model_selection import StratifiedKFold

    # No more folds than the rarest class has examples, or a fold lacks that class entirely.
    smallest = int(np.bincount(labels.astype(int)).min(initial=0))
    k = max(2, min(folds, smallest if smallest >= 2 else 2))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def _applies(data: TargetFeatures, name: str) -> str | None:
    why = only_classification(data, name)
    if why is None and int(np.bincount(data.labels.astype(int)).min()) < 2:
        return f"{name} cross-validation needs two examples of every class in the sample"
    return why


@dataclass
class KNNOptions:
    """Options of ``knn``.

    Args:
        k: neighbours that vote.
        folds: cross-validation folds (fewer when a class has fewer examples).
        metric: ``cosine`` (scale-free, suits sentence embeddings) or ``euclidean``.
        seed: seed of the fold assignment.
    """

    k: int = 5
    folds: int = 5
    metric: str = "cosine"
    seed: int = 0


@ESTIMATORS.register("knn")
class KNNProbe(Estimator):
    """Cross-validated k-nearest-neighbour accuracy on the features."""

    options_class = KNNOptions

    def applies(self, data: TargetFeatures) -> str | None:
        return _applies(data, "knn")

    def score(self, data: TargetFeatures) -> float:
        from sklearn.model_selection import cross_val_score
        from sklearn.neighbors import KNeighborsClassifier

        o = self.options
        model = KNeighborsClassifier(n_neighbors=o.k, metric=o.metric)
        x, y = as_float64(data.features), data.labels.astype(int)
        return float(np.mean(cross_val_score(model, x, y, cv=_folds(y, o.folds, o.seed))))


@dataclass
class LogisticOptions:
    """Options of ``logistic``.

    Args:
        c: inverse L2 strength of scikit-learn's LogisticRegression (on standardised features).
        folds: cross-validation folds (fewer when a class has fewer examples).
        max_iter: solver iterations at most.
        seed: seed of the fold assignment.
    """

    c: float = 1.0
    folds: int = 5
    max_iter: int = 500
    seed: int = 0


@ESTIMATORS.register("logistic")
class LogisticProbe(Estimator):
    """Cross-validated accuracy of an L2 logistic regression on standardised features."""

    options_class = LogisticOptions

    def applies(self, data: TargetFeatures) -> str | None:
        return _applies(data, "logistic")

    def score(self, data: TargetFeatures) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        o = self.options
        # Standardised, so one C suits features of any scale (GloVe, LSTM states, MiniLM).
        model = make_pipeline(StandardScaler(), LogisticRegression(C=o.c, max_iter=o.max_iter))
        x, y = as_float64(data.features), data.labels.astype(int)
        return float(np.mean(cross_val_score(model, x, y, cv=_folds(y, o.folds, o.seed))))
