"""Refinement per task: after the joint multi-task run, fine-tune each task alone from its encoder.

MT-DNN (Liu, He, Chen & Gao, "Multi-Task Deep Neural Networks for Natural Language
Understanding", ACL 2019, https://arxiv.org/abs/1901.11504) trains one model on every task, then
fine-tunes a copy per task starting from the shared encoder; the multi-task phase is a
representation for the per-task phase to start from (+2.2 GLUE points over BERT in the paper).

``multitask.refine: true`` does that after ``train``: for each task a one-task run whose encoder
is the joint run's best checkpoint (``transfer.init_from`` of the joint run folder; the task's
head starts afresh, as a new task head does from any ``init_from`` run), the same ``train``
settings, written to ``<run>/refine/<task>/``. Both the joint and the refined scores are reported
(``TrainResult.refined``, ``<run>/refine/results.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask.config.schema import ExperimentConfig, MultitaskConfig
from polytask.io import write_json

REFINE_DIR = "refine"


def refine_config(cfg: ExperimentConfig, task: str, joint_run: Path) -> ExperimentConfig:
    """The one-task experiment that refines ``task`` from the joint run's encoder."""
    tcfg = next(t for t in cfg.tasks if t.name == task)
    transfer = cfg.transfer.model_copy(update={"init_from": str(joint_run)})
    train = cfg.train.model_copy(update={"metric": None})
    return cfg.model_copy(update={"name": f"{cfg.name}-refine-{task}", "tasks": [tcfg], "transfer": transfer,
                                  "multitask": MultitaskConfig(), "train": train,
                                  "output_dir": str(joint_run / REFINE_DIR / task)})


def refine(cfg: ExperimentConfig, joint_run: Path, callbacks: list[Any] | None = None) -> dict[str, dict[str, Any]]:
    """Fine-tune every task of ``cfg`` alone from the finished joint run in ``joint_run``.

    Args:
        cfg: the joint experiment (its tasks and train settings).
        joint_run: the joint run's folder (its best checkpoint is the starting encoder).
        callbacks: passed to each refinement run.

    Returns:
        task -> ``{"run_dir", "metric", "best_metric", "dev", "test", "seconds"}`` of its refinement.
    """
    from polytask.training.loop import train

    out: dict[str, dict[str, Any]] = {}
    for tcfg in cfg.tasks:
        sub = refine_config(cfg, tcfg.name, joint_run)
        result = train(sub, output_dir=sub.output_dir, overwrite=True, callbacks=callbacks)
        out[tcfg.name] = {"run_dir": str(result.run_dir), "metric": result.metric, "best_metric": result.best_metric,
                          "dev": result.dev, "test": result.test, "seconds": result.seconds}
    write_json(joint_run / REFINE_DIR / "results.json", out)
    return out
