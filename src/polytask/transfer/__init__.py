"""Transfer strategies family. Importing this package registers every member."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polytask.config.schema import TrainConfig, TransferConfig
from polytask.errors import ConfigError
from polytask.options import build_options
from polytask.registry import import_members
from polytask.transfer.base import STRATEGIES, Strategy

import_members(__name__, __path__, shared=("base", "init_from_run"))


class Strategies:
    """Several strategies applied in order (``transfer.strategy: [gradual_unfreeze, ...]``)."""

    def __init__(self, members: list[Strategy]):
        self.members = members
        owners = [m.registry_name for m in members if type(m).param_groups is not Strategy.param_groups]
        if len(owners) > 1:
            raise ConfigError(
                f"strategies {' and '.join(owners)} both set the optimiser's groups; choose one",
                field="transfer.strategy",
            )

    @property
    def needs_anchor(self) -> bool:
        return any(m.needs_anchor for m in self.members)

    @property
    def fixed_encoder(self) -> bool:
        """True when a member fixes the encoder for the whole run (its outputs may be cached)
        and no other member changes it along the way."""
        fixed = any(getattr(m, "fixed_encoder", False) for m in self.members)
        changing = any(type(m).on_step is not Strategy.on_step and not getattr(m, "fixed_encoder", False)
                       for m in self.members)
        return fixed and not changing

    @property
    def saves_full_model(self) -> bool:
        return all(m.saves_full_model for m in self.members)

    def prepare(self, model: nn.Module, tasks: dict[str, Any], train_features: dict[str, list[dict[str, Any]]],
                pad_id: int, accelerator: Any, progress: bool = True) -> None:
        for m in self.members:
            m.prepare(model, tasks, train_features, pad_id, accelerator, progress)

    def setup(self, model: nn.Module, anchor: dict[str, torch.Tensor] | None = None) -> None:
        for m in self.members:
            m.setup(model, anchor)

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict] | None:
        for m in self.members:
            groups = m.param_groups(model, cfg)
            if groups is not None:
                return groups
        return None

    def on_step(self, model: nn.Module, step: int, steps_per_epoch: int) -> None:
        for m in self.members:
            m.on_step(model, step, steps_per_epoch)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        terms = [t for t in (m.penalty(model) for m in self.members) if t is not None]
        return sum(terms) if terms else None  # type: ignore[return-value]

    def checkpoint_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for m in self.members:
            state = m.checkpoint_state(model, state)
        return state

    def restore(self, model: nn.Module) -> None:
        for m in self.members:
            m.restore(model)

    def merge(self, model: nn.Module) -> None:
        for m in self.members:
            m.merge(model)


def build_strategies(config: TransferConfig) -> Strategies:
    """The configured strategies with their validated options."""
    names = [config.strategy] if isinstance(config.strategy, str) else list(config.strategy)
    unknown = sorted(set(config.options) - set(names))
    if unknown:
        raise ConfigError(
            f"options given for {', '.join(unknown)}, which is not among the chosen strategies "
            f"({', '.join(names)})",
            field="transfer.options",
        )
    members: list[Strategy] = []
    for name in names:
        cls = STRATEGIES.get(name, field="transfer.strategy")
        opts: dict[str, Any] = config.options.get(name, {})
        options = build_options(cls.options_class, opts, name=name, kind="transfer strategy",
                                field=f"transfer.options.{name}")
        members.append(cls(options))
    return Strategies(members)


__all__ = ["STRATEGIES", "Strategies", "Strategy", "build_strategies"]
