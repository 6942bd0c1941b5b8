"""``explicit``: user-given task weights, p_i = w_i / sum_j w_j.

Hand-set mixing rates, as in the T5 mixture experiments (Raffel et al., JMLR 2020,
https://arxiv.org/abs/1910.10683), for when the user knows which tasks matter most or tunes
the rates on a dev set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polytask.errors import ConfigError
from polytask.multitask.samplers.base import (
    OPTIONS_FIELD,
    SAMPLERS,
    TaskSampler,
    check_progress,
    normalise,
)


@dataclass
class ExplicitSamplerConfig:
    """Options of ``explicit``.

    Args:
        weights: task name -> non-negative weight; normalised to sum to 1. A task left out
            gets weight 0 (never sampled); at least one weight must be positive.
    """

    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for task, w in self.weights.items():
            if not w >= 0:  # also rejects NaN
                raise ValueError(f"sampler weight for task '{task}' must be >= 0; got {w}")


@SAMPLERS.register("explicit")
class ExplicitSampler(TaskSampler):
    """p_i = w_i / sum_j w_j, constant over training.

    Args:
        task_sizes: training batches (or examples) per task; the weights' keys must be among them.
        config: an ``ExplicitSamplerConfig``.

    Raises:
        ConfigError: a weight for an unknown task, or no positive weight.
    """

    options_class = ExplicitSamplerConfig

    def __init__(self, task_sizes: dict[str, int], config: ExplicitSamplerConfig):
        super().__init__(task_sizes, config)
        tasks = ", ".join(self.tasks)
        for task in config.weights:
            if task not in self.task_sizes:
                # Most likely a typo: silently ignoring it would drop the task the user meant.
                raise ConfigError(
                    f"sampler weight for unknown task '{task}'; tasks: {tasks}",
                    field=f"{OPTIONS_FIELD}.weights",
                )
        weights = {t: float(config.weights.get(t, 0.0)) for t in self.tasks}
        if not any(w > 0 for w in weights.values()):
            raise ConfigError(
                f"sampler weights are all zero; give at least one task a positive weight (tasks: {tasks})",
                field=f"{OPTIONS_FIELD}.weights",
            )
        self._probs = normalise(weights)

    def probabilities(self, progress: float) -> dict[str, float]:
        check_progress(progress)
        return dict(self._probs)
