"""Optional experiment tracking: copy a finished run into MLflow (``pip install 'polytask[tracking]'``).

Runs already keep everything on disk (``config.yaml``, ``metrics.jsonl``, ``results.json``,
TensorBoard events in ``tb/``); this module sends one run to an MLflow tracking store, by
default the local file store ``./mlruns`` (no server needed), so runs can be browsed with
``mlflow ui``. MLflow is not a dependency of polytask: it is imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from polytask import runs as layout
from polytask.errors import CheckpointError, PolytaskError


class TrackingError(PolytaskError):
    """The tracker is missing or refused the run."""


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise TrackingError(
            "MLflow tracking needs the mlflow package, which is not installed: "
            "pip install 'polytask[tracking]' (or pip install mlflow)"
        ) from None
    return mlflow


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"train.lr": "5e-05", "tasks.0.name": "sst2"}`` (MLflow params)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(obj) if not isinstance(obj, str) else obj
    return out


def mlflow_log_run(
    run_dir: str | Path,
    tracking_uri: str = "file:./mlruns",
    experiment: str | None = None,
) -> str:
    """Log a finished run's config (params), metrics (with their steps) and files to MLflow.

    Args:
        run_dir: a polytask run directory (with ``config.yaml`` and ``metrics.jsonl``).
        tracking_uri: where MLflow stores runs (default the local folder ``./mlruns``).
        experiment: MLflow experiment name (default: the run's ``name`` from its config).

    Returns:
        The MLflow run id.

    Raises:
        TrackingError: mlflow is not installed.
        CheckpointError: ``run_dir`` is not a run directory.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / layout.CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: not a polytask run directory (no config.yaml)")
    mlflow = _import_mlflow()
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    records = []
    metrics_path = run_dir / layout.METRICS_FILE
    if metrics_path.is_file():
        records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    results_path = run_dir / layout.RESULTS_FILE
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment or str(config.get("name", "polytask")))
    with mlflow.start_run(run_name=run_dir.name) as active:
        params = {k: v[:500] for k, v in flatten(config).items()}  # MLflow caps a param at 500 chars
        mlflow.log_params(params)
        mlflow.set_tag("polytask.run_dir", str(run_dir.resolve()))
        for rec in records:
            split, step = rec.get("split", "train"), int(rec.get("step", 0))
            for k, v in rec.items():
                if k in ("split", "step", "epoch", "time") or not isinstance(v, (int, float)):
                    continue
                mlflow.log_metric(f"{split}/{k}", float(v), step=step)
        for k, v in (results.get("test") or {}).items():
            mlflow.log_metric(f"test/{k}", float(v))
        if isinstance(results.get("best_metric"), (int, float)):
            mlflow.log_metric(f"best/{results.get('metric', 'metric')}", float(results["best_metric"]))
        for name in (layout.CONFIG_FILE, layout.RESULTS_FILE, layout.METRICS_FILE):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        return active.info.run_id


def find_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run directory under ``root`` (itself included), with its key facts, sorted by path.

    A run directory holds ``results.json`` or a ``checkpoints`` folder. Each entry: ``path``,
    ``tasks``, ``status`` (finished / interrupted / running or killed), ``steps``, ``metric``,
    ``best`` (best dev value of the selection metric), ``test`` (test metrics), ``seconds``.

    Raises:
        CheckpointError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such folder; give a folder holding run directories")
    candidates = {p.parent for p in root.rglob(layout.RESULTS_FILE)}
    candidates |= {p.parent for p in root.rglob(layout.CHECKPOINTS_DIR) if p.is_dir()}
    runs = []
    for run in sorted(candidates):
        if any(part == layout.CHECKPOINTS_DIR for part in run.relative_to(root).parts):
            continue  # inside a run's checkpoints
        info: dict[str, Any] = {"path": run, "tasks": [], "status": "running or killed", "steps": None,
                                "metric": None, "best": None, "test": {}, "seconds": None}
        cfg_path = run / layout.CONFIG_FILE
        if cfg_path.is_file():
            try:
                cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
                info["tasks"] = [t.get("name") for t in cfg.get("tasks", []) if isinstance(t, dict)]
            except yaml.YAMLError:
                pass
        res_path = run / layout.RESULTS_FILE
        if res_path.is_file():
            try:
                res = json.loads(res_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                res = {}
            info.update(status="interrupted" if res.get("interrupted") else "finished", steps=res.get("steps"),
                        metric=res.get("metric"), best=res.get("best_metric"), test=res.get("test") or {},
                        seconds=res.get("seconds"))
        runs.append(info)
    return runs
