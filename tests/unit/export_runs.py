"""Tiny trained runs for the export and predict tests: every task type, one or several tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polytask.config.loader import parse_config
from tests.unit.toy import toy_texts, write_toy_jsonl, write_toy_ner


def write_all_task_data(directory: Path) -> dict[str, dict[str, str]]:
    """train/dev files for classification, multilabel, regression and NER on the toy texts."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, dict[str, str]] = {"sent": write_toy_jsonl(directory / "sent"), "ner": write_toy_ner(directory / "ner")}
    for name in ("tags", "score"):
        paths[name] = {}
        for split, n, seed in (("train", 48, 1), ("dev", 16, 2)):
            rows = []
            for text, label in toy_texts(n, seed):
                if name == "tags":
                    y: Any = [label] + (["long"] if len(text.split()) > 5 else [])
                else:
                    y = float(len(text.split())) / 4
                rows.append(json.dumps({"text": text, "label": y}))
            p = directory / f"{name}_{split}.jsonl"
            p.write_text("\n".join(rows) + "\n")
            paths[name][split] = str(p)
    return paths


TYPES = {"sent": "classification", "tags": "multilabel", "score": "regression", "ner": "token_classification"}


def train_run(encoder_dir: Path, data: dict[str, dict[str, str]], out: Path, tasks: list[str], **extra: Any) -> Path:
    """Train a 1-epoch run of ``tasks`` (names of ``TYPES``) into ``out``."""
    from polytask.training.loop import train

    raw = {
        "name": "toy",
        "encoder": {"name_or_path": str(encoder_dir), "dropout": 0.1, **extra.pop("encoder", {})},
        "tasks": [
            {"name": n, "type": TYPES[n], "data": {**data[n], **({"format": "conll"} if n == "ner" else {})}}
            for n in tasks
        ],
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "seed": 0, "progress": False,
                  "eval_batch_size": 16, **extra},
    }
    train(parse_config(raw), output_dir=out)
    return out
