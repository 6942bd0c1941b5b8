"""``annealed``: annealed sampling, from proportional towards uniform as training goes on.

From Stickland & Murray, "BERT and PALs: Projected Attention Layers for Efficient Adaptation
in Multi-Task Learning" (ICML 2019, https://arxiv.org/abs/1902.02671): p_i proportional to
n_i ** alpha with alpha = 1 - anneal_factor * progress, so large tasks dominate early and
small tasks catch up late, reducing interference from the large tasks at the end.
(The paper anneals per epoch, alpha = 1 - 0.8 (e - 1) / (E - 1); progress plays that role.)
"""

from __future__ import annotations

from dataclasses import dataclass

from polytask.multitask.samplers.base import (
    SAMPLERS,
    TaskSampler,
    check_progress,
    power_probabilities,
)


@dataclass
class AnnealedSamplerConfig:
    """Options of ``annealed``.

    Args:
        anneal_factor: in [0, 1]; alpha at the end of training is ``1 - anneal_factor``.
            0 keeps proportional sampling; 1 ends at uniform; 0.8 is the paper's value.
    """

    anneal_factor: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.anneal_factor <= 1.0:
            raise ValueError(f"anneal_factor must be in [0, 1]; got {self.anneal_factor}")


@SAMPLERS.register("annealed")
class AnnealedSampler(TaskSampler):
    """p_i = n_i^alpha / sum_j n_j^alpha with alpha = 1 - anneal_factor * progress.

    Args:
        task_sizes: training batches (or examples) per task.
        config: an ``AnnealedSamplerConfig``.
    """

    options_class = AnnealedSamplerConfig

    def probabilities(self, progress: float) -> dict[str, float]:
        alpha = 1.0 - self.config.anneal_factor * check_progress(progress)
        return power_probabilities(self.task_sizes, alpha)
