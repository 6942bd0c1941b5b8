"""``proportional``: sample tasks in proportion to their training data, p_i = n_i / sum_j n_j.

This is what concatenating and shuffling every task's data does; large tasks dominate and small
ones may be under-trained. T5 (Raffel et al., JMLR 2020, https://arxiv.org/abs/1910.10683)
calls it examples-proportional mixing.
"""

from __future__ import annotations

from dataclasses import dataclass

from polytask.multitask.samplers.base import SAMPLERS, TaskSampler, check_progress, normalise


@dataclass
class ProportionalSamplerConfig:
    """Options of ``proportional`` (none; the dataclass keeps every member alike)."""


@SAMPLERS.register("proportional")
class ProportionalSampler(TaskSampler):
    """p_i = n_i / sum_j n_j, constant over training.

    Args:
        task_sizes: training batches (or examples) per task.
        config: a ``ProportionalSamplerConfig``.
    """

    options_class = ProportionalSamplerConfig

    def __init__(self, task_sizes: dict[str, int], config: ProportionalSamplerConfig):
        super().__init__(task_sizes, config)
        self._probs = normalise({t: float(n) for t, n in self.task_sizes.items()})

    def probabilities(self, progress: float) -> dict[str, float]:
        check_progress(progress)
        return dict(self._probs)
