"""Transfer strategies: how the pretrained encoder is fine-tuned on the target tasks.

A strategy sees the model at four points, each a no-op unless the member overrides it:
``setup`` (once, before the optimiser; e.g. freeze), ``param_groups`` (optimiser groups; e.g.
layer-wise learning rates), ``on_step`` (before each optimizer step; e.g. gradual unfreezing)
and ``penalty`` (added to the loss; e.g. L2-SP). Several strategies combine in order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polytask.config.schema import TrainConfig
from polytask.registry import Registry


class Strategy:
    """One way to fine-tune. Every hook has a no-op default; a member overrides what it needs.

    Args:
        options: the member's options dataclass (validated from ``transfer.options``).
    """

    registry_name: str
    options_class: type = type(None)
    needs_anchor: bool = False  # True: setup wants the pretrained weights (L2-SP)

    def __init__(self, options: Any = None):
        self.options = options

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        """Called once with the full model (encoder + heads) before the optimiser is built."""

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict] | None:
        """Optimiser groups, or None for the default (encoder at lr, heads at head_lr)."""
        return None

    def on_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        """Called before optimizer step ``step`` (0-based) is computed."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A regulariser added to every training loss, or None."""
        return None


STRATEGIES: Registry[Strategy] = Registry("transfer strategy")


def encoder_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The encoder's layer groups, bottom (embeddings) to top."""
    return model.encoder.layer_groups()


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.heads.parameters())
