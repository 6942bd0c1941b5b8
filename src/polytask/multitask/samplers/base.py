"""Task samplers: which task the next training batch comes from.

A sampler turns the per-task training sizes into a distribution over tasks, possibly changing
with training progress, and draws from it with a caller-owned seeded ``random.Random`` so a
run's task order is reproducible. Members live one per file and register in ``SAMPLERS``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any

from polytask.errors import ConfigError
from polytask.registry import Registry

OPTIONS_FIELD = "multitask.sampler.options"
NAME_FIELD = "multitask.sampler.type"


class TaskSampler(ABC):
    """Chooses which task the next training batch comes from.

    Args:
        task_sizes: training batches (or examples) per task, in task order; every size > 0.
        config: the member's config dataclass (``options_class``).

    Raises:
        ConfigError: no tasks, or a task with no training data.
    """

    registry_name: str
    options_class: type  # the member's options dataclass, built by ``build_sampler``

    def __init__(self, task_sizes: dict[str, int], config: Any):
        self.task_sizes = check_task_sizes(task_sizes)
        self.tasks = list(self.task_sizes)
        self.config = config

    @abstractmethod
    def probabilities(self, progress: float) -> dict[str, float]:
        """P(task) for the next batch; progress = fraction of training done in [0, 1].

        Args:
            progress: fraction of training done, in [0, 1].
        """

    def sample(self, progress: float, rng: random.Random) -> str:
        """One task drawn from ``probabilities(progress)``.

        Args:
            progress: fraction of training done, in [0, 1].
            rng: the caller's seeded generator; the only source of randomness.
        """
        probs = self.probabilities(check_progress(progress))
        # One uniform draw against the cumulative distribution: the same rng state gives the same
        # task on every platform, and tasks with p = 0 can never be chosen.
        u = rng.random()
        total = 0.0
        last = self.tasks[0]
        for task, p in probs.items():
            if p <= 0.0:
                continue
            total += p
            last = task
            if u < total:
                return task
        return last  # u fell in the rounding gap when the probabilities sum to just under 1

    def schedule(self, n_batches: int, rng: random.Random) -> list[str]:
        """A whole epoch's task order: the i-th draw uses progress ``i / n_batches``.

        Args:
            n_batches: number of batches in the epoch (>= 0).
            rng: the caller's seeded generator.
        """
        if n_batches < 0:
            raise ValueError(f"n_batches must be >= 0; got {n_batches}")
        return [self.sample(i / n_batches, rng) for i in range(n_batches)]


SAMPLERS: Registry[TaskSampler] = Registry("task sampler")


# ---- helpers shared by the members ----------------------------------------------------------
def check_task_sizes(task_sizes: dict[str, int]) -> dict[str, int]:
    """Return ``task_sizes`` as a new dict, or raise ConfigError for missing training data."""
    if not task_sizes:
        raise ConfigError("no tasks to sample from; configure at least one task with training data")
    for task, size in task_sizes.items():
        if size <= 0:
            raise ConfigError(f"task '{task}' has no training data (size {size})")
    return dict(task_sizes)


def check_progress(progress: float) -> float:
    """Return ``progress`` or raise ValueError when it is outside [0, 1] (a caller bug)."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1]; got {progress}")
    return progress


def normalise(weights: dict[str, float]) -> dict[str, float]:
    """Scale non-negative weights to sum to 1 (the caller guarantees a positive sum)."""
    total = sum(weights.values())
    return {task: w / total for task, w in weights.items()}


def power_probabilities(task_sizes: dict[str, int], alpha: float) -> dict[str, float]:
    """p_i proportional to n_i ** alpha: alpha 1 is proportional, alpha 0 uniform.

    Sizes are divided by the largest first so large sizes and large alphas cannot overflow.
    """
    largest = max(task_sizes.values())
    return normalise({t: (n / largest) ** alpha for t, n in task_sizes.items()})
