"""Task samplers: which task each multi-task training batch comes from.

Importing this package imports every member module, so each registers itself in ``SAMPLERS``;
a third-party sampler is named by import path (``my_pkg.samplers:MySampler``) and must set
``options_class`` to its options dataclass.
"""

from __future__ import annotations

from typing import Any

from polytask.multitask.samplers.annealed import AnnealedSampler, AnnealedSamplerConfig
from polytask.multitask.samplers.base import NAME_FIELD, OPTIONS_FIELD, SAMPLERS, TaskSampler
from polytask.multitask.samplers.explicit import ExplicitSampler, ExplicitSamplerConfig
from polytask.multitask.samplers.proportional import (
    ProportionalSampler,
    ProportionalSamplerConfig,
)
from polytask.multitask.samplers.temperature import TemperatureSampler, TemperatureSamplerConfig
from polytask.multitask.samplers.uniform import UniformSampler, UniformSamplerConfig
from polytask.options import build_options
from polytask.registry import import_members

import_members(__name__, __path__)


def build_sampler(
    name: str, task_sizes: dict[str, int], options: dict[str, Any] | None = None
) -> TaskSampler:
    """The sampler called ``name``, with its options validated into its config dataclass.

    Args:
        name: a registered name (``temperature``) or an import path ``package.module:Class``.
        task_sizes: training batches (or examples) per task, in task order.
        options: the sampler's options (``multitask.sampler.options``); None means defaults.

    Raises:
        ConfigError: unknown sampler (listing the known ones), bad options (naming the allowed
            keys), no tasks, a task with no training data, or member-specific checks.
    """
    cls = SAMPLERS.get(name, field=NAME_FIELD)
    config = build_options(cls.options_class, options, name=getattr(cls, "registry_name", name), kind="task sampler",
                           field=OPTIONS_FIELD)
    return cls(task_sizes, config)


__all__ = [
    "SAMPLERS",
    "AnnealedSampler",
    "AnnealedSamplerConfig",
    "ExplicitSampler",
    "ExplicitSamplerConfig",
    "ProportionalSampler",
    "ProportionalSamplerConfig",
    "TaskSampler",
    "TemperatureSampler",
    "TemperatureSamplerConfig",
    "UniformSampler",
    "UniformSamplerConfig",
    "build_sampler",
]
