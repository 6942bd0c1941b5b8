"""``temperature``: temperature-scaled sampling, p_i proportional to n_i ** (1 / T).

From Arivazhagan et al., "Massively Multilingual Neural Machine Translation in the Wild:
Findings and Challenges" (2019, https://arxiv.org/abs/1907.05019), where it balances
high- and low-resource language pairs; T = 1 is proportional sampling and T -> infinity uniform.
It is common in multi-task NLP; T5 (Raffel et al., JMLR 2020, https://arxiv.org/abs/1910.10683)
compares it with the related examples-proportional mixing with a size cap.
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
class TemperatureSamplerConfig:
    """Options of ``temperature``.

    Args:
        temperature: T > 0; 1 is proportional, larger values flatten towards uniform
            (Arivazhagan et al. use T = 5; 2 is a milder default for a few tasks).
    """

    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")


@SAMPLERS.register("temperature")
class TemperatureSampler(TaskSampler):
    """p_i = n_i^(1/T) / sum_j n_j^(1/T), constant over training.

    Args:
        task_sizes: training batches (or examples) per task.
        config: a ``TemperatureSamplerConfig``.
    """

    options_class = TemperatureSamplerConfig

    def __init__(self, task_sizes: dict[str, int], config: TemperatureSamplerConfig):
        super().__init__(task_sizes, config)
        self._probs = power_probabilities(self.task_sizes, 1.0 / config.temperature)

    def probabilities(self, progress: float) -> dict[str, float]:
        check_progress(progress)
        return dict(self._probs)
