"""``wandb``: a run logged to Weights & Biases, offline by default (synced later with ``wandb sync``).

Weights & Biases (Biewald 2020, "Experiment Tracking with Weights and Biases",
https://www.wandb.com/) is optional and never installed by polytask. Without ``WANDB_MODE`` set,
runs are written offline under ``<run>/wandb`` so training never waits on a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.callbacks.base import CALLBACKS, Callback, numeric
from polytask.tracking import TrackingError


@dataclass
class WandbOptions:
    """Options of ``wandb``.

    Args:
        project: the W&B project (default ``$WANDB_PROJECT``, else the config's name).
        mode: ``offline`` (default, unless ``$WANDB_MODE`` says otherwise), ``online`` or ``disabled``.
    """

    project: str | None = None
    mode: str | None = None


@CALLBACKS.register("wandb")
class WandbCallback(Callback):
    """The config, ``train/*`` and ``dev/*`` per step, ``test/*`` in the summary.

    Args:
        run_dir: the run directory (W&B files go in ``<run>/wandb``).
        cfg: the experiment config.
        options: project and mode.
    """

    def __init__(self, run_dir: Path, cfg: Any, options: WandbOptions | None = None):
        try:
            import wandb
        except ImportError:
            raise TrackingError(
                "train.report_to names wandb, which is not installed: pip install wandb, or remove "
                "wandb from train.report_to"
            ) from None
        opts = options or WandbOptions()
        mode = opts.mode or os.environ.get("WANDB_MODE") or "offline"
        config = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else None
        project = opts.project or os.environ.get("WANDB_PROJECT") or getattr(cfg, "name", None) or "polytask"
        self.run = wandb.init(project=project, name=Path(run_dir).name, dir=str(run_dir), mode=mode,
                              config=config, reinit=True)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        self.run.log({f"train/{k}": v for k, v in numeric(record).items() if k not in ("step", "epoch", "time")}, step=step)

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log({f"dev/{k}": v for k, v in numeric(metrics).items()}, step=step)

    def on_end(self, result: Any) -> None:
        for k, v in numeric(getattr(result, "test", {}) or {}).items():
            self.run.summary[f"test/{k}"] = v
        self.run.finish(exit_code=1 if getattr(result, "interrupted", False) else 0)
