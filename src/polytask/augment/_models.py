"""Finding and loading the Hugging Face model folders the model-based members use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polytask.errors import ConfigError


def is_polytask_run(path: Path) -> bool:
    """A polytask training run folder (its resolved config and checkpoints)."""
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def run_task_types(path: Path) -> list[str]:
    """``name (type)`` of each task of the polytask run at ``path``."""
    import yaml

    raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    return [f"{t.get('name')} ({t.get('type')})" for t in raw.get("tasks", []) if isinstance(t, dict)]


def read_hf_config(path: Path, field: str) -> dict[str, Any]:
    """The ``config.json`` of a transformers folder, or ConfigError naming the field."""
    file = path / "config.json"
    if not path.is_dir():
        raise ConfigError(f"model folder {str(path)!r} does not exist", field=field)
    if not file.is_file():
        raise ConfigError(f"{str(path)!r} is not a transformers model folder (it has no config.json)", field=field)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})", field=field) from None


def describe(config: dict[str, Any]) -> str:
    """``BertForMaskedLM (model_type bert)`` for messages."""
    arch = ", ".join(config.get("architectures") or []) or "no architecture named"
    return f"{arch} (model_type {config.get('model_type', '?')})"
