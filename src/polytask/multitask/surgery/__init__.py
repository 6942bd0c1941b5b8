"""Gradient surgeries: how a step's per-task gradients of the shared parameters become one.

Importing this package imports every member module, so each registers itself in
``SURGERIES``; a third-party surgery is named by import path (``my_pkg.surgery:MySurgery``)
and must set ``options_class`` to its options dataclass.
"""

from __future__ import annotations

from typing import Any

from polytask.multitask.surgery.base import (
    NAME_FIELD,
    OPTIONS_FIELD,
    SURGERIES,
    GradientSurgery,
    assign_grads,
    flatten_grads,
)
from polytask.multitask.surgery.cagrad import CAGrad, CAGradConfig
from polytask.multitask.surgery.pcgrad import PCGrad, PCGradConfig
from polytask.options import build_options
from polytask.registry import import_members

import_members(__name__, __path__)


def build_surgery(name: str, options: dict[str, Any] | None = None) -> GradientSurgery:
    """The gradient surgery called ``name``, with its options validated into its config dataclass.

    Args:
        name: a registered name (``pcgrad``) or an import path ``package.module:Class``.
        options: the surgery's options (``multitask.surgery.options``); None means defaults.

    Raises:
        ConfigError: unknown surgery (listing the known ones) or bad options (naming the
            allowed keys).
    """
    cls = SURGERIES.get(name, field=NAME_FIELD)
    config = build_options(cls.options_class, options, name=getattr(cls, "registry_name", name),
                           kind="gradient surgery", field=OPTIONS_FIELD)
    return cls(config)


__all__ = [
    "SURGERIES",
    "CAGrad",
    "CAGradConfig",
    "GradientSurgery",
    "PCGrad",
    "PCGradConfig",
    "assign_grads",
    "build_surgery",
    "flatten_grads",
]
