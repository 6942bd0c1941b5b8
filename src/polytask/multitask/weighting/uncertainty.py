"""``uncertainty``: learned homoscedastic-uncertainty weights, L = sum_i exp(-s_i) L_i + s_i.

From Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018 (https://arxiv.org/abs/1705.07115). Each task has a
learnable s_i = log sigma_i^2 (the log of its observation noise), optimised with the model.
The paper derives 1/(2 sigma^2) L + log sigma for regression and 1/sigma^2 L + log sigma for
classification; we use the common simplified form exp(-s_i) L_i + s_i for every task (as the
authors' follow-ups and most reimplementations do): the constant factors only rescale s_i, and
learning s_i = log sigma^2 rather than sigma keeps the loss defined for any real s_i. For a
fixed L_i the term is minimised at s_i = log L_i, i.e. weight exp(-s_i) = 1 / L_i, so tasks
with larger (noisier) losses are weighted down; the + s_i term stops every weight going to 0.

No hyper-parameters: s_i starts at 0 (weight 1). Put the weighting's parameters in the
optimiser (``model.parameters()`` does, when the weighting is a sub-module).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting


@dataclass
class UncertaintyWeightingConfig:
    """Options of ``uncertainty``: none (s_i = log sigma_i^2 starts at 0)."""


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(LossWeighting):
    """L = sum over the present tasks of exp(-s_i) * L_i + s_i, with learnable s_i.

    Args:
        tasks: the task names.
        config: an ``UncertaintyWeightingConfig``.
    """

    options_class = UncertaintyWeightingConfig

    def __init__(self, tasks: list[str], config: UncertaintyWeightingConfig):
        super().__init__(tasks, config)
        # One tensor rather than a ParameterDict: task names may contain '.', which
        # ParameterDict keys may not.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))  # (K,) s_i = log sigma_i^2

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        idx = torch.tensor([self.index[t] for t in present], device=self.log_vars.device)
        s = self.log_vars[idx]  # (n_present,)
        task_losses = torch.stack([losses[t] for t in present]).to(s.dtype)  # (n_present,)
        return (torch.exp(-s) * task_losses + s).sum()

    def weights(self) -> dict[str, float]:
        w = torch.exp(-self.log_vars.detach()).tolist()
        return dict(zip(self.tasks, w, strict=True))
