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
    """

    def __init__(self, encoder: Encoder, tasks: dict[str, Task], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(
            {name: task.build_head(encoder.hidden_size, dropout) for name, task in tasks.items()}
        )

    def encode(self, batch: dict[str, Any]) -> EncoderOutput:
        return self.encoder(**{k: batch[k] for k in ENCODER_INPUTS if k in batch})

    def forward(self, task: str, batch: dict[str, Any]) -> torch.Tensor:
        """Logits of one task for one batch."""
        return self.heads[task](self.encode(batch))

    def forward_all(self, batch: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor]:
        """Logits of several tasks from one encoder pass (serving a multi-task model)."""
        enc = self.encode(batch)
        return {name: self.heads[name](enc) for name in tasks}
