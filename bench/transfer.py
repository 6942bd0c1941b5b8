"""Does transfer help, and by how much? Three measurements on real data from ../shared/data.

1. IMDB -> AG News, BiLSTM over GloVe 6B 50d: AG News accuracy with 100 and 1000 labelled
   examples, trained from scratch (GloVe start) vs ``transfer.init_from`` a BiLSTM first trained
   on IMDB sentiment. Both arms share the vocabulary recipe (training words + the 50k most frequent
   GloVe words), so the IMDB encoder fits the target.
2. Amazon reviews, books -> kitchen and dvd -> electronics, packaged all-MiniLM-L6-v2: target
   accuracy with 100 labelled target reviews, starting from the untouched MiniLM vs from MiniLM
   fine-tuned on all 2,000 source-domain reviews (``init_from``).
3. SST-2 with 8, 16 and 64 labels per class, MiniLM: ``full``, ``freeze``, ``lora`` and
   ``contrastive_few_shot`` (+ ``freeze`` for the head), as SetFit does.

No model selection on the evaluation data: every target run trains a fixed recipe and is scored
once, at its last step, on a held-out set (AG News: 2,000 of its test set; Amazon: the target
domain's reviews not drawn for training, 1,000; SST-2: the 872 dev sentences). Label budgets are
stratified and drawn per seed (``polytask.study.budgets``); source runs are trained once (seed 1).

Run: .venv/bin/python bench/transfer.py [--seeds 1 2 3] [--parts imdb_ag amazon sst2] [--quick]
Writes bench/results/transfer-<cpu|gpu>[-<parts>].json and prints the Markdown tables for
BENCHMARKS.md; ``--merge A.json B.json`` prints the tables of parts that ran as separate processes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data"))
NEVER = 10**9  # eval_every: score once, at the last step (no selection on the evaluation set)

BILSTM = {"type": "bilstm", "pooling": "max", "dropout": 0.3,
          "options": {"vectors": "glove-6b-50d", "vocab_from_vectors": True, "max_vocab": 50000,
                      "lowercase": True, "embedding_dropout": 0.2}}
BILSTM_TRAIN = {"batch_size": 32, "lr": 2e-3, "warmup_ratio": 0.0, "weight_decay": 0.0, "max_length": 128}
MINILM_TRAIN = {"batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.1, "max_length": 128}


# --- data ----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n")
    return str(path)


def budget(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """The first ``n`` of a seeded order whose every prefix is stratified by label."""
    from polytask.study.budgets import stratified_order

    order = stratified_order([r["label"] for r in rows], seed)
    return [rows[i] for i in order[:n]]


def per_class(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    from polytask.study.budgets import per_class_order

    by_class = per_class_order([r["label"] for r in rows], seed)
    return [rows[i] for c in sorted(by_class) for i in by_class[c][:k]]


def imdb(limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in open(DATA / "imdb/train.jsonl", encoding="utf-8")]
    for r in rows:
        r["text"] = r["text"].replace("<br />", " ")
    return budget(rows, limit, 0)


def ag_news() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = []
    with open(DATA / "ag_news/alps_train_subset_10k.tsv", encoding="utf-8") as fh:
        for line in fh:
            text, _, label = line.rstrip("\n").rpartition("\t")
            if text:
                train.append({"text": text, "label": label})
    names = (DATA / "ag_news/classes.txt").read_text(encoding="utf-8").split()
    # The training subset holds descriptions only; the evaluation texts are descriptions too.
    with open(DATA / "ag_news/test.csv", encoding="utf-8", newline="") as fh:
        test = [{"text": desc.replace("\\", " "), "label": names[int(cls) - 1]} for cls, _title, desc in csv.reader(fh)]
    return train, budget(test, 2000, 0)


def amazon(domain: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in open(DATA / "amazon_multidomain/amazon_4domains.jsonl", encoding="utf-8")]
    return [{"text": f"{r['title']}. {r['text']}", "label": str(r["label"])} for r in rows if r["domain"] == domain]


def sst2(split: str) -> list[dict[str, Any]]:
    rows = []
    for line in open(DATA / f"sst2_sent/{split}.txt", encoding="utf-8"):
        label, _, text = line.strip().partition(" ")
        rows.append({"text": text, "label": label})
    return rows


# --- runs ----------------------------------------------------------------------------------


def run(name: str, work: Path, train_file: str, eval_file: str, encoder: dict | None, train: dict,
        transfer: dict | None = None) -> dict[str, Any]:
    from polytask.config import parse_config
    from polytask.training.loop import train as train_run

    raw: dict[str, Any] = {
        "name": name,
        "tasks": [{"name": "target", "type": "classification",
                   "data": {"train": train_file, "dev": eval_file, "format": "jsonl"}}],
        "train": {"progress": False, "eval_every": NEVER, **train},
    }
    if encoder:
        raw["encoder"] = encoder
    if transfer:
        raw["transfer"] = transfer
    t0 = time.perf_counter()
    result = train_run(parse_config(raw), output_dir=work / "runs" / name, overwrite=True)
    return {"accuracy": result.dev["target/accuracy"], "seconds": time.perf_counter() - t0, "steps": result.steps}


def part_imdb_ag(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    ag_train, ag_eval = ag_news()
    eval_file = write_jsonl(work / "data/ag_eval.jsonl", ag_eval)
    src_rows = imdb(args.imdb_source)
    # IMDB reviews are long: the source sees their first 256 tokens.
    source = run("imdb_bilstm", work, write_jsonl(work / "data/imdb_train.jsonl", src_rows),
                 write_jsonl(work / "data/imdb_dev.jsonl", imdb(args.imdb_source + 1000)[args.imdb_source:]),
                 BILSTM, {**BILSTM_TRAIN, "epochs": 3, "max_length": 256, "seed": 1})
    print(json.dumps({"part": "imdb_ag", "source": "imdb", "dev_accuracy": source["accuracy"],
                      "seconds": source["seconds"]}), flush=True)
    out = [{"part": "imdb_ag", "arm": "source_imdb", "budget": len(src_rows), "seed": 1, **source}]
    for n in args.ag_budgets:
        for seed in args.seeds:
            tr = write_jsonl(work / f"data/ag_{n}_{seed}.jsonl", budget(ag_train, n, seed))
            epochs = 30 if n <= 100 else 10
            for arm, transfer in (("scratch_glove", None), ("init_from_imdb", {"init_from": str(work / "runs/imdb_bilstm")})):
                r = run(f"ag_{arm}_{n}_{seed}", work, tr, eval_file, BILSTM,
                        {**BILSTM_TRAIN, "epochs": epochs, "seed": seed}, transfer)
                out.append({"part": "imdb_ag", "arm": arm, "budget": n, "seed": seed, **r})
                print(json.dumps(out[-1]), flush=True)
    return out


def part_amazon(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    out = []
    for src, tgt in (("books", "kitchen"), ("dvd", "electronics")):
        src_rows = amazon(src)
        src_order = budget(src_rows, len(src_rows), 0)
        src_train, src_dev = src_order[: args.amazon_source], src_order[-200:]
        source = run(f"amazon_{src}", work, write_jsonl(work / f"data/{src}_train.jsonl", src_train),
                     write_jsonl(work / f"data/{src}_dev.jsonl", src_dev), None,
                     {**MINILM_TRAIN, "batch_size": 32, "epochs": 1, "seed": 1})
        out.append({"part": "amazon", "arm": f"source_{src}", "pair": f"{src}->{tgt}",
                    "budget": len(src_train), "seed": 1, **source})
        print(json.dumps(out[-1]), flush=True)
        tgt_order = budget(amazon(tgt), 2000, 0)
        pool, held_out = tgt_order[:1000], tgt_order[1000:]
        eval_file = write_jsonl(work / f"data/{tgt}_eval.jsonl", held_out[: args.amazon_eval])
        for seed in args.seeds:
            tr = write_jsonl(work / f"data/{tgt}_{args.amazon_budget}_{seed}.jsonl", budget(pool, args.amazon_budget, seed))
            for arm, transfer in (("untouched_minilm", None), (f"{src}_trained_minilm", {"init_from": str(work / f"runs/amazon_{src}")})):
                r = run(f"{tgt}_{arm}_{seed}", work, tr, eval_file, None, {**MINILM_TRAIN, "epochs": 10, "seed": seed}, transfer)
                out.append({"part": "amazon", "arm": arm, "pair": f"{src}->{tgt}", "budget": args.amazon_budget,
                            "seed": seed, **r})
                print(json.dumps(out[-1]), flush=True)
    return out


SST2_ARMS: dict[str, tuple[dict, dict]] = {
    # (transfer, train overrides); 60 optimiser steps of 8 examples in every arm.
    "full": ({"strategy": "full"}, {"lr": 5e-5, "head_lr": 1e-3}),
    "freeze": ({"strategy": "freeze"}, {"head_lr": 1e-2}),
    "lora": ({"strategy": "lora"}, {"lr": 5e-4, "head_lr": 1e-3}),
    "contrastive_few_shot": (
        {"strategy": ["contrastive_few_shot", "freeze"],
         "options": {"contrastive_few_shot": {"num_iterations": 20, "max_pairs": 640, "batch_size": 16, "lr": 2e-5}}},
        {"head_lr": 1e-2},
    ),
}


def part_sst2(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    train_rows = sst2("train")
    eval_rows = sst2("dev")[: args.sst2_eval]
    eval_file = write_jsonl(work / "data/sst2_eval.jsonl", eval_rows)
    out = []
    for k in args.per_class:
        for seed in args.seeds:
            tr = write_jsonl(work / f"data/sst2_{k}_{seed}.jsonl", per_class(train_rows, k, seed))
            for arm, (transfer, overrides) in SST2_ARMS.items():
                train = {"batch_size": 8, "max_steps": args.sst2_steps, "warmup_ratio": 0.1, "max_length": 64,
                         "seed": seed, **overrides}
                r = run(f"sst2_{arm}_{k}_{seed}", work, tr, eval_file, None, train, transfer)
                out.append({"part": "sst2", "arm": arm, "budget": k, "seed": seed, **r})
                print(json.dumps(out[-1]), flush=True)
    return out


# --- tables ----------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def table(records: list[dict[str, Any]], part: str, key: str, baseline: str | None) -> str:
    recs = [r for r in records if r["part"] == part and not r["arm"].startswith("source_")]
    if not recs:
        return ""
    groups = sorted({r.get(key) for r in recs}, key=lambda v: (isinstance(v, str), v))
    arms = list(dict.fromkeys(r["arm"] for r in recs))
    lines = [f"| {key} | arm | accuracy (mean ± sd) | gain vs {baseline or '-'} (paired, mean ± sd, seeds better) | train s |",
             "|---|---|---|---|---|"]
    for g in groups:
        for arm in arms:
            rows = sorted((r for r in recs if r.get(key) == g and r["arm"] == arm), key=lambda r: r["seed"])
            if not rows:
                continue
            gain = "-"
            if baseline and arm != baseline:
                base = {r["seed"]: r["accuracy"] for r in recs if r.get(key) == g and r["arm"] == baseline}
                diffs = [r["accuracy"] - base[r["seed"]] for r in rows if r["seed"] in base]
                if diffs:
                    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                    won = sum(d > 0 for d in diffs)
                    gain = f"{statistics.mean(diffs):+.4f} ± {sd:.4f} ({won}/{len(diffs)})"
            lines.append(f"| {g} | {arm} | {ms([r['accuracy'] for r in rows])} | {gain} | "
                         f"{statistics.mean(r['seconds'] for r in rows):.0f} |")
    return "\n".join(lines)


def print_tables(records: list[dict[str, Any]]) -> dict[str, str]:
    tables = {
        "imdb_ag": table(records, "imdb_ag", "budget", "scratch_glove"),
        "amazon": "\n\n".join(t for t in (table([r for r in records if r.get("pair") == pair], "amazon", "pair",
                                                   "untouched_minilm")
                                             for pair in ("books->kitchen", "dvd->electronics")) if t),
        "sst2": table(records, "sst2", "budget", "freeze"),
    }
    for name, text in tables.items():
        if text:
            print(f"\n### {name}\n\n{text}")
    return tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--parts", nargs="+", default=["imdb_ag", "amazon", "sst2"])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, tiny sizes")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "runs" / "transfer")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                    help="print the tables of earlier result files together; runs nothing")
    args = ap.parse_args()
    if args.merge:
        merged = [r for f in args.merge for r in json.loads(f.read_text())["records"]]
        print_tables(merged)
        return
    args.imdb_source, args.ag_budgets = 5000, [100, 1000]
    args.amazon_source, args.amazon_budget, args.amazon_eval = 1800, 100, 1000
    args.per_class, args.sst2_steps, args.sst2_eval = [8, 16, 64], 60, 872
    if args.quick:
        args.seeds = args.seeds[:1]
        args.imdb_source, args.ag_budgets = 200, [20]
        args.amazon_source, args.amazon_budget, args.amazon_eval = 64, 20, 64
        args.per_class, args.sst2_steps, args.sst2_eval = [4], 4, 64

    import torch

    random.seed(0)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{platform.processor() or 'cpu'} ({os.cpu_count()} cores)"
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    parts = {"imdb_ag": part_imdb_ag, "amazon": part_amazon, "sst2": part_sst2}
    for p in args.parts:
        records += parts[p](args, args.work)
    tables = print_tables(records)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    if sorted(args.parts) != sorted(parts):
        tag += "-" + "-".join(args.parts)
    (out / f"transfer-{tag}{'-quick' if args.quick else ''}.json").write_text(json.dumps(
        {"device": device, "seconds": time.perf_counter() - t0,
         "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "records": records, "tables": tables}, indent=2))


if __name__ == "__main__":
    main()
