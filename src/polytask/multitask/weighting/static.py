"""``static``: fixed, hand-set task weights, L = sum_i w_i * L_i.

The usual hand-tuned linear combination of task losses (the baseline "grid search over
weights" of Kendall et al., CVPR 2018, https://arxiv.org/abs/1705.07115), for when the user
knows which tasks matter most or tunes the weights on a dev set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from polytask.errors import ConfigError
from polytask.multitask.weighting.base import OPTIONS_FIELD, WEIGHTINGS, LossWeighting


@dataclass
class StaticWeightingConfig:
    """Options of ``static``.

    Args:
        weights: task name -> non-negative weight w_i; a task left out gets 1.0. The weights
            are not normalised, so they also scale the effective learning rate.
    """

    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for task, w in self.weights.items():
            if not w >= 0:  # also rejects NaN
                raise ValueError(f"loss weight for task '{task}' must be >= 0; got {w}")


@WEIGHTINGS.register("static")
class StaticWeighting(LossWeighting):
    """L = sum over the present tasks of w_i * L_i.

    Args:
        tasks: the task names; the weights' keys must be among them.
        config: a ``StaticWeightingConfig``.

    Raises:
        ConfigError: a weight for an unknown task.
    """

    options_class = StaticWeightingConfig

    def __init__(self, tasks: list[str], config: StaticWeightingConfig):
        super().__init__(tasks, config)
        for task in config.weights:
            if task not in self.index:
                # Most likely a typo: silently ignoring it would leave the intended task at 1.0.
                raise ConfigError(
                    f"weight for unknown task '{task}'; tasks: {', '.join(self.tasks)}",
                    field=f"{OPTIONS_FIELD}.weights",
                )
        self._weights = {t: float(config.weights.get(t, 1.0)) for t in self.tasks}

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        return torch.stack([self._weights[t] * losses[t] for t in present]).sum()

    def weights(self) -> dict[str, float]:
        return dict(self._weights)
