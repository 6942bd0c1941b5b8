"""A study's scores as a tidy table: one row per (target, arm, budget, seed, task, split, metric).

Dev scores are those of the best checkpoint (the one kept by the selection metric); test
scores are the best checkpoint's on the test split. ``primary`` marks the rows the study
compares: the target task, the study's metric, the study's split.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from polytask import runs
from polytask.errors import CheckpointError
from polytask.study.runner import PLAN_FILE, cell_status
from polytask.training import checkpoint as ckpt

COLUMNS = [
    "target", "arm", "budget", "n_train", "seed", "task", "split", "metric", "value", "primary",
    "steps", "best_step", "seconds", "examples_per_second", "run_dir",
]


def read_plan(study_dir: str | Path) -> dict[str, Any]:
    """The study's ``plan.json`` (written by ``polytask compare`` before any run)."""
    path = Path(study_dir) / PLAN_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{study_dir}: not a study folder (no {PLAN_FILE}); run `polytask compare STUDY.yaml` first"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def cell_rows(study_dir: Path, plan: dict[str, Any], cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The tidy rows of one finished cell (none when it has not finished)."""
    run_dir = study_dir / cell["run_dir"]
    if cell_status(run_dir) != "done":
        return []
    results = json.loads((run_dir / runs.RESULTS_FILE).read_text(encoding="utf-8"))
    best = runs.existing_checkpoint(run_dir, "best")
    dev = ckpt.load_meta(best).get("metrics", {}) if best is not None else results.get("dev", {})
    target = cell["target"]
    common = {
        "target": target, "arm": cell["arm"], "budget": cell["budget"], "n_train": cell["n_train"],
        "seed": cell["seed"], "steps": results.get("steps"), "best_step": results.get("best_step"),
        "seconds": round(float(results.get("seconds", 0.0)), 3),
        "examples_per_second": round(float(results.get("examples_per_second", 0.0)), 3),
        "run_dir": cell["run_dir"],
    }
    rows = []
    for split, metrics in (("dev", dev), ("test", results.get("test", {}))):
        for key, value in metrics.items():
            task, sep, metric = key.partition("/")
            if not sep or not isinstance(value, (int, float)):
                continue  # "average" and non-numeric entries
            primary = task == target and metric == plan["metric"][target] and split == plan["split"][target]
            rows.append({**common, "task": task, "split": split, "metric": metric, "value": float(value),
                         "primary": primary})
    return rows


def collect_rows(study_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished cell's rows, in grid order."""
    study_dir = Path(study_dir)
    plan = read_plan(study_dir)
    rows: list[dict[str, Any]] = []
    for cell in plan["cells"]:
        rows.extend(cell_rows(study_dir, plan, cell))
    return rows


def write_results(study_dir: str | Path, rows: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.jsonl`` in the study folder; return their paths."""
    study_dir = Path(study_dir)
    rows = collect_rows(study_dir) if rows is None else rows
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, jsonl_path = study_dir / "results.csv", study_dir / "results.jsonl"
    _write_text(csv_path, buf.getvalue())
    _write_text(jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
    return csv_path, jsonl_path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
