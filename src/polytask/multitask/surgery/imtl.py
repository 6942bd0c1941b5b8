"""``imtl``: impartial multi-task learning, the gradient part (IMTL-G).

From Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021 (https://openreview.net/forum?id=IMPnRXEWpvr). The combined gradient ``g = sum_i a_i g_i``
(with ``sum_i a_i = 1``) is chosen so that its projection on every task's unit gradient
``u_i = g_i / ||g_i||`` is the same: no task is favoured, whatever the gradients' sizes. In closed
form, with ``D = [g_1 - g_i]`` and ``U = [u_1 - u_i]`` for i = 2..K::

    a_{2:K} = g_1 U^T (D U^T)^{-1},    a_1 = 1 - sum a_{2:K}

The system is solved by least squares (a pseudo-inverse), so parallel or identical task
gradients, where it is singular, fall back to the minimum-norm solution. (The paper's loss-scale
part, IMTL-L, is a loss weighting and not part of this member.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from polytask.multitask.surgery.base import SURGERIES, GradientSurgery, check_grads


@dataclass
class IMTLConfig:
    """Options of ``imtl``: none."""


@SURGERIES.register("imtl")
class IMTL(GradientSurgery):
    """Weights summing to 1 that give the combined gradient equal projections on every task's
    unit gradient."""

    options_class = IMTLConfig

    def combine(self, grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        g = check_grads(grads).double()  # (K, P)
        if g.shape[0] == 1:
            return grads[0].clone()
        u = g / g.norm(dim=1, keepdim=True).clamp_min(1e-20)  # (K, P) unit gradients
        d = g[:1] - g[1:]  # (K-1, P)
        diff_u = u[:1] - u[1:]  # (K-1, P)
        # a_rest (K-1,) solves a_rest (D U^T) = g_1 U^T
        lhs = d @ diff_u.T  # (K-1, K-1)
        rhs = g[0] @ diff_u.T  # (K-1,)
        a_rest = torch.linalg.lstsq(lhs.T, rhs.unsqueeze(1)).solution.squeeze(1)  # (K-1,)
        alpha = torch.cat([1 - a_rest.sum(0, keepdim=True), a_rest])  # (K,)
        return (alpha @ g).to(grads.dtype)  # (P,)
