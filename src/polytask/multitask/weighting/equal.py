"""``equal``: the plain mean of the task losses present in the step.

The uniform baseline every multi-task weighting paper compares against (e.g. "EW" in LibMTL,
Lin & Zhang, JMLR 2023, https://arxiv.org/abs/2203.16113). The mean is taken over the tasks
*present* in the step, not over all K tasks: with one task per step (sampled training) a step's
loss is that task's loss unchanged, so the learning rate means the same thing whatever the
sampler; with all tasks in the step it is sum_i L_i / K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting


@dataclass
class EqualWeightingConfig:
    """Options of ``equal``: none."""


@WEIGHTINGS.register("equal")
class EqualWeighting(LossWeighting):
    """L = mean over the present tasks of L_i.

    Args:
        tasks: the task names.
        config: an ``EqualWeightingConfig``.
    """

    options_class = EqualWeightingConfig

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        return torch.stack([losses[t] for t in present]).mean()  # (n_present,) -> ()

    def weights(self) -> dict[str, float]:
        # The weight when every task is present; a step with fewer tasks renormalises over them.
        return {t: 1.0 / len(self.tasks) for t in self.tasks}
