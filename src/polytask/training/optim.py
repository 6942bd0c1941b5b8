"""Optimiser and schedule: AdamW with decoupled weight decay and linear warm-up then decay."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from polytask.config.schema import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Encoder and heads, each split into decayed weights and undecayed biases/norms.

    Biases and LayerNorm weights (the 1-d parameters) get no weight decay, as in BERT's recipe
    (Devlin et al. 2019) and the HF Trainer, so the two compare fairly.
    """
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    # Frozen parameters stay in the optimiser: a strategy may unfreeze them later, and AdamW
    # skips a parameter whose gradient is None.
    for name, p in model.named_parameters():
        part = "encoder" if name.startswith("encoder.") else "heads"
        groups.setdefault((part, p.ndim > 1), []).append(p)
    out = []
    for (part, decay), params in groups.items():
        lr = cfg.head_lr if (part == "heads" and cfg.head_lr) else cfg.lr
        out.append({"params": params, "lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0})
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """AdamW over ``groups`` (a transfer strategy's), or the default groups above."""
    return torch.optim.AdamW(groups if groups is not None else param_groups(model, cfg), lr=cfg.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
