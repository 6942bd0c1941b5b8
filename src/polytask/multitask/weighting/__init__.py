"""Loss weightings: how a step's per-task losses become the one scalar back-propagated.

Importing this package imports every member module, so each registers itself in
``WEIGHTINGS``; a third-party weighting is named by import path
(``my_pkg.weighting:MyWeighting``) and must set ``options_class`` to its options dataclass.
"""

from __future__ import annotations

from typing import Any

from polytask.multitask.weighting.base import (
    NAME_FIELD,
    OPTIONS_FIELD,
    WEIGHTINGS,
    LossWeighting,
)
from polytask.multitask.weighting.dwa import DWAWeighting, DWAWeightingConfig
from polytask.multitask.weighting.equal import EqualWeighting, EqualWeightingConfig
from polytask.multitask.weighting.gradnorm import GradNormWeighting, GradNormWeightingConfig
from polytask.multitask.weighting.static import StaticWeighting, StaticWeightingConfig
from polytask.multitask.weighting.uncertainty import (
    UncertaintyWeighting,
    UncertaintyWeightingConfig,
)
from polytask.options import build_options
from polytask.registry import import_members

import_members(__name__, __path__)


def build_weighting(
    name: str, tasks: list[str], options: dict[str, Any] | None = None
) -> LossWeighting:
    """The loss weighting called ``name``, with its options validated into its config dataclass.

    Args:
        name: a registered name (``uncertainty``) or an import path ``package.module:Class``.
        tasks: the task names, in task order.
        options: the weighting's options (``multitask.weighting.options``); None means defaults.

    Raises:
        ConfigError: unknown weighting (listing the known ones), bad options (naming the
            allowed keys), no tasks, or member-specific checks.
    """
    cls = WEIGHTINGS.get(name, field=NAME_FIELD)
    config = build_options(cls.options_class, options, name=getattr(cls, "registry_name", name), kind="loss weighting",
                           field=OPTIONS_FIELD)
    return cls(tasks, config)


__all__ = [
    "WEIGHTINGS",
    "DWAWeighting",
    "DWAWeightingConfig",
    "EqualWeighting",
    "EqualWeightingConfig",
    "GradNormWeighting",
    "GradNormWeightingConfig",
    "LossWeighting",
    "StaticWeighting",
    "StaticWeightingConfig",
    "UncertaintyWeighting",
    "UncertaintyWeightingConfig",
    "build_weighting",
]
