"""Transfer strategies: how the pretrained encoder is fine-tuned on the target tasks.

A strategy sees the model at these points, each a no-op unless the member overrides it:
``prepare`` (once, on a fresh run, before anything else, with the training features; e.g. a
contrastive phase that tunes the encoder), ``setup`` (once, before the optimiser, also on resume;
e.g. freeze, or wrapping the encoder in adapters), ``param_groups`` (optimiser groups; e.g.
layer-wise learning rates), ``on_step`` (before each optimizer step; e.g. gradual unfreezing),
``penalty`` (added to the loss; e.g. L2-SP), ``checkpoint_state`` (which weights a
checkpoint holds; e.g. only adapters and heads) and its mirror ``restore`` (make a freshly built
model ready to take such a checkpoint; e.g. inject the adapters), and ``merge`` (fold what the
strategy added into plain weights once loaded). Several strategies combine in order.
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
    # False: checkpoints hold only part of the weights (see ``checkpoint_state``); the rest are
    # rebuilt from the starting encoder (``encoder.name_or_path`` / ``transfer.init_from``).
    saves_full_model: bool = True

    def __init__(self, options: Any = None):
        self.options = options

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Refuse, from the whole experiment config, what this strategy cannot do (called
        before any data or model loads). Raises ConfigError; accepts everything by default."""

    def prepare(
        self,
        model: nn.Module,
        tasks: dict[str, Any],
        train_features: dict[str, list[dict[str, Any]]],
        pad_id: int,
        accelerator: Any,
        progress: bool = True,
    ) -> None:
        """Called once on a fresh run (not on resume), before ``setup``.

        Args:
            model: the full model (encoder + heads), on the CPU.
            tasks: the tasks by name (``task.collate(features, pad_id)`` makes a batch).
            train_features: each task's encoded training examples (with ``labels``).
            pad_id: the tokenizer's padding id.
            accelerator: the run's Accelerator (``accelerator.device`` is where training runs);
                a phase that trains steps through a ``training.engine.StepEngine`` on it.
            progress: whether a progress bar may be shown.
        """

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

    def checkpoint_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights a checkpoint keeps, from the full ``state``; everything by default."""
        return state

    def restore(self, model: nn.Module) -> None:
        """Make a model built from the starting encoder ready to take this strategy's checkpoint
        (called when a saved run is loaded, before its weights); a no-op by default."""

    def merge(self, model: nn.Module) -> None:
        """After loading, fold what this strategy added into plain weights (a no-op by default)."""


STRATEGIES: Registry[Strategy] = Registry("transfer strategy")


def encoder_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The encoder's layer groups, bottom (embeddings) to top."""
    return model.encoder.layer_groups()


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Everything that is not the shared encoder: heads, task towers, learnable loss weights."""
    return [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
