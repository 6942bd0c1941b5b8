"""Loss weightings: how the per-task losses of a step become the one scalar back-propagated.

A weighting is an ``nn.Module`` so that learnable weights (uncertainty, GradNorm) and running
state (DWA's epoch losses) live in ``state_dict`` and are saved, loaded and optimised with the
model. Members live one per file and register in ``WEIGHTINGS``.

The training loop knows no member: it hands each round of task losses to ``backward`` (as
LibMTL's ``AbsWeighting.backward``) together with a ``StepContext``, and calls ``after_step``
once the optimizer has stepped. A member that must see every task's loss of a round at once
(GradNorm, FAMO, RLW) sets ``needs_all_tasks``; the loop then takes one batch of every task per
step (``multitask.step: all_tasks``) and holds the round's losses until all are there.

Shape legend: K = number of tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch
from torch import nn

from polytask.errors import ConfigError
from polytask.registry import Registry

OPTIONS_FIELD = "multitask.weighting.options"
NAME_FIELD = "multitask.weighting.type"


class StepContext(Protocol):
    """What the training loop offers a weighting during one optimizer step."""

    rounds: int  # rounds of every task's batch accumulated into this optimizer step

    def backward(self, task: str, objective: torch.Tensor) -> None:
        """Back-propagate ``objective``, the weighted loss of ``task``'s batch."""

    def top_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer's trainable parameters."""

    def losses_now(self) -> dict[str, torch.Tensor]:
        """This step's task losses on the same batches with the current weights (no gradient;
        after the optimizer step, the losses the step led to)."""


class LossWeighting(nn.Module, ABC):
    """Turns per-task losses into the one scalar that is back-propagated.

    Args:
        tasks: the task names, in task order; non-empty, no duplicates.
        config: the member's config dataclass (``options_class``).

    Raises:
        ConfigError: no tasks, or a task named twice.
    """

    registry_name: str
    options_class: type  # the member's options dataclass, built by ``build_weighting``
    needs_all_tasks: bool = False  # True: every step holds one batch of every task

    def __init__(self, tasks: list[str], config: Any):
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.index = {task: i for i, task in enumerate(self.tasks)}
        self.config = config

    @abstractmethod
    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted scalar loss of this step.

        Args:
            losses: task -> scalar loss of this step, for any non-empty subset of the tasks
                (the training loop may compute one task per step).
        """

    @abstractmethod
    def weights(self) -> dict[str, float]:
        """The current weight of every task, for logging."""

    def backward(self, losses: dict[str, torch.Tensor], step: StepContext) -> None:
        """Back-propagate one round of task losses; by default each task's weighted loss alone.

        Args:
            losses: task -> scalar loss: one task in one-task steps, every task of the round
                when ``needs_all_tasks``.
            step: the loop's context (``step.backward(task, objective)`` back-propagates).
        """
        for task, loss in losses.items():
            step.backward(task, self({task: loss}))

    def after_step(self, step: StepContext) -> None:
        """Called after each optimizer step (e.g. to renormalise learned weights); a no-op by default."""

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        """Called once per epoch with each task's mean training loss; a no-op by default.

        Args:
            mean_losses: task -> mean training loss over the epoch just finished.
        """

    def present(self, losses: dict[str, torch.Tensor]) -> list[str]:
        """The tasks in ``losses``, in task order; ValueError on none or an unknown task."""
        if not losses:
            raise ValueError("no task losses to weight; pass at least one")
        unknown = [t for t in losses if t not in self.index]
        if unknown:
            raise ValueError(
                f"loss for unknown task(s) {', '.join(unknown)}; tasks: {', '.join(self.tasks)}"
            )
        return [t for t in self.tasks if t in losses]


WEIGHTINGS: Registry[LossWeighting] = Registry("loss weighting")


# ---- helpers shared by the members ----------------------------------------------------------
def check_tasks(tasks: list[str]) -> list[str]:
    """Return ``tasks`` as a new list, or raise ConfigError for none or a duplicate."""
    tasks = list(tasks)
    if not tasks:
        raise ConfigError("no tasks to weight; configure at least one task")
    seen: set[str] = set()
    for task in tasks:
        if task in seen:
            raise ConfigError(f"task '{task}' is named twice")
        seen.add(task)
    return tasks
