"""``tensorboard``: scalars of a run as TensorBoard event files, written while it trains.

TensorBoard is the visualisation tool of TensorFlow (Abadi et al. 2016, "TensorFlow: A System for
Large-Scale Machine Learning", OSDI); the files are written with PyTorch's ``SummaryWriter``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.callbacks.base import CALLBACKS, Callback, numeric


@dataclass
class TensorBoardOptions:
    """Options of ``tensorboard``.

    Args:
        log_dir: where the event files go (default ``$POLYTASK_TENSORBOARD_DIR``, else ``<run>/tb``).
    """

    log_dir: str | None = None


@CALLBACKS.register("tensorboard")
class TensorBoardCallback(Callback):
    """Train records as ``train/<key>``, evaluations as ``dev/<key>``, test metrics as ``test/<key>``
    and the config as text.

    Args:
        run_dir: the run directory.
        cfg: the experiment config (written as the ``config`` text).
        options: where to write.
    """

    def __init__(self, run_dir: Path, cfg: Any, options: TensorBoardOptions | None = None):
        from torch.utils.tensorboard import SummaryWriter

        opts = options or TensorBoardOptions()
        log_dir = opts.log_dir or os.environ.get("POLYTASK_TENSORBOARD_DIR") or str(Path(run_dir) / "tb")
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        if cfg is not None and hasattr(cfg, "model_dump"):
            from polytask.config.loader import dump_config

            self.writer.add_text("config", "```yaml\n" + dump_config(cfg) + "\n```", 0)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        for k, v in numeric(record).items():
            if k not in ("step", "epoch", "time"):
                self.writer.add_scalar(f"train/{k}", v, step)

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in numeric(metrics).items():
            self.writer.add_scalar(f"dev/{k}", v, step)

    def on_end(self, result: Any) -> None:
        step = int(getattr(result, "steps", 0) or 0)
        for k, v in numeric(getattr(result, "test", {}) or {}).items():
            self.writer.add_scalar(f"test/{k}", v, step)
        self.writer.close()
