"""``l2_sp``: keep transferred weights near their pretrained values instead of near zero.

Li, Grandvalet & Davoine 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML, https://arxiv.org/abs/1802.01483: the regulariser
``alpha/2 * ||w_S - w_S^0||^2 + beta/2 * ||w_new||^2`` over the transferred (encoder) weights
``w_S`` anchored at the pretrained ``w_S^0``, and plain L2 on the new (head) weights.
AdamW's own weight decay would pull toward zero, against the anchor, so this strategy sets it to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polytask.config.schema import TrainConfig
from polytask.transfer.base import STRATEGIES, Strategy, head_parameters


@dataclass
class L2SpConfig:
    """Args:
    alpha: weight of the pull toward the pretrained encoder weights.
    beta: weight of plain L2 on the new head weights.
    """

    alpha: float = 0.01
    beta: float = 0.01

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0; got {self.alpha}, {self.beta}")


@STRATEGIES.register("l2_sp")
class L2Sp(Strategy):
    options_class = L2SpConfig
    needs_anchor = True

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        if anchor is None:
            raise ValueError("l2_sp needs the pretrained encoder weights as its anchor")
        # Anchors live beside their parameters (same device, no gradient).
        self._pairs = [
            (p, anchor[name].to(p.device, p.dtype)) for name, p in model.encoder.named_parameters() if name in anchor
        ]
        self._new = [p for p in model.task_parameters() if p.ndim > 1]

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict]:
        head_lr = cfg.head_lr or cfg.lr
        return [
            {"params": list(model.encoder.parameters()), "lr": cfg.lr, "weight_decay": 0.0},
            {"params": head_parameters(model), "lr": head_lr, "weight_decay": 0.0},
        ]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        if self._pairs and self._pairs[0][1].device != self._pairs[0][0].device:
            # setup ran before Accelerate moved the model to its device: follow it, once.
            self._pairs = [(p, p0.to(p.device)) for p, p0 in self._pairs]
        sp = sum(((p - p0) ** 2).sum() for p, p0 in self._pairs)
        new = sum((p**2).sum() for p in self._new)
        return self.options.alpha / 2 * sp + self.options.beta / 2 * new
