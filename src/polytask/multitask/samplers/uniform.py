"""``uniform``: every task equally often, p_i = 1 / K, whatever its size.

The simplest balanced mixing (equivalently temperature sampling with T -> infinity, see
Arivazhagan et al., 2019, https://arxiv.org/abs/1907.05019). Small tasks are revisited many
times per pass over a large one, so they may overfit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.multitask.samplers.base import SAMPLERS, TaskSampler, check_progress


@dataclass
class UniformSamplerConfig:
    """Options of ``uniform`` (none; the dataclass keeps every member alike)."""


@SAMPLERS.register("uniform")
class UniformSampler(TaskSampler):
    """p_i = 1 / K. ``sample`` draws at random; ``schedule`` is round-robin.

    ``schedule`` cycles through the tasks in ``task_sizes`` order (a, b, c, a, b, c, ...) and
    ignores ``rng``: it gives the exact 1/K frequencies with no sampling noise, so every task
    is seen at evenly spaced steps.

    Args:
        task_sizes: training batches (or examples) per task; only the task names matter.
        config: a ``UniformSamplerConfig``.
    """

    options_class = UniformSamplerConfig

    def probabilities(self, progress: float) -> dict[str, float]:
        check_progress(progress)
        return {t: 1.0 / len(self.tasks) for t in self.tasks}

    def schedule(self, n_batches: int, rng: random.Random) -> list[str]:
        if n_batches < 0:
            raise ValueError(f"n_batches must be >= 0; got {n_batches}")
        return [self.tasks[i % len(self.tasks)] for i in range(n_batches)]
