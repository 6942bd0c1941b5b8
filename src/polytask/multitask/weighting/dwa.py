"""``dwa``: Dynamic Weight Average, weights from how fast each task's loss is falling.

From Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019
(https://arxiv.org/abs/1803.10704):

    w_i(t) = K * exp(r_i(t-1) / T) / sum_j exp(r_j(t-1) / T),   r_i(t-1) = L_i(t-1) / L_i(t-2)

where L_i(t) is task i's mean training loss over epoch t, fed in through ``end_epoch``. A task
whose loss fell less (ratio near or above 1) gets more weight. The weights sum to K; they are 1
until two epochs have been seen, since the ratio needs two. Only loss values are needed (no
gradients), so DWA works with one task per step. The epoch losses are buffers, so a resumed run
continues with the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from polytask.multitask.weighting.base import WEIGHTINGS, LossWeighting


@dataclass
class DWAWeightingConfig:
    """Options of ``dwa``.

    Args:
        temperature: T > 0 in the softmax over loss ratios; larger T gives weights closer to
            equal (the paper uses T = 2).
    """

    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")


@WEIGHTINGS.register("dwa")
class DWAWeighting(LossWeighting):
    """L = sum over the present tasks of w_i * L_i, w_i from the last two epochs' losses.

    Args:
        tasks: the task names.
        config: a ``DWAWeightingConfig``.
    """

    options_class = DWAWeightingConfig

    def __init__(self, tasks: list[str], config: DWAWeightingConfig):
        super().__init__(tasks, config)
        k = len(self.tasks)
        # Rows: epoch t-2, epoch t-1. Buffers so the state is saved with the model.
        self.register_buffer("epoch_losses", torch.zeros(2, k, dtype=torch.float64))  # (2, K)
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("task_weights", torch.ones(k, dtype=torch.float64))  # (K,)

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        """Record this epoch's mean losses and recompute the weights for the next epoch.

        Args:
            mean_losses: task -> mean training loss over the epoch; every task must be present.

        Raises:
            ValueError: a task missing, or a loss that is not finite and > 0.
        """
        missing = [t for t in self.tasks if t not in mean_losses]
        if missing:
            raise ValueError(f"DWA needs every task's epoch loss; missing: {', '.join(missing)}")
        values = [float(mean_losses[t]) for t in self.tasks]
        for task, v in zip(self.tasks, values, strict=True):
            if not (math.isfinite(v) and v > 0):
                # The loss ratio divides by it; a zero or NaN loss would poison every weight.
                raise ValueError(f"DWA needs a finite positive loss for task '{task}'; got {v}")
        self.epoch_losses[0] = self.epoch_losses[1]
        self.epoch_losses[1] = torch.tensor(values, dtype=torch.float64)
        self.epochs_seen += 1
        if self.epochs_seen >= 2:
            ratios = self.epoch_losses[1] / self.epoch_losses[0]  # (K,)
            self.task_weights.copy_(
                len(self.tasks) * torch.softmax(ratios / self.config.temperature, dim=0)
            )

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present(losses)
        w = self.task_weights.tolist()
        return torch.stack([w[self.index[t]] * losses[t] for t in present]).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.task_weights.tolist(), strict=True))
