"""Run logs: metrics as JSONL and TensorBoard events in the run directory, and a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class MetricsLogger:
    """Appends ``{"split", "step", "epoch", "time", metrics...}`` lines to ``metrics.jsonl`` and
    mirrors scalars to TensorBoard (``<run>/tb``).

    Args:
        run_dir: the run directory.
        enabled: False on non-main processes.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"  # runs.METRICS_FILE (runs imports this layer)
        self._tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is a core dependency; tolerate its absence anyway
                self._tb = None

    def log(self, split: str, step: int, epoch: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"split": split, "step": step, "epoch": epoch, "time": time.time(), **metrics}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A rich progress bar over optimizer steps with loss, examples/s and ETA.

    Args:
        total: total optimizer steps.
        enabled: draw it (main process, ``train.progress``).
        start: steps already done (resume).
    """

    def __init__(self, total: int, enabled: bool = True, start: int = 0, epoch: int = 1):
        self.enabled = enabled
        self.total = total
        self.console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:.1f} ex/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self._task = self._bar.add_task("train", total=total, completed=start, loss=float("nan"), speed=0.0, epoch=epoch)

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def update(self, step: int, loss: float, speed: float, epoch: int) -> None:
        self._bar.update(self._task, completed=step, loss=loss, speed=speed, epoch=epoch)

    def note(self, text: str) -> None:
        if self.enabled:
            self._bar.console.print(text)
