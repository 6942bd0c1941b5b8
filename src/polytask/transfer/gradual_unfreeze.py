"""``gradual_unfreeze``: start with only the heads training, then unfreeze the encoder one layer
group at a time from the top down (Howard & Ruder 2018, "Universal Language Model Fine-tuning
for Text Classification", ACL, https://arxiv.org/abs/1801.06146)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polytask.transfer.base import STRATEGIES, Strategy, encoder_groups


@dataclass
class GradualUnfreezeConfig:
    """Args:
    every: unfreeze one more group every this many optimizer steps; None = once per epoch.
    """

    every: int | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be a positive number of steps; got {self.every}")


def unfrozen_groups(step: int, interval: int, n_groups: int) -> int:
    """How many top groups train at optimizer step ``step``: 0 during the first interval, then
    one more per interval, at most all of them."""
    return min(n_groups, step // max(1, interval))


@STRATEGIES.register("gradual_unfreeze")
class GradualUnfreeze(Strategy):
    """Recomputes which groups train from the step number alone, so --resume needs no state.

    Every encoder parameter stays in the optimiser; a frozen one simply gets no gradient
    (AdamW skips it). Not for several processes: DDP fixes its trainable set when it wraps the model.
    """

    options_class = GradualUnfreezeConfig

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        self._apply(model, 0)

    def on_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        interval = self.options.every if self.options and self.options.every else steps_per_epoch
        self._apply(model, unfrozen_groups(step, interval, len(encoder_groups(model))))

    def _apply(self, model: nn.Module, n_top: int) -> None:
        groups = encoder_groups(model)
        for i, group in enumerate(groups):
            trains = i >= len(groups) - n_top
            for p in group:
                p.requires_grad_(trains)
