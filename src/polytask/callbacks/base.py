"""Callback family: code the training loop calls as it logs, evaluates, saves and ends.

A callback subclasses ``Callback`` and overrides what it needs (every method is a no-op by
default). ``on_evaluate`` may return True to ask the run to stop (a hyper-parameter search
pruning a poor trial); the run then ends as an early stop. Trackers (``tensorboard``, ``mlflow``,
``wandb``) are callbacks registered by name in ``CALLBACKS``, so ``train.report_to: [mlflow]``
builds them (``build_callbacks``); users pass their own objects to ``train(cfg, callbacks=[...])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask.errors import ConfigError
from polytask.registry import Registry
from polytask.tracking import TrackingError

__all__ = ["CALLBACKS", "Callback", "CallbackList", "TrackingError", "build_callbacks"]


class Callback:
    """Hooks of a training run; override the ones you need.

    Dictionaries passed in are the loop's own records: read them, do not change them.
    """

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        """A training log line (every ``train.log_every`` steps): loss, lr, examples/s."""

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> bool | None:
        """A dev evaluation (``task/metric`` keys, plus the selection metric). Return True to ask
        the run to stop after this evaluation."""
        return None

    def on_save(self, step: int, path: Path) -> None:
        """A checkpoint was written to ``path``."""

    def on_end(self, result: Any) -> None:
        """The run finished, stopped or was interrupted (``result``: the ``TrainResult``)."""


class CallbackList(Callback):
    """Several callbacks called in order; ``on_evaluate`` asks to stop when any of them does.

    A failing tracker must not lose a training run: ``on_end`` is called on every callback even
    when one raises, and the first error is raised after.
    """

    def __init__(self, callbacks: list[Callback] | None = None):
        self.callbacks = list(callbacks or [])

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_log(step, record)

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> bool:
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_evaluate(step, metrics)) or stop  # every callback sees every evaluation
        return stop

    def on_save(self, step: int, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_save(step, path)

    def on_end(self, result: Any) -> None:
        error: Exception | None = None
        for cb in self.callbacks:
            try:
                cb.on_end(result)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others ran
                error = error or exc
        if error is not None:
            raise error


CALLBACKS: Registry[Callback] = Registry("tracker")
"""Trackers by name (``train.report_to``); each is built as ``cls(run_dir, cfg)``."""


def build_callbacks(names: list[str] | None, run_dir: str | Path, cfg: Any) -> list[Callback]:
    """The trackers named in ``train.report_to``, in order.

    Args:
        names: tracker names (``tensorboard``, ``mlflow``, ``wandb``); None or [] for none.
        run_dir: the run directory (trackers write their files under it unless configured).
        cfg: the experiment config (logged as the run's parameters).
    Raises:
        ConfigError: an unknown or repeated name (listing the known ones).
        TrackingError: a tracker's package is not installed.
    """
    # The members register themselves on import.
    from polytask.callbacks import mlflow, tensorboard, wandb  # noqa: F401

    out: list[Callback] = []
    seen: set[str] = set()
    for name in names or []:
        if name in seen:
            raise ConfigError(f"tracker {name!r} is named twice; name each once", field="train.report_to")
        seen.add(name)
        cls = CALLBACKS.get(name, field="train.report_to")
        out.append(cls(Path(run_dir), cfg))
    return out


def config_params(cfg: Any) -> dict[str, str]:
    """The config as flat ``{"train.lr": "5e-05"}`` strings (tracker parameters)."""
    from polytask.tracking import flatten

    raw = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(cfg or {})
    return flatten(raw)


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record (trackers take scalars only)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v == v and abs(v) != float("inf"):
            out[k] = float(v)
    return out
