"""Loss weightings: how the per-task losses of a step become the one scalar back-propagated.

A weighting is an ``nn.Module`` so that learnable weights (uncertainty, GradNorm) and running
state (DWA's epoch losses) live in ``state_dict`` and are saved, loaded and optimised with the
model. Members live one per file and register in ``WEIGHTINGS``.

Shape legend: K = number of tasks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from polytask.errors import ConfigError
from polytask.registry import Registry

OPTIONS_FIELD = "multitask.weighting.options"
NAME_FIELD = "multitask.weighting.type"


class LossWeighting(nn.Module, ABC):
    """Turns per-task losses into the one scalar that is back-propagated.

    Args:
        tasks: the task names, in task order; non-empty, no duplicates.
        config: the member's config dataclass (``config_class``).

    Raises:
        ConfigError: no tasks, or a task named twice.
    """

    registry_name: str
    config_class: type  # the member's options dataclass, built by ``build_weighting``

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
