"""Too little data: which remedy helps at 10, 50 and 200 labels per class, and by how much?

Datasets (../shared/data): SST-2 sentences (eval: the 872 dev sentences), AG News (train: the
10k subset; eval: 2,000 of its test set) and CoNLL-2003 NER (budgets in sentences; eval: 1,000
validation sentences). Encoders: the packaged all-MiniLM-L6-v2 and a BiLSTM over GloVe 6B 50d.
Arms:

- ``none``: the labelled budget only;
- ``eda``: ``tasks[].augment`` with the four EDA ops (alpha 0.1, p 0.5, 4 copies); for CoNLL
  the label-preserving ops (mention replacement, synonym replacement of ``O`` words);
- ``contextual``: ``contextual`` substitution with a masked LM given by ``--mlm`` (e.g. a
  ``polytask pretrain`` result on the pool; the packaged MiniLM has no MLM head), skipped without;
- ``self_training``: ``polytask self-train`` (2 rounds, threshold 0.9, at most ``budget`` new
  examples per class and round; CoNLL: sentences per most-mentioned entity type) on a pool =
  the rest of the training set, labels hidden;
- ``uda``: UDA consistency training on the pool (EDA ops make the copies; classification only);
- ``back_translation``: listed, skipped until a translation task (or an MT model folder) exists.

Every arm trains the same number of optimizer steps (so augmented copies add variety, not
updates) and is scored once, at its last step, on the evaluation set (no selection on it).
Budgets are stratified per seed (``polytask.study.budgets``). The augmentation arms need the
training loop to apply ``tasks[].augment``; until it does they are skipped with a note rather than
reported as equal to ``none``.

Run: .venv/bin/python bench/low_data.py [--seeds 1 2 3 4 5] [--datasets sst2 ag_news conll]
     [--encoders minilm bilstm] [--budgets 10 50 200] [--arms none eda contextual self_training]
     [--mlm PATH] [--quick]
Writes bench/results/low_data-<cpu|gpu>[-quick].json and prints one Markdown table per dataset
and encoder (mean ± sd over seeds, paired gain over ``none``) and the issue's targets at 10 labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data"))
NEVER = 10**9  # eval_every: score once, at the last step

BILSTM = {"type": "bilstm", "pooling": "max", "dropout": 0.3,
          "options": {"vectors": "glove-6b-50d", "vocab_from_vectors": True, "max_vocab": 50000,
                      "lowercase": True, "embedding_dropout": 0.2}}
ENCODERS = {
    "minilm": (None, {"batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.1, "max_length": 128}),
    "bilstm": (BILSTM, {"batch_size": 32, "lr": 2e-3, "warmup_ratio": 0.0, "weight_decay": 0.0, "max_length": 128}),
}
STEPS = {10: 100, 50: 200, 200: 400}  # optimizer steps per budget (labels per class), every arm
EDA_OPS = [{"type": "synonym_replacement", "alpha": 0.1}, {"type": "random_insertion", "alpha": 0.1},
           {"type": "random_swap", "alpha": 0.1}, {"type": "random_deletion", "alpha": 0.1}]
TOKEN_OPS = [{"type": "mention_replacement", "alpha": 0.3}, {"type": "synonym_replacement", "alpha": 0.1}]
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
TARGETS = {"bilstm": 0.05, "minilm": 0.03}  # the gain of the best arm over none at 10 labels


# --- data ----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict[str, Any]], labels: bool = True) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            rec = {"tokens" if isinstance(r["text"], list) else "text": r["text"]}
            if labels:
                rec["tags" if isinstance(r["text"], list) else "label"] = r["label"]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return str(path)


def sst2() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(split: str) -> list[dict[str, Any]]:
        rows = []
        for line in open(DATA / f"sst2_sent/{split}.txt", encoding="utf-8"):
            label, _, text = line.strip().partition(" ")
            rows.append({"text": text, "label": label})
        return rows

    return read("train"), read("dev")


def ag_news() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from polytask.study.budgets import stratified_order

    train = []
    for line in open(DATA / "ag_news/alps_train_subset_10k.tsv", encoding="utf-8"):
        text, _, label = line.rstrip("\n").rpartition("\t")
        if text:
            train.append({"text": text, "label": label})
    names = (DATA / "ag_news/classes.txt").read_text(encoding="utf-8").split()
    with open(DATA / "ag_news/test.csv", encoding="utf-8", newline="") as fh:
        test = [{"text": d.replace("\\", " "), "label": names[int(c) - 1]} for c, _t, d in csv.reader(fh)]
    order = stratified_order([r["label"] for r in test], 0)
    return train, [test[i] for i in order[:2000]]


def conll() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(name: str) -> list[dict[str, Any]]:
        rows, words, tags = [], [], []
        for line in open(DATA / f"conll2003/{name}", encoding="utf-8"):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    rows.append({"text": words, "label": tags})
                words, tags = [], []
                continue
            words.append(parts[0])
            tags.append(parts[-1])
        if words:
            rows.append({"text": words, "label": tags})
        return rows

    return read("train.txt"), read("valid.txt")[:1000]


DATASETS = {"sst2": sst2, "ag_news": ag_news, "conll": conll}


def draw(rows: list[dict[str, Any]], k: int, seed: int, token_level: bool) -> tuple[list[int], list[int]]:
    """(indices of the labelled budget, indices of the pool): ``k`` per class, or ``k`` sentences."""
    from polytask.study.budgets import per_class_order, stratified_order

    if token_level:
        order = stratified_order(["x"] * len(rows), seed)
        chosen = order[:k]
    else:
        by_class = per_class_order([r["label"] for r in rows], seed)
        chosen = [i for c in sorted(by_class) for i in by_class[c][:k]]
    taken = set(chosen)
    return chosen, [i for i in range(len(rows)) if i not in taken]


# --- runs ----------------------------------------------------------------------------------


def experiment(name: str, train_file: str, eval_file: str, token_level: bool, encoder: str, steps: int,
               seed: int, augment: dict | None = None, pool: str | None = None, uda: bool = False) -> dict[str, Any]:
    enc, train = ENCODERS[encoder]
    task: dict[str, Any] = {"name": "target", "type": "token_classification" if token_level else "classification",
                            "data": {"train": train_file, "dev": eval_file, "format": "jsonl"}}
    if token_level:  # a few sentences need not hold every tag the evaluation set has
        task["labels"] = CONLL_TAGS
    if augment:
        task["augment"] = augment
    if pool:
        task["unlabeled"] = {"path": pool, "format": "jsonl"}
        if uda:  # the paper's settings (ratio 3 here to bound CPU time)
            task["unlabeled"]["uda"] = {"weight": 1.0, "ratio": 3, "temperature": 0.4, "threshold": 0.8, "tsa": "linear"}
    raw: dict[str, Any] = {"name": name, "tasks": [task],
                           "train": {"progress": False, "eval_every": NEVER, "max_steps": steps, "seed": seed, **train}}
    if enc:
        raw["encoder"] = enc
    return raw


def run_arm(arm: str, raw: dict[str, Any], work: Path, metric: str, k: int) -> dict[str, Any]:
    from polytask.config import parse_config
    from polytask.procedures.self_training import self_train
    from polytask.training.loop import train

    t0 = time.perf_counter()
    out = work / raw["name"]
    if arm == "self_training":
        res = self_train(parse_config(raw), output_dir=out, rounds=2, threshold=0.9, per_class=k)
        last = res.rounds[-1]
        score = last.dev[metric]
        extra = {"rounds": len(res.rounds) - 1, "pseudo": last.pseudo_total, "stopped": res.stopped}
    else:
        score = train(parse_config(raw), output_dir=out, overwrite=True).dev[metric]
        extra = {}
    return {"score": score, "seconds": time.perf_counter() - t0, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--arms", nargs="+", default=["none", "eda", "contextual", "self_training", "uda", "back_translation"])
    ap.add_argument("--mlm", type=Path, help="masked LM folder for the contextual arm (e.g. a polytask pretrain result)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, budget 4, 4 steps, 64 eval examples")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "runs" / "low_data")
    args = ap.parse_args()
    steps_for = dict(STEPS)
    eval_limit = None
    if args.quick:
        args.seeds, args.budgets, eval_limit = args.seeds[:1], [4], 64
        steps_for = {4: 4}

    import torch

    notes: list[str] = []
    if "contextual" in args.arms and not args.mlm:
        notes.append("contextual: skipped, give --mlm (a masked LM folder)")
    if "back_translation" in args.arms:
        notes.append("back_translation: skipped, not available yet (needs a translation task or an MT model folder)")
    if "uda" in args.arms and "conll" in args.datasets:
        notes.append("uda on conll: skipped, UDA is built for classification tasks")
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for ds in args.datasets:
        train_rows, eval_rows = DATASETS[ds]()
        eval_rows = eval_rows[:eval_limit] if eval_limit else eval_rows
        token_level = ds == "conll"
        metric = "target/f1" if token_level else "target/accuracy"
        eval_file = write_jsonl(args.work / ds / "eval.jsonl", eval_rows)
        for k in args.budgets:
            for seed in args.seeds:
                chosen, pool_idx = draw(train_rows, k, seed, token_level)
                base = args.work / ds / f"k{k}-s{seed}"
                train_file = write_jsonl(base / "train.jsonl", [train_rows[i] for i in chosen])
                pool_file = write_jsonl(base / "pool.jsonl", [train_rows[i] for i in pool_idx], labels=False)
                for encoder in args.encoders:
                    for arm in args.arms:
                        augment = None
                        if arm in ("eda", "contextual"):
                            if arm == "contextual" and not args.mlm:
                                continue
                            ops = (TOKEN_OPS if token_level else EDA_OPS) if arm == "eda" else [
                                {"type": "contextual", "model": str(args.mlm), "alpha": 0.15}]
                            augment = {"copies": 4, "p": 0.5, "ops": ops}
                        elif arm == "uda":
                            if token_level:
                                continue
                            # UDA's noise: the EDA ops on the pool's copies; the labelled set stays as it is.
                            augment = {"copies": 0, "p": 0.5, "ops": EDA_OPS}
                        elif arm == "back_translation":
                            continue
                        name = f"{ds}-{encoder}-k{k}-s{seed}-{arm}"
                        raw = experiment(name, train_file, eval_file, token_level, encoder, steps_for[k], seed,
                                         augment, pool_file if arm in ("self_training", "uda") else None,
                                         uda=arm == "uda")
                        rec = {"dataset": ds, "encoder": encoder, "budget": k, "seed": seed, "arm": arm,
                               **run_arm(arm, raw, args.work / "runs", metric, k)}
                        records.append(rec)
                        print(json.dumps(rec), flush=True)
    tables = print_tables(records)
    for n in notes:
        print(f"note: {n}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{platform.processor() or 'cpu'} ({os.cpu_count()} cores)"
    tag = ("gpu" if torch.cuda.is_available() else "cpu") + ("-quick" if args.quick else "")
    (out / f"low_data-{tag}.json").write_text(json.dumps(
        {"device": device, "seconds": time.perf_counter() - t0, "notes": notes,
         "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "records": records, "tables": tables}, indent=2))


# --- tables ----------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def print_tables(records: list[dict[str, Any]]) -> dict[str, str]:
    """One table per (dataset, encoder): mean ± sd per budget and arm, paired gain over none."""
    tables: dict[str, str] = {}
    for ds, enc in dict.fromkeys((r["dataset"], r["encoder"]) for r in records):
        recs = [r for r in records if r["dataset"] == ds and r["encoder"] == enc]
        lines = ["| labels | arm | score (mean ± sd) | gain vs none (paired, mean ± sd, seeds better) | s |",
                 "|---|---|---|---|---|"]
        best_gain: dict[int, float] = {}
        for k in sorted({r["budget"] for r in recs}):
            base = {r["seed"]: r["score"] for r in recs if r["budget"] == k and r["arm"] == "none"}
            for arm in dict.fromkeys(r["arm"] for r in recs):
                rows = [r for r in recs if r["budget"] == k and r["arm"] == arm]
                if not rows:
                    continue
                gain = "-"
                diffs = [r["score"] - base[r["seed"]] for r in rows if arm != "none" and r["seed"] in base]
                if diffs:
                    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                    gain = f"{statistics.mean(diffs):+.4f} ± {sd:.4f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"
                    best_gain[k] = max(best_gain.get(k, float("-inf")), statistics.mean(diffs))
                lines.append(f"| {k} | {arm} | {ms([r['score'] for r in rows])} | {gain} | "
                             f"{statistics.mean(r['seconds'] for r in rows):.0f} |")
        if 10 in best_gain:
            target = TARGETS[enc]
            verdict = "met" if best_gain[10] >= target else "missed"
            lines.append(f"\ntarget at 10 labels: best arm {best_gain[10]:+.4f} vs none, wanted {target:+.2f}: {verdict}")
        tables[f"{ds}/{enc}"] = "\n".join(lines)
        print(f"\n### {ds}, {enc}\n\n{tables[f'{ds}/{enc}']}")
    return tables


if __name__ == "__main__":
    main()
