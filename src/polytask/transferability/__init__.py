"""Transferability estimates: which source will help a target, from frozen features, in seconds.

Importing this package registers every estimate (``logme``, ``leep``, ``hscore``, ``knn``,
``logistic``); ``transferability`` ranks candidate sources on a target, ``task_partners`` the
tasks of a multi-task experiment. See docs/transferability.md.
"""

from __future__ import annotations

import sys
import types

from polytask.transferability import hscore, leep, logme, probe  # noqa: F401 (registration)
from polytask.transferability.base import ESTIMATORS, Estimator, TargetFeatures
from polytask.transferability.ranking import (
    EstimateResult,
    SourceResult,
    TransferabilityResult,
    task_partners,
    transferability,
)


class _CallableModule(types.ModuleType):
    """This package, callable as ``polytask.transferability(...)``.

    ``polytask.transferability`` is both this package and the library call exported from
    ``polytask``; importing the package replaces the ``polytask`` attribute with the module (Python
    sets a package's attribute to each submodule it loads), so the module itself must be callable.
    """

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        return transferability(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = [
    "ESTIMATORS",
    "EstimateResult",
    "Estimator",
    "SourceResult",
    "TargetFeatures",
    "TransferabilityResult",
    "task_partners",
    "transferability",
]
