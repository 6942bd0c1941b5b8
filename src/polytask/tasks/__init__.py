"""Task types: what a head predicts, its loss, collation, decoding and metrics.

Importing this package imports every member module, so each registers itself in ``TASKS``;
a third-party task is named by import path (``my_pkg.tasks:MyTask``) in ``tasks.<name>.type``.
"""

from __future__ import annotations

from polytask.config.schema import TaskConfig
from polytask.registry import import_members
from polytask.tasks.base import TASKS, Task
from polytask.tasks.classification import ClassificationTask, ClassificationTaskConfig
from polytask.tasks.extractive_qa import ExtractiveQATask, ExtractiveQATaskConfig
from polytask.tasks.multilabel import MultilabelTask, MultilabelTaskConfig
from polytask.tasks.regression import RegressionTask, RegressionTaskConfig
from polytask.tasks.token_classification import (
    TokenClassificationTask,
    TokenClassificationTaskConfig,
)

import_members(__name__, __path__)


def build_task(config: TaskConfig, max_length: int) -> Task:
    """The task named by ``config.type``, built from its config block.

    Args:
        config: the task's config block.
        max_length: the experiment's ``train.max_length``, used when the task sets none.
    Raises:
        ConfigError: unknown type (listing the known ones) or bad options.
    """
    cls = TASKS.get(config.type, field=f"tasks.{config.name}.type")
    return cls(config, max_length)


__all__ = [
    "TASKS",
    "ClassificationTask",
    "ClassificationTaskConfig",
    "ExtractiveQATask",
    "ExtractiveQATaskConfig",
    "MultilabelTask",
    "MultilabelTaskConfig",
    "RegressionTask",
    "RegressionTaskConfig",
    "Task",
    "TokenClassificationTask",
    "TokenClassificationTaskConfig",
    "build_task",
]
