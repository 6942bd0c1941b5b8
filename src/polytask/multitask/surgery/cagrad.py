"""``cagrad``: Conflict-Averse Gradient descent.

From Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021 (https://arxiv.org/abs/2110.14048). CAGrad looks for the update d, within a ball of
radius c ||g0|| around the mean gradient g0, that maximises the worst task's rate of
improvement min_i g_i . d. Its dual is a problem over task weights w on the simplex:

    w* = argmin_w  F(w) = g_w . g0 + sqrt(phi) ||g_w||,   g_w = sum_i w_i g_i,  phi = c^2 ||g0||^2
    d  = g0 + sqrt(phi) / ||g_w*|| * g_w*

F only needs the (K, K) Gram matrix G G^T, so the solve costs nothing next to the backward
passes: w is parametrised as softmax(logits) (which keeps it on the simplex) and ``STEPS`` steps
of Adam (learning rate ``LR``) run on the logits in float64, starting from uniform weights (the
official implementation uses SciPy's SLSQP from the same start). The solve is approximate: an
optimum on the simplex's boundary is only approached (softmax weights never reach 0), to within
about 1e-2 of F in our checks, which leaves the worst-task guarantee below intact. The returned direction is
d / (1 + c^2), the rescale of the official implementation (its ``rescale=1``), which keeps the
step near the scale of the mean gradient.

At c = 0 the ball is a point and CAGrad returns exactly g0. For identical task gradients g,
g_w = g0 = g and d = (1 + c) g, so the result is (1 + c) / (1 + c^2) * g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from polytask.multitask.surgery.base import SURGERIES, GradientSurgery, check_grads

STEPS = 100  # Adam steps on the K logits; the problem is tiny (K x K), so this costs ~20 ms
LR = 0.2  # Adam learning rate on the logits
EPS = 1e-8  # guards sqrt and division where g_w or g0 vanishes (as in the official code)


@dataclass
class CAGradConfig:
    """Options of ``cagrad``.

    Args:
        c: c >= 0, the radius of the ball around the mean gradient, relative to its norm.
            0 gives plain mean-gradient descent; larger c favours the worst task more (the
            paper uses 0.4-0.5; default 0.5).
    """

    c: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.c) and self.c >= 0):
            raise ValueError(f"c must be a finite number >= 0; got {self.c}")


@SURGERIES.register("cagrad")
class CAGrad(GradientSurgery):
    """The mean gradient bent towards the worst-off task, within a ball of radius c ||g0||.

    Deterministic: ``generator`` is accepted for the shared interface and ignored.

    Args:
        config: a ``CAGradConfig``.
    """

    options_class = CAGradConfig

    def __init__(self, config: CAGradConfig):
        super().__init__(config)

    def task_weights(self, grads: torch.Tensor) -> torch.Tensor:
        """The weights w* on the simplex minimising F(w), in float64.

        Args:
            grads: (K, P) one flattened gradient per task.

        Returns:
            (K,) non-negative, summing to 1.
        """
        grads = check_grads(grads)
        k = grads.shape[0]
        gram = (grads @ grads.T).to(torch.float64)  # (K, K)
        gram_g0 = gram.mean(dim=1)  # (K,) g_i . g0
        g0_norm = gram.mean().clamp_min(0).add(EPS).sqrt()  # ||g0||
        sqrt_phi = self.config.c * g0_norm
        logits = torch.zeros(k, dtype=torch.float64, requires_grad=True)  # uniform start
        optimizer = torch.optim.Adam([logits], lr=LR)
        with torch.enable_grad():
            for _ in range(STEPS):
                optimizer.zero_grad()
                w = torch.softmax(logits, dim=0)  # (K,)
                objective = w @ gram_g0 + sqrt_phi * (w @ gram @ w + EPS).sqrt()
                objective.backward()
                optimizer.step()
        return torch.softmax(logits.detach(), dim=0)  # (K,)

    def combine(
        self, grads: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        grads = check_grads(grads)
        g0 = grads.mean(dim=0)  # (P,)
        c = self.config.c
        if c == 0:
            return g0  # the ball is a point: nothing to solve
        w = self.task_weights(grads).to(grads.dtype)  # (K,)
        g_w = w @ grads  # (P,)
        sqrt_phi = c * g0.norm()
        d = g0 + sqrt_phi / (g_w.norm() + EPS) * g_w  # (P,)
        return d / (1 + c**2)
