"""``logme``: the log marginal evidence of a Bayesian linear model on the frozen features.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021 (https://arxiv.org/abs/2102.11005).

For a target vector y (N,) and features F (N, D), the model is y = F w + noise with prior
w ~ N(0, I / alpha) and noise ~ N(0, 1 / beta). The evidence p(y | F, alpha, beta) has a closed
form; alpha and beta are set to maximise it by MacKay's fixed-point iteration, which costs one
SVD of F and then O(min(N, D)) per step. The score is the maximised log evidence divided by N,
for classification averaged over the one-hot column of every class, for regression computed on
the target itself. It is a value per example in nats: comparable between sources on the same
target, not between targets.

``logme_centered`` is the same evidence after centring the features and each target column, i.e.
a linear model with an intercept the prior does not shrink. The paper's model has no intercept, so
the constant part of a target (the class prior of an imbalanced class, the mean of a regression
target) must be fitted through the features themselves, which favours features with a large
shared offset (e.g. max-pooled LSTM states) over zero-mean ones (sentence-transformer embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from polytask.transferability.base import ESTIMATORS, Estimator, TargetFeatures, as_float64


@dataclass
class LogMEOptions:
    """Options of ``logme``.

    Args:
        max_iter: fixed-point iterations at most (the paper finds about 3 are enough).
        tol: stop when alpha and beta both change by less than this fraction.
        center: centre the features and targets first (a free intercept); off in the paper.
    """

    max_iter: int = 100
    tol: float = 1e-7
    center: bool = False


@dataclass
class LogMECenteredOptions(LogMEOptions):
    """Options of ``logme_centered``: those of ``logme``, with ``center`` on (see the module docstring)."""

    center: bool = True


def log_evidence(sigma: np.ndarray, z2: np.ndarray, rest: float, n: int, d: int, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) from the spectrum of F.

    Args:
        sigma: (R,) the non-zero eigenvalues of F^T F (squared singular values of F).
        z2: (R,) the squared projections of y on F's left singular vectors.
        rest: the squared norm of y outside F's column space.
        n: examples; d: feature size (D - R eigenvalues of F^T F are zero).
        alpha: prior precision; beta: noise precision.
    """
    denom = alpha + beta * sigma  # (R,) eigenvalues of A = alpha I + beta F^T F
    m2 = float(np.sum(beta**2 * sigma * z2 / denom**2))  # ||m||^2, m the posterior mean
    res = float(np.sum((alpha / denom) ** 2 * z2)) + rest  # ||F m - y||^2
    logdet = float(np.sum(np.log(denom))) + (d - len(sigma)) * math.log(alpha)
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res - alpha / 2 * m2 - logdet / 2)


def logme_single(u: np.ndarray, s: np.ndarray, d: int, y: np.ndarray, options: LogMEOptions) -> float:
    """Maximised log evidence / N for one target column, given F's thin SVD (u: (N, R), s: (R,))."""
    n = len(y)
    sigma = s**2  # (R,)
    z = u.T @ y  # (R,)
    z2 = z**2
    rest = max(float(y @ y - z2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    for _ in range(options.max_iter):
        denom = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / denom))  # effective number of parameters
        m2 = float(np.sum(beta**2 * sigma * z2 / denom**2))
        res = float(np.sum((alpha / denom) ** 2 * z2)) + rest
        # A perfect fit (res -> 0) or a zero target (m2 -> 0) would divide by zero; the floors
        # keep the iteration finite and the evidence is then simply very high or very low.
        new_alpha = gamma / max(m2, 1e-12)
        new_beta = (n - gamma) / max(res, 1e-12)
        done = abs(new_alpha - alpha) <= options.tol * alpha and abs(new_beta - beta) <= options.tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return log_evidence(sigma, z2, rest, n, d, alpha, beta) / n


@ESTIMATORS.register("logme")
class LogME(Estimator):
    """LogME: mean log evidence per example of a linear model on the features (higher is better)."""

    options_class = LogMEOptions

    def score(self, data: TargetFeatures) -> float:
        f = as_float64(data.features)  # (N, D)
        if self.options.center:
            f = f - f.mean(axis=0, keepdims=True)
        u, s, _vt = np.linalg.svd(f, full_matrices=False)  # u (N, R), s (R,)
        keep = s > s.max(initial=0.0) * 1e-10  # drop numerically zero directions
        u, s = u[:, keep], s[keep]
        d = f.shape[1]
        if data.kind == "classification":
            labels = data.labels.astype(int)
            columns = [(labels == c).astype(np.float64) for c in range(data.n_classes)]
        else:
            columns = [np.asarray(data.labels, dtype=np.float64)]
        if self.options.center:
            columns = [y - y.mean() for y in columns]
        return float(np.mean([logme_single(u, s, d, y, self.options) for y in columns]))


@ESTIMATORS.register("logme_centered")
class LogMECentered(LogME):
    """LogME with a free intercept: features and targets centred first."""

    options_class = LogMECenteredOptions
