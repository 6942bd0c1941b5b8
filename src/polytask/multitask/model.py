"""The shared model: one encoder, one head per task (a single-task run is the case of one head)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polytask.encoders.base import Encoder, EncoderOutput, mean_pool
from polytask.tasks.base import Task

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TaskTower(nn.Module):
    """Transformer layers private to one task, between the shared encoder and the task's head.

    The shared encoder learns what the tasks have in common; a few private layers give a task
    room for what it does not share (the "shared trunk, task-specific branches" design of hard
    parameter sharing; Ruder 2017, "An Overview of Multi-Task Learning in Deep Neural Networks").

    Args:
        hidden_size: H, the encoder's width (kept).
        num_layers: how many layers.
        dropout: dropout inside each layer.
    """

    def __init__(self, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        heads = next(h for h in (8, 4, 2, 1) if hidden_size % h == 0)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden_size, heads, dim_feedforward=2 * hidden_size,
                                       dropout=dropout, batch_first=True)
            for _ in range(num_layers)
        )

    def forward(self, enc: EncoderOutput) -> EncoderOutput:
        x = enc.token_states  # (B, T, H)
        padding = enc.mask == 0  # (B, T) True where padded
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
        return EncoderOutput(token_states=x, mask=enc.mask, pooled=mean_pool(x, enc.mask))


class PolytaskModel(nn.Module):
    """Encoder shared by every task plus a ``ModuleDict`` of task heads.

    A task with ``task_layers: N`` also gets a ``TaskTower`` of N private layers (in ``towers``)
    between the encoder and its head.

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
            {name: task.build_head_for(encoder, dropout) for name, task in tasks.items()}
        )
        self.towers = nn.ModuleDict({
            name: TaskTower(encoder.hidden_size, task.config.task_layers, dropout)
            for name, task in tasks.items() if getattr(task.config, "task_layers", 0) > 0
        })
        # A submodule, so learnable or per-epoch task weights are optimised and checkpointed.
        self.weighting = weighting

    def encode(self, batch: dict[str, Any]) -> EncoderOutput:
        return self.encoder(**{k: batch[k] for k in ENCODER_INPUTS if k in batch})

    def head_forward(self, task: str, enc: EncoderOutput, batch: dict[str, Any] | None = None) -> Any:
        """Logits of ``task`` from the shared encoder's output (through its tower, if any).

        A head that declares ``reads_batch`` (a seq2seq decoder: it reads the target tokens) is
        also given the batch."""
        if task in self.towers:
            enc = self.towers[task](enc)
        head = self.heads[task]
        if getattr(head, "reads_batch", False):
            return head(enc, batch or {})
        return head(enc)

    def forward(self, task: str, batch: dict[str, Any]) -> torch.Tensor:
        """Logits of one task for one batch."""
        return self.head_forward(task, self.encode(batch), batch)

    def forward_all(self, batch: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor]:
        """Logits of several tasks from one encoder pass (serving a multi-task model)."""
        enc = self.encode(batch)
        return {name: self.head_forward(name, enc, batch) for name in tasks}

    def task_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to one task (heads and towers), not shared by all."""
        return [*self.heads.parameters(), *self.towers.parameters()]


def build_weighting_for(cfg: Any, task_names: list[str]) -> nn.Module | None:
    """The ``multitask.weighting`` module of an experiment config, or None."""
    wcfg = cfg.multitask.weighting
    if wcfg is None:
        return None
    from polytask.multitask.weighting import build_weighting

    # GradNorm's need for every task in each step is enforced by the schema (multitask.step).
    return build_weighting(wcfg.type, task_names, wcfg.options)


def step_mode(cfg: Any) -> str:
    """``multitask.step`` resolved: ``all_tasks`` when the weighting or a surgery needs every
    task's loss in each step (each member declares ``needs_all_tasks``), else ``one_task``.

    Raises:
        ConfigError: ``step: one_task`` with a weighting that needs every task, or a sampler
            (one task per batch) with such a weighting.
    """
    from polytask.errors import ConfigError

    mt = cfg.multitask
    needs_all = mt.surgery is not None
    if mt.weighting is not None:
        from polytask.multitask.weighting import WEIGHTINGS

        cls = WEIGHTINGS.get(mt.weighting.type, field="multitask.weighting.type")
        if getattr(cls, "needs_all_tasks", False):
            needs_all = True
            if mt.step == "one_task":
                raise ConfigError(f"{mt.weighting.type} needs every task's loss in the same step; set step: "
                                  "all_tasks (or leave step unset)", field="multitask.step")
            if mt.sampler is not None:
                raise ConfigError(f"a sampler chooses one task per batch, but {mt.weighting.type} takes every "
                                  "task in every step; remove multitask.sampler", field="multitask.sampler")
    if mt.step is not None:
        return mt.step
    return "all_tasks" if needs_all else "one_task"
