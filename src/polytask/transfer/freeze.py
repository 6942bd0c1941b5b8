"""``freeze``: the encoder is a fixed feature extractor; only the heads train.

The classic feature-based transfer (e.g. Peters et al. 2018, ELMo features; Devlin et al. 2019,
section 5.3, feature-based BERT). Much cheaper per step (no encoder backward pass), and with
``cache_features`` (the default) the encoder runs once over the training set: every later epoch
trains the heads on the stored outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polytask.transfer.base import STRATEGIES, Strategy


@dataclass
class FreezeConfig:
    """Args:
    train_layer_norms: also leave the encoder's LayerNorm weights trainable (a cheap middle way;
        the encoder then changes, so its outputs are not cached).
    cache_features: compute the encoder's outputs for the training set once and train the heads
        on them (the same numbers as running the frozen encoder every step: dropout is off).
        Not used with task towers (``tasks[].task_layers``), which need every token's state.
    """

    train_layer_norms: bool = False
    cache_features: bool = True


@STRATEGIES.register("freeze")
class Freeze(Strategy):
    """Set ``requires_grad=False`` on every encoder parameter (optionally keeping LayerNorms)."""

    options_class = FreezeConfig

    @property
    def fixed_encoder(self) -> bool:
        """True when the encoder's outputs never change, so the loop may cache them."""
        opts = self.options or FreezeConfig()
        return opts.cache_features and not opts.train_layer_norms

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        keep_norms = self.options.train_layer_norms if self.options else False
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(keep_norms and "LayerNorm" in name)

    def on_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        # Fixed features: the encoder's dropout off (the loop puts the model back in train mode
        # after each evaluation, so this is re-applied every step; it is a cheap module walk).
        model.encoder.eval()
