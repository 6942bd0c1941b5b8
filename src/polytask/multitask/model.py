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
        # tasks[].from_layer: the heads that read a lower encoder layer (1 = the lowest).
        self.from_layer = {name: task.config.from_layer for name, task in tasks.items()
                           if getattr(task.config, "from_layer", None)}
        if self.from_layer:
            _check_layers(encoder, self.from_layer)
            encoder.keep_layers = True

    def encode(self, batch: dict[str, Any]) -> EncoderOutput:
        return self.encoder(**{k: batch[k] for k in ENCODER_INPUTS if k in batch})

    def head_forward(self, task: str, enc: EncoderOutput, batch: dict[str, Any] | None = None) -> Any:
        """Logits of ``task`` from the shared encoder's output (its ``from_layer``, through its
        tower, if any). A head that declares ``reads_batch`` (a seq2seq decoder: it reads the
        target tokens) is also given the batch.

        Under bf16/fp16 autocast the encoder runs in low precision but the heads (and towers) run
        in fp32 on fp32 states: they cost little, and regression outputs and the CRF's scores keep
        their precision. A decoder head is a network as large as the encoder: it stays in the
        autocast precision.
        """
        k = self.from_layer.get(task)
        if k is not None:
            states = enc.layers[k]  # (B, T, H) after layer k
            enc = EncoderOutput(token_states=states, mask=enc.mask, pooled=mean_pool(states, enc.mask))
        device = enc.token_states.device.type
        if torch.is_autocast_enabled(device) and not getattr(self.heads[task], "reads_batch", False):
            with torch.autocast(device, enabled=False):
                return self._head(task, EncoderOutput(
                    token_states=enc.token_states.float(), mask=enc.mask, pooled=enc.pooled.float()), batch)
        return self._head(task, enc, batch)

    def _head(self, task: str, enc: EncoderOutput, batch: dict[str, Any] | None) -> Any:
        """``task``'s tower (if any) and head on ``enc``."""
        if task in self.towers:
            enc = self.towers[task](enc)
        head = self.heads[task]
        if getattr(head, "reads_batch", False):
            return head(enc, batch or {})
        return head(enc)

    def forward(self, task: str | None, batch: dict[str, Any]) -> Any:
        """Logits of one task for one batch; with ``task`` None, a shared-input batch
        (``multitask/shared.py``): task -> logits of the rows it labels, one encoder pass."""
        if task is None:
            return self.forward_shared(batch)
        return self.head_forward(task, self.encode(batch), batch)

    def forward_shared(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One encoder pass over a stream batch, then each task's head on the rows it labels
        (token tasks' states cut to their own batch's width)."""
        from polytask.multitask.shared import select_rows

        enc = self.encode(batch)
        out = {}
        for name, (rows, _sub, width) in batch["tasks"].items():
            out[name] = self.head_forward(name, select_rows(enc, rows, width))
        return out

    def forward_all(self, batch: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor]:
        """Logits of several tasks from one encoder pass (serving a multi-task model)."""
        enc = self.encode(batch)
        return {name: self.head_forward(name, enc, batch) for name in tasks}

    def task_parameters(self) -> list[nn.Parameter]:
        """Parameters that belong to one task (heads and towers), not shared by all."""
        return [*self.heads.parameters(), *self.towers.parameters()]


def _check_layers(encoder: Encoder, from_layer: dict[str, int]) -> None:
    from polytask.errors import ConfigError

    n = len(encoder.layer_groups()) - 1  # the groups are [embeddings, layer 1, ..., layer N]
    supports = type(encoder).__name__ in ("TransformerEncoder", "BiLSTMEncoder") or getattr(
        encoder, "supports_layers", False)
    for name, k in from_layer.items():
        if not supports:
            raise ConfigError(f"tasks.{name}.from_layer: encoder {encoder.registry_name!r} gives no per-layer "
                              "states (transformer and bilstm do); leave from_layer out",
                              field=f"tasks.{name}.from_layer")
        if k > n:
            raise ConfigError(f"tasks.{name}.from_layer is {k}, but the encoder has {n} layer(s); use 1 to {n}",
                              field=f"tasks.{name}.from_layer")


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
