"""Toy data and configs for unit tests: separable enough for a tiny model to learn in seconds."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

POS = ["good", "great", "fun", "lovely", "superb", "happy", "brilliant", "nice"]
NEG = ["bad", "awful", "boring", "sad", "terrible", "poor", "dull", "ugly"]
FILL = ["the", "movie", "was", "a", "plot", "and", "film", "story"]


def toy_texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(POS if label == "pos" else NEG, 2) + rng.sample(FILL, rng.randint(1, 6))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_toy_jsonl(directory: Path, n_train: int = 64, n_dev: int = 32) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        p = directory / f"{split}.jsonl"
        p.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in toy_texts(n, seed)))
        paths[split] = str(p)
    return paths


def write_toy_ner(directory: Path) -> dict[str, str]:
    """CoNLL-style files: capitalised names from a fixed set are PER, the rest O."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ["Alice", "Bob", "Carol", "Dave"]
    paths = {}
    for split, n, seed in (("train", 48, 1), ("dev", 16, 2)):
        rng = random.Random(seed)
        lines = []
        for _ in range(n):
            words = rng.sample(FILL, 3)
            pos = rng.randint(0, 3)
            for j, w in enumerate(words[:pos] + [rng.choice(names)] + words[pos:]):
                lines.append(f"{w}\t{'B-PER' if j == pos else 'O'}")
            lines.append("")
        p = directory / f"{split}.conll"
        p.write_text("\n".join(lines) + "\n")
        paths[split] = str(p)
    return paths


def toy_config(encoder_dir: Path, data: dict[str, str], output_dir: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "toy",
        "output_dir": str(output_dir),
        "encoder": {"name_or_path": str(encoder_dir), "dropout": 0.1},
        "tasks": [{"name": "sent", "type": "classification", "data": {"train": data["train"], "dev": data["dev"]}}],
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "seed": 0, "progress": False,
                  "eval_batch_size": 16, **train},
    }
