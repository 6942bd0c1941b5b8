"""The shared model: one encoder, one head per task (a single-task run is the case of one head)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polytask.encoders.base import Encoder, EncoderOutput
from polytask.tasks.base import Task

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PolytaskModel(nn.Module):
    """Encoder shared by every task plus a ``ModuleDict`` of task heads.

    Args:
        encoder: the shared encoder.
        tasks: the tasks, by name; each builds its own head.
        dropout: dropout before each head.
        weighting: the multi-task loss weighting module, if any.
    """

    def __init__(
        self, encoder: Encoder, tasks: dict[str, Task], dropout: float = 0.1, weighting: nn.Module | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(
            {name: task.build_head(encoder.hidden_size, dropout) for name, task in tasks.items()}
        )
        # A submodule, so learnable or per-epoch task weights are optimised and checkpointed.
        self.weighting = weighting

    def encode(self, batch: dict[str, Any]) -> EncoderOutput:
        return self.encoder(**{k: batch[k] for k in ENCODER_INPUTS if k in batch})

    def forward(self, task: str, batch: dict[str, Any]) -> torch.Tensor:
        """Logits of one task for one batch."""
        return self.heads[task](self.encode(batch))

    def forward_all(self, batch: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor]:
        """Logits of several tasks from one encoder pass (serving a multi-task model)."""
        enc = self.encode(batch)
        return {name: self.heads[name](enc) for name in tasks}


def build_weighting_for(cfg: Any, task_names: list[str]) -> nn.Module | None:
    """The ``multitask.weighting`` module of an experiment config, or None."""
    wcfg = cfg.multitask.weighting
    if wcfg is None:
        return None
    from polytask.errors import ConfigError
    from polytask.multitask.weighting import build_weighting

    if wcfg.type == "gradnorm":
        raise ConfigError(
            "gradnorm needs every task's loss in the same step, and polytask trains one task per "
            "batch; choose equal, static, uncertainty or dwa",
            field="multitask.weighting.type",
        )
    return build_weighting(wcfg.type, task_names, wcfg.options)
