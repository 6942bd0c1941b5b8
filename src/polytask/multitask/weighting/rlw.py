"""``rlw``: random loss weighting, new weights drawn at every step.

From Lin, Ye, Xu, Shi & Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022 (https://arxiv.org/abs/2111.10603). At each step the task weights
are ``lambda = softmax(z)`` with ``z ~ N(0, I_K)``, and the loss is ``sum_i lambda_i L_i``. The paper
finds it as good as many learned weightings on average: a baseline a learned method must beat.

The weights sum to 1, so the loss is at the scale of the mean task loss (as ``equal``'s). They are
drawn from a generator seeded by ``seed`` and the number of draws so far (a buffer), so a resumed
run draws the same weights. Every task's loss is needed in each step (``step: all_tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting


@dataclass
class RLWWeightingConfig:
    """Options of ``rlw``.

    Args:
        seed: seed of the weight draws (the run's seed does not reach them, so two arms that
            differ only in their weighting see the same batches).
    """

    seed: int = 0


@WEIGHTINGS.register("rlw")
class RLWWeighting(LossWeighting):
    """L = sum_i lambda_i L_i with lambda = softmax(z), z ~ N(0, I), new at each round.

    Args:
        tasks: the task names.
        config: an ``RLWWeightingConfig``.
    """

    options_class = RLWWeightingConfig
    needs_all_tasks = True

    def __init__(self, tasks: list[str], config: RLWWeightingConfig):
        super().__init__(tasks, config)
        k = len(self.tasks)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))  # rounds drawn so far
        self.register_buffer("current", torch.full((k,), 1.0 / k))  # (K,) lambda of the latest draw

    def draw(self) -> torch.Tensor:
        """New weights (K,), from the seeded generator at the current draw count."""
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + int(self.draws))
        z = torch.randn(len(self.tasks), generator=gen)  # (K,)
        self.draws += 1
        self.current.copy_(torch.softmax(z, dim=0))
        return self.current

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        w = self.current
        return torch.stack([w[self.index[t]].to(losses[t].dtype) * losses[t] for t in present]).sum()

    def backward(self, losses: dict[str, torch.Tensor], step: Any) -> None:
        w = self.draw()
        for task, loss in losses.items():
            step.backward(task, w[self.index[task]].to(loss.device, loss.dtype) * loss)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.current.tolist(), strict=True))
