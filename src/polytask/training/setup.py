"""From a config to tasks with checked data: everything that can fail on bad input, done first."""

from __future__ import annotations

from dataclasses import dataclass

from polytask.config.schema import ExperimentConfig
from polytask.data.example import Example
from polytask.data.loading import load_splits
from polytask.tasks import build_task
from polytask.tasks.base import Task


@dataclass
class TaskData:
    task: Task
    splits: dict[str, list[Example]]  # "train", "dev", optionally "test"


def prepare_tasks(cfg: ExperimentConfig, states: dict[str, dict] | None = None) -> dict[str, TaskData]:
    """Read every task's data, fix label sets and check every split before any model loads.

    Args:
        cfg: the experiment.
        states: task states (label sets) from a checkpoint; label sets are fitted on the training
            data when absent.
    """
    out: dict[str, TaskData] = {}
    for tcfg in cfg.tasks:
        task = build_task(tcfg, cfg.train.max_length)
        splits = load_splits(tcfg.data, token_level=task.token_level)
        if states is None:
            task.fit_labels(splits["train"])
        else:
            task.load_state(states[tcfg.name])
        for split, examples in splits.items():
            task.check(examples, split)
        out[tcfg.name] = TaskData(task, splits)
    return out
