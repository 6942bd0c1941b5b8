"""CoNLL-2003 NER with all-MiniLM-L6-v2: one epoch on the first 2,000 training sentences,
entity-level F1 (seqeval) on the full dev set (3,250 sentences).

Run: .venv/bin/python bench/conll_ner.py [--sentences 2000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "conll2003"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--lr", type=float, default=3e-4)  # best of 1e-4, 3e-4, 5e-4 on one seed (BENCHMARKS.md)
    args = ap.parse_args()
    from polytask.config import parse_config
    from polytask.training.loop import train

    # One epoch over 2,000 sentences = ceil(2000 / 16) optimizer steps over the seeded shuffled
    # training set: a random 2,000-sentence subset, each seen once, with the full dev set kept.
    steps = -(-args.sentences * args.epochs // 16)
    raw = {
        "name": "bench_conll",
        "tasks": [{"name": "ner", "type": "token_classification",
                   "data": {"train": str(DATA / "train.txt"), "dev": str(DATA / "valid.txt"), "format": "conll"}}],
        "train": {"max_steps": int(steps), "batch_size": 16, "lr": args.lr, "max_length": 128, "seed": 42,
                  "progress": False},
    }
    t0 = time.perf_counter()
    res = train(parse_config(raw), output_dir=REPO / "bench/results/conll_run", overwrite=True)
    wall = time.perf_counter() - t0
    out = {"train_sentences": args.sentences, "epochs": args.epochs, "dev": res.dev, "wall_s": wall,
           "train_examples_per_s": res.examples_per_second}
    (REPO / "bench/results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench/results/conll.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
