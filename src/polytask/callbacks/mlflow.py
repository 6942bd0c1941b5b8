"""``mlflow``: parameters, metrics per step and the final files of a run, sent to MLflow live.

MLflow (Zaharia et al. 2018, "Accelerating the Machine Learning Lifecycle with MLflow", IEEE Data
Eng. Bull.) stores runs in a local database (the default here: ``./mlflow.db``, SQLite, with
artefacts in ``./mlartifacts``; no server needed) or on a tracking server
(``MLFLOW_TRACKING_URI``); ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` browses them. The package is optional:
``pip install 'polytask[tracking]'``. ``polytask.tracking.mlflow_log_run`` sends a finished run
after the fact instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.callbacks.base import CALLBACKS, Callback, config_params, numeric
from polytask.tracking import TrackingError

MAX_PARAM = 500  # MLflow caps a parameter value at 500 characters
BATCH = 100  # MLflow takes at most 100 parameters per log_batch call


@dataclass
class MLflowOptions:
    """Options of ``mlflow``.

    Args:
        tracking_uri: the store (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///./mlflow.db``
            made absolute: MLflow 3 keeps its old folder store read-mostly).
        experiment: the MLflow experiment (default ``$MLFLOW_EXPERIMENT_NAME``, else the config's name).
    """

    tracking_uri: str | None = None
    experiment: str | None = None


def default_uri() -> str:
    """``sqlite:///<cwd>/mlflow.db``: MLflow's own default local store, as an absolute path."""
    return "sqlite:///" + str(Path("mlflow.db").resolve())


def _artifacts_for(uri: str) -> str | None:
    """Artefacts next to a SQLite store (``mlartifacts/``); None lets other stores decide."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def _client(uri: str) -> Any:
    try:
        import mlflow  # noqa: F401 - first, so a missing package is reported as one
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError(
            "train.report_to names mlflow, which is not installed: pip install 'polytask[tracking]' "
            "(or pip install mlflow), or remove mlflow from train.report_to"
        ) from None
    return MlflowClient(tracking_uri=uri)


@CALLBACKS.register("mlflow")
class MLflowCallback(Callback):
    """One MLflow run per polytask run: the config as parameters, ``train/*`` and ``dev/*``
    metrics with their steps, ``test/*`` at the end, and ``config.yaml``, ``results.json`` and
    ``metrics.jsonl`` as artefacts. The run ends FINISHED, or KILLED when interrupted.

    Args:
        run_dir: the run directory (its name is the MLflow run's name).
        cfg: the experiment config.
        options: the store and experiment.
    """

    def __init__(self, run_dir: Path, cfg: Any, options: MLflowOptions | None = None):
        opts = options or MLflowOptions()
        uri = opts.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
        self.run_dir = Path(run_dir)
        self.client = _client(uri)
        name = opts.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or getattr(cfg, "name", None) or "polytask"
        try:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                exp_id = found.experiment_id
            else:
                exp_id = self.client.create_experiment(name, artifact_location=_artifacts_for(uri))
            self.run_id = self.client.create_run(
                exp_id, run_name=self.run_dir.name, tags={"polytask.run_dir": str(self.run_dir.resolve())}
            ).info.run_id
            if cfg is not None:
                from mlflow.entities import Param

                params = [Param(k, v[:MAX_PARAM]) for k, v in config_params(cfg).items()]
                for i in range(0, len(params), BATCH):
                    self.client.log_batch(self.run_id, params=params[i : i + BATCH])
        except Exception as exc:  # MlflowException, SQL errors, HTTP errors: one clear message
            raise TrackingError(f"MLflow store {uri} refused the run: {exc}") from exc

    def _metrics(self, prefix: str, values: dict[str, Any], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}/{k}", v, now, step) for k, v in numeric(values).items()
                   if k not in ("step", "epoch", "time")]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        self._metrics("train", record, step)

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self._metrics("dev", metrics, step)

    def on_end(self, result: Any) -> None:
        step = int(getattr(result, "steps", 0) or 0)
        self._metrics("test", getattr(result, "test", {}) or {}, step)
        best = getattr(result, "best_metric", None)
        if isinstance(best, (int, float)):
            self._metrics("best", {str(getattr(result, "metric", "metric")): best}, step)
        for name in ("config.yaml", "results.json", "metrics.jsonl"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        status = "KILLED" if getattr(result, "interrupted", False) else "FINISHED"
        self.client.set_terminated(self.run_id, status=status)
