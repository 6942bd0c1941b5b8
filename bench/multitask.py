"""Single-task models vs one multi-task model on five real tasks (SST-2, CoLA, MRPC, STS-B, CoNLL-2003).

Every arm fine-tunes the packaged all-MiniLM-L6-v2 with the same learning rate, batch size,
epochs and capped data (``--limit`` examples per split and task), over several seeds:

- ``single``: one model per task (five runs per seed);
- ``mt_equal``: one model, one task per batch, every batch of every task once per epoch;
- ``mt_uncertainty``: the same with uncertainty weighting (Kendall et al. 2018);
- ``mt_pcgrad``: every step takes one batch of 32 of every task, PCGrad (Yu et al. 2020) on the
  encoder: the same data, but 5 times fewer optimiser steps than the one-task-per-step arms;
- ``mt_pcgrad_eqsteps``: the same with batches of 6 per task, so each step holds 30 examples
  and the run takes about as many optimiser steps (and examples per step) as the other arms;
- ``mt_equal_all_eqsteps``: every task in every step (batches of 6 each), losses summed: the
  baseline for the methods below, which need every task in one step;
- ``mt_famo_eqsteps`` (FAMO, Liu et al. 2023), ``mt_rlw_eqsteps`` (random loss weighting, Lin et al.
  2022), ``mt_imtl_eqsteps`` (IMTL-G, Liu et al. 2021): likewise, with that weighting or surgery.

Each task's examples are seen the same number of times in every arm (an epoch of the all-tasks
arms lasts until the largest task is seen once, and every task is capped at the same size).
Metrics: SST-2 accuracy, CoLA MCC, MRPC accuracy, STS-B Pearson, CoNLL entity F1 (seqeval), on each
task's dev split (capped too), at the checkpoint with the best average (multi-task) or best task
metric (single). Also training seconds and the size of the saved weights.

Run: .venv/bin/python bench/multitask.py [--seeds 1 2 3] [--limit 1000] [--epochs 2]
Writes bench/results/multitask-<device>.json and prints the Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data"))


def tasks(limit: int) -> list[dict]:
    cap = {"limit": limit}
    return [
        {"name": "sst2", "type": "classification",
         "data": {"train": str(DATA / "sst2_sent/train.txt"), "dev": str(DATA / "sst2_sent/dev.txt"),
                  "format": "label_text", **cap}},
        {"name": "cola", "type": "classification", "metric": "mcc",
         "data": {"train": str(DATA / "cola/in_domain_train.tsv"), "dev": str(DATA / "cola/in_domain_dev.tsv"),
                  "format": "tsv", "header": False, "columns": {"text": 3, "label": 1}, **cap}},
        {"name": "mrpc", "type": "classification",
         "data": {"train": str(DATA / "mrpc/train.tsv"), "dev": str(DATA / "mrpc/dev.tsv"),
                  "columns": {"text": "#1 String", "text_pair": "#2 String", "label": "Quality"}, **cap}},
        {"name": "stsb", "type": "regression",
         "data": {"train": str(DATA / "stsb/sts-train.csv"), "dev": str(DATA / "stsb/sts-dev.csv"),
                  "format": "tsv", "header": False, "columns": {"text": 5, "text_pair": 6, "label": 4}, **cap}},
        {"name": "ner", "type": "token_classification",
         "data": {"train": str(DATA / "conll2003/train.txt"), "dev": str(DATA / "conll2003/valid.txt"),
                  "format": "conll", **cap}},
    ]


ARMS = {  # arm: (multitask section, train overrides)
    "mt_equal": ({}, {}),
    "mt_uncertainty": ({"weighting": {"type": "uncertainty"}}, {}),
    "mt_pcgrad": ({"surgery": {"type": "pcgrad"}}, {}),
    "mt_pcgrad_eqsteps": ({"surgery": {"type": "pcgrad"}}, {"batch_size": 6}),
    # Every task in every step, batches of 6 per task (as mt_pcgrad_eqsteps): the fair baseline
    # for the weightings and surgeries that need all tasks in one step.
    "mt_equal_all_eqsteps": ({"step": "all_tasks"}, {"batch_size": 6}),
    "mt_famo_eqsteps": ({"weighting": {"type": "famo"}}, {"batch_size": 6}),
    "mt_rlw_eqsteps": ({"weighting": {"type": "rlw"}}, {"batch_size": 6}),
    "mt_imtl_eqsteps": ({"surgery": {"type": "imtl"}}, {"batch_size": 6}),
}


def metric_of(task: dict) -> str:
    return task.get("metric") or {"regression": "pearson", "token_classification": "f1"}.get(task["type"], "accuracy")


def run(name: str, task_list: list[dict], multitask: dict, args: argparse.Namespace, seed: int, out: Path,
        train_overrides: dict | None = None) -> dict:
    from polytask.config import parse_config
    from polytask.training.loop import train

    raw = {
        "name": name, "tasks": task_list, "multitask": multitask,
        "train": {"epochs": args.epochs, "batch_size": 32, "lr": args.lr, "warmup_ratio": 0.1, "seed": seed,
                  "max_length": 128, "progress": False, "metric": "average" if len(task_list) > 1 else None,
                  **(train_overrides or {})},
    }
    run_dir = out / f"{name}-seed{seed}"
    t0 = time.perf_counter()
    result = train(parse_config(raw), output_dir=run_dir, overwrite=True)
    wall = time.perf_counter() - t0
    size = (run_dir / "checkpoints/best/model.safetensors").stat().st_size
    # Scores at the best checkpoint (what a user keeps), from its saved metrics.
    meta = json.loads((run_dir / "checkpoints/best/meta.json").read_text())
    scores = {t["name"]: meta["metrics"][f"{t['name']}/{metric_of(t)}"] for t in task_list}
    return {"scores": scores, "seconds": wall, "bytes": size, "steps": result.steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--limit", type=int, default=1000, help="examples per split and task")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--arms", nargs="+", default=["single", *ARMS], choices=["single", *ARMS])
    ap.add_argument("--results", type=Path, help="results JSON (default bench/results/multitask-<cpu|gpu>.json)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "multitask")
    args = ap.parse_args()

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{platform.processor() or 'cpu'} ({os.cpu_count()} cores)"
    task_list = tasks(args.limit)
    records: list[dict] = []
    for seed in args.seeds:
        for arm in args.arms:
            if arm == "single":
                scores, seconds, size = {}, 0.0, 0
                for t in task_list:
                    r = run(f"single_{t['name']}", [t], {}, args, seed, args.out)
                    scores.update(r["scores"])
                    seconds += r["seconds"]
                    size += r["bytes"]
                rec = {"arm": arm, "seed": seed, "scores": scores, "seconds": seconds, "bytes": size}
            else:
                r = run(arm, task_list, ARMS[arm][0], args, seed, args.out, ARMS[arm][1])
                rec = {"arm": arm, "seed": seed, **{k: r[k] for k in ("scores", "seconds", "steps")}, "bytes": r["bytes"]}
            rec["average"] = statistics.mean(rec["scores"].values())
            records.append(rec)
            print(json.dumps(rec), flush=True)

    names = [t["name"] for t in task_list]
    lines = ["| arm | " + " | ".join(f"{n} ({metric_of(t)})" for n, t in zip(names, task_list, strict=True))
             + " | average | train s | weights MB |", "|---" * (len(names) + 4) + "|"]

    def ms(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    for arm in args.arms:
        rows = [r for r in records if r["arm"] == arm]
        cells = [ms([r["scores"][n] for r in rows]) for n in names]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {ms([r['average'] for r in rows])} | "
                     f"{statistics.mean(r['seconds'] for r in rows):.0f} | {rows[0]['bytes'] / 1e6:.1f} |")
    table = "\n".join(lines)
    print(table)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    (args.results or out / f"multitask-{tag}.json").write_text(json.dumps(
        {"device": device, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "records": records, "table": table}, indent=2))


if __name__ == "__main__":
    main()
