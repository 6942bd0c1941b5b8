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

``--suite conll`` (issue 19): CoNLL-2003 labels POS, chunk and NER on the same tokens (columns
1, 2, 3). Arms, each over the seeds, in an order rotated per seed:

- ``ner``: NER alone;
- ``ner_pos_chunk``: NER + POS + chunk as three tasks on the same file, so one stream
  (``multitask.shared_inputs: auto``): one encoder pass per batch, the three losses summed; the
  best checkpoint is chosen by NER F1, as for ``ner``;
- ``ner_pos_chunk_low``: the same with lower-layer supervision (POS reads layer 2, chunk layer 4
  of MiniLM's 6; Sogaard & Goldberg 2016);
- ``ner_pos_chunk+refine``: NER fine-tuned alone from the ``ner_pos_chunk`` run's encoder
  (MT-DNN refinement), its wall time added to the joint run's.

Reported: NER dev entity F1 (on the first ``--dev-sentences`` of valid.txt), paired gains over
``ner``, training seconds (the training session less the time spent in dev evaluation, which grows
with the task count; set-up, which tokenises each task's data, is outside it) and whole wall
seconds, with ratios to ``ner`` paired by seed.
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
    return {"scores": scores, "seconds": wall, "bytes": size, "steps": result.steps, "cfg": parse_config(raw),
            "run_dir": run_dir}


def refine_glue(joint: dict, task_list: list[dict], seed: int, args: argparse.Namespace) -> dict:
    """MT-DNN refinement of the ``mt_equal`` run: each task fine-tuned alone from the joint run's
    best encoder (``procedures/refine.py``), scored at its own best checkpoint; its time is the
    joint run's plus the refinements'."""
    from polytask.procedures.refine import refine_config
    from polytask.training.loop import train

    scores, seconds, size = {}, joint["seconds"], joint["bytes"]
    for t in task_list:
        sub = refine_config(joint["cfg"], t["name"], joint["run_dir"])
        t0 = time.perf_counter()
        result = train(sub, overwrite=True)
        seconds += time.perf_counter() - t0
        meta = json.loads((result.run_dir / "checkpoints/best/meta.json").read_text())
        scores[t["name"]] = meta["metrics"][f"{t['name']}/{metric_of(t)}"]
        size += (result.run_dir / "checkpoints/best/model.safetensors").stat().st_size
    return {"arm": "mt_equal+refine", "seed": seed, "scores": scores, "seconds": seconds, "bytes": size,
            "average": statistics.mean(scores.values())}


def conll_tasks(limit: int, dev: Path, low: bool) -> list[dict]:
    data = {"train": str(DATA / "conll2003/train.txt"), "dev": str(dev), "format": "conll", "limit": limit}
    out = [{"name": "ner", "type": "token_classification", "data": {**data, "columns": {"tokens": 0, "tags": 3}}}]
    for name, col, layer in (("pos", 1, 2), ("chunk", 2, 4)):
        # Rare POS/chunk tags of dev may be absent from a small training subset: those dev
        # sentences leave these tasks' scores only (NER is scored on every dev sentence).
        out.append({"name": name, "type": "token_classification",
                    "data": {**data, "columns": {"tokens": 0, "tags": col}, "unseen_labels": "skip"},
                    **({"from_layer": layer} if low else {})})
    return out


def dev_subset(n: int, folder: Path) -> Path:
    """The first ``n`` sentences of CoNLL valid.txt, written outside the project (a bench temp)."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks = (DATA / "conll2003/valid.txt").read_text(encoding="utf-8").split("\n\n")
    path = folder / f"valid-{n}.txt"
    path.write_text("\n\n".join(b for b in blocks[: n + 1] if b.strip()) + "\n", encoding="utf-8")
    return path


def conll_main(args: argparse.Namespace) -> None:
    import tempfile

    from polytask.config import parse_config
    from polytask.procedures.refine import refine_config
    from polytask.training import loop

    spent = {"eval": 0.0}
    evaluate = loop.evaluate

    def timed(run):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        try:
            return evaluate(run)
        finally:
            spent["eval"] += time.perf_counter() - t0

    loop.evaluate = timed
    dev = dev_subset(args.dev_sentences, Path(tempfile.gettempdir()) / "polytask-bench-conll")

    def one(name: str, task_list: list[dict], seed: int, cfg_raw: dict | None = None) -> dict:
        raw = cfg_raw or {
            "name": name, "tasks": task_list,
            "train": {"epochs": args.epochs, "batch_size": 16, "lr": args.lr, "warmup_ratio": 0.1, "seed": seed,
                      "max_length": 128, "progress": False, "metric": "ner/f1"},
        }
        cfg = parse_config(raw) if isinstance(raw, dict) else raw
        spent["eval"] = 0.0
        t0 = time.perf_counter()
        result = loop.train(cfg, output_dir=args.out / f"{name}-seed{seed}", overwrite=True)
        wall = time.perf_counter() - t0
        # train: the training session (result.seconds starts after the run is built: data read,
        # tokenised, model loaded) less dev evaluation; wall: everything, set-up included.
        return {"f1": result.best_metric, "wall": wall, "train": result.seconds - spent["eval"], "steps": result.steps,
                "run_dir": result.run_dir, "cfg": cfg}

    arms = ["ner", "ner_pos_chunk", "ner_pos_chunk_low"]
    records: list[dict] = []
    for s_i, seed in enumerate(args.seeds):
        order = arms[s_i % len(arms):] + arms[: s_i % len(arms)]
        for arm in order:
            tl = conll_tasks(args.limit, dev, low=arm.endswith("_low"))
            r = one(arm, tl[:1] if arm == "ner" else tl, seed)
            rec = {"arm": arm, "seed": seed, **{k: r[k] for k in ("f1", "wall", "train", "steps")}}
            records.append(rec)
            print(json.dumps(rec), flush=True)
            if arm == "ner_pos_chunk" and args.refine:
                sub = refine_config(r["cfg"], "ner", r["run_dir"])
                q = one("ner_pos_chunk+refine", [], seed, sub)
                rec = {"arm": "ner_pos_chunk+refine", "seed": seed, "f1": q["f1"], "wall": r["wall"] + q["wall"],
                       "train": r["train"] + q["train"], "steps": r["steps"] + q["steps"]}
                records.append(rec)
                print(json.dumps(rec), flush=True)

    base = {r["seed"]: r for r in records if r["arm"] == "ner"}
    lines = ["| arm | NER dev F1 (mean ± sd) | gain vs ner (paired mean; seeds better) | train s (mean) "
             "| train time / ner (paired median) | wall s (mean) | wall / ner (paired median) |",
             "|---|---|---|---|---|---|---|"]
    for arm in [*arms, "ner_pos_chunk+refine"]:
        rows = [r for r in records if r["arm"] == arm]
        if not rows:
            continue
        f1 = [r["f1"] for r in rows]
        gains = [r["f1"] - base[r["seed"]]["f1"] for r in rows]
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        gain = "" if arm == "ner" else f"{statistics.mean(gains):+.4f} ({sum(g > 0 for g in gains)}/{len(gains)})"
        tr = statistics.median(r["train"] / base[r["seed"]]["train"] for r in rows)
        wr = statistics.median(r["wall"] / base[r["seed"]]["wall"] for r in rows)
        lines.append(f"| {arm} | {statistics.mean(f1):.4f} ± {sd:.4f} | {gain} | "
                     f"{statistics.mean(r['train'] for r in rows):.1f} | {tr:.2f}x | "
                     f"{statistics.mean(r['wall'] for r in rows):.1f} | {wr:.2f}x |")
    table = "\n".join(lines)
    print(table)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (args.results or out / "multitask-conll-cpu.json").write_text(json.dumps(
        {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "records": records, "table": table}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=["glue", "conll"], default="glue")
    ap.add_argument("--dev-sentences", type=int, default=500, help="conll: dev sentences scored")
    ap.add_argument("--refine", action="store_true", help="add the refinement arm (conll: NER from ner_pos_chunk; glue: every task from mt_equal)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--limit", type=int, default=1000, help="examples per split and task")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--arms", nargs="+", default=["single", *ARMS], choices=["single", *ARMS])
    ap.add_argument("--results", type=Path, help="results JSON (default bench/results/multitask-<cpu|gpu>.json)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "multitask")
    args = ap.parse_args()
    if args.suite == "conll":
        conll_main(args)
        return

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
            if arm == "mt_equal" and args.refine:
                records.append(refine_glue(r, task_list, seed, args))
                print(json.dumps(records[-1]), flush=True)

    names = [t["name"] for t in task_list]
    lines = ["| arm | " + " | ".join(f"{n} ({metric_of(t)})" for n, t in zip(names, task_list, strict=True))
             + " | average | train s | weights MB |", "|---" * (len(names) + 4) + "|"]

    def ms(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    for arm in [*args.arms, *(["mt_equal+refine"] if args.refine and "mt_equal" in args.arms else [])]:
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
