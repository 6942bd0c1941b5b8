"""``pcgrad``: Projecting Conflicting Gradients.

From Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020 (https://arxiv.org/abs/2001.06782). Each task's gradient g_i is copied to g_i'
and, for every other task j in a random order, projected onto the normal plane of g_j when the
two conflict:

    if g_i' . g_j < 0:   g_i' <- g_i' - (g_i' . g_j) / ||g_j||^2 * g_j

always against the ORIGINAL g_j, as in the paper's Algorithm 1. Because of that, the order in
which the tasks i are visited does not change the result; only the order of the j's does, and
it is drawn afresh for every i from ``generator`` (reproducible with a seeded generator).
Gradients that do not conflict (every pairwise dot product >= 0) pass through unchanged.

With K = 2 every projected g_i' has a non-negative dot product with the other original
gradient; with K >= 3 a later projection can in general re-introduce a small conflict with an
earlier g_j (the paper's guarantee is per projection).

The paper sums the projected gradients; the default here is their mean, which keeps the step at
the scale of a mean loss so the learning rate means the same with and without surgery.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from polytask.multitask.surgery.base import SURGERIES, GradientSurgery, check_grads

REDUCTIONS = ("mean", "sum")


@dataclass
class PCGradConfig:
    """Options of ``pcgrad``.

    Args:
        reduction: how the projected gradients become one: ``mean`` (default; the scale of a
            mean loss) or ``sum`` (the paper's choice; K times larger steps).
    """

    reduction: str = "mean"

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(
                f"reduction must be one of {', '.join(REDUCTIONS)}; got {self.reduction!r}"
            )


@SURGERIES.register("pcgrad")
class PCGrad(GradientSurgery):
    """Mean (or sum) of the per-task gradients after projecting away pairwise conflicts.

    Args:
        config: a ``PCGradConfig``.
    """

    options_class = PCGradConfig

    def __init__(self, config: PCGradConfig):
        super().__init__(config)

    def project(
        self, grads: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The projected gradients g_i', one row per task.

        Args:
            grads: (K, P) one flattened gradient per task.
            generator: draws the order of the other tasks for every task.

        Returns:
            (K, P) a new tensor; ``grads`` is not modified.
        """
        grads = check_grads(grads)
        k = grads.shape[0]
        sq_norms = (grads * grads).sum(dim=1)  # (K,)
        projected = grads.clone()  # (K, P)
        for i in range(k):
            g_i = projected[i]  # (P,) a view: updated in place
            order = torch.randperm(k, generator=generator).tolist()
            for j in order:
                if j == i:
                    continue
                dot = torch.dot(g_i, grads[j])
                if dot < 0:  # implies ||g_j|| > 0, so the division is safe
                    g_i.sub_(dot / sq_norms[j] * grads[j])
        return projected

    def combine(
        self, grads: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        projected = self.project(grads, generator)  # (K, P)
        if self.config.reduction == "sum":
            return projected.sum(dim=0)  # (P,)
        return projected.mean(dim=0)  # (P,)
