"""Distillation on SST-2: smaller students against the fine-tuned MiniLM teacher, on one CPU.

Arms (every one an ordinary polytask run, scored on the full SST-2 dev set, 872 sentences):

- ``teacher``: the packaged all-MiniLM-L6-v2 (6 layers) fine-tuned on the training subset;
- ``drop{k}_ft``: the teacher's bottom k layers (``transfer.init_from`` the teacher +
  ``drop_layers``), fine-tuned on the labels alone (the cheap baseline);
- ``drop{k}_kd``: the same start, distilled (``polytask.distill``: soft targets at T + a
  weighted hard-label loss);
- ``bilstm_labels``: a BiLSTM over GloVe 6B 50d trained on the labels alone;
- ``bilstm_kd``: the same BiLSTM distilled from the teacher.

Measured in this one process after training, warm-up excluded, arms alternated (their order
rotates every round): latency at batch 1 (one sentence per ``predict`` call, median over
``--singles`` sentences) and at batch 64 (median over consecutive 64-sentence calls), through
``polytask.load(run).predict`` on the CPU; size on disk of the best checkpoint's weights and
parameter count. With ``--int8``, the best transformer student is exported to ONNX and dynamically
quantised, and its accuracy and latency are measured beside the others.

Run: flock /tmp/bench.lock env OMP_NUM_THREADS=2 PYTHONPATH=src .venv/bin/python bench/distill.py \
  [--train-limit 3000] [--layers 3] [--seeds 1] [--bilstm-seeds 2] [--int8] [--out /tmp/...]
Writes bench/results/distill.json and prints the Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "sst2_sent"
RESULTS = REPO / "bench" / "results"


TRAIN_SUBSET: Path | None = None  # a seeded random subset of train.txt, written outside the project


def write_subset(out: Path, limit: int) -> Path:
    import random

    lines = [ln for ln in (DATA / "train.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    picked = random.Random(13).sample(lines, min(limit, len(lines)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sst2-train-{len(picked)}.txt"
    path.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return path


def task_block() -> dict[str, Any]:
    data = {"train": str(TRAIN_SUBSET or DATA / "train.txt"), "dev": str(DATA / "dev.txt"), "format": "label_text",
            "label_map": {"0": "neg", "1": "pos"}}
    return {"name": "sst2", "type": "classification", "data": data}


def experiment(name: str, out: Path, _limit: int | None, seed: int, epochs: float, lr: float,
               **extra: Any) -> dict[str, Any]:
    return {"name": name, "output_dir": str(out), "tasks": [task_block()],
            "train": {"epochs": epochs, "batch_size": 32, "lr": lr, "warmup_ratio": 0.1, "weight_decay": 0.01,
                      "max_length": 64, "seed": seed, "progress": False, "eval_batch_size": 128},
            **extra}


def dropped(teacher: Path, k: int) -> dict[str, Any]:
    return {"transfer": {"init_from": str(teacher), "strategy": "drop_layers",
                         "options": {"drop_layers": {"bottom": k}}}}


BILSTM = {"encoder": {"type": "bilstm", "pooling": "max", "dropout": 0.2,
                      "options": {"vectors": "glove-6b-50d", "hidden_size": 150, "embedding_dropout": 0.1}}}


def read_dev() -> list[str]:
    return [line.split(" ", 1)[1] for line in (DATA / "dev.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


def weights_mb(run_dir: Path) -> float:
    from polytask.runs import find_checkpoint

    cdir = find_checkpoint(run_dir)
    return sum(p.stat().st_size for p in cdir.glob("*.safetensors")) / 2**20


def latencies(predictors: dict[str, Any], texts: list[str], singles: int, rounds: int) -> dict[str, dict]:
    """Median ms per call at batch 1 and batch 64, arms alternated, order rotated every round."""
    names = list(predictors)
    b1: dict[str, list[float]] = {n: [] for n in names}
    b64: dict[str, list[float]] = {n: [] for n in names}
    chunks = [texts[i:i + 64] for i in range(0, len(texts) - 63, 64)][:6]
    for p in predictors.values():  # warm-up
        p.predict(texts[:64])
        p.predict(texts[:1])
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for i, text in enumerate(texts[r * singles:(r + 1) * singles]):
            for n in order[i % len(order):] + order[:i % len(order)]:
                t0 = time.perf_counter()
                predictors[n].predict([text])
                b1[n].append((time.perf_counter() - t0) * 1000)
        for chunk in chunks:
            for n in order:
                t0 = time.perf_counter()
                predictors[n].predict(chunk)
                b64[n].append((time.perf_counter() - t0) * 1000)
    return {n: {"batch1_ms": statistics.median(b1[n]), "batch64_ms": statistics.median(b64[n]),
                "batch1_calls": len(b1[n]), "batch64_calls": len(b64[n])} for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-limit", type=int, default=3000, help="SST-2 training sentences (of 6920)")
    ap.add_argument("--teacher-epochs", type=float, default=1.0)
    ap.add_argument("--student-epochs", type=float, default=2.0)
    ap.add_argument("--bilstm-epochs", type=float, default=4.0)
    ap.add_argument("--layers", type=int, nargs="+", default=[3])
    ap.add_argument("--seeds", type=int, default=1, help="seeds of the transformer students")
    ap.add_argument("--bilstm-seeds", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--kd", type=float, default=1.0)
    ap.add_argument("--hard", type=float, default=0.5)
    ap.add_argument("--singles", type=int, default=60, help="batch-1 sentences per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--int8", action="store_true", help="also ONNX int8 of the best transformer student")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the finished runs of an earlier invocation with the same --out (train only the rest)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/polytask_distill_bench"),
                    help="runs and the training subset (outside the project)")
    args = ap.parse_args()
    if not (DATA / "dev.txt").is_file():
        sys.exit(f"SST-2 not found at {DATA} (set POLYTASK_DATA to the folder holding sst2_sent/)")

    import polytask
    from polytask.config import parse_config
    from polytask.procedures.distill import DistillConfig, DistillLosses
    from polytask.procedures.distill import distill as run_distill
    from polytask.training.loop import train

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    out = args.out
    global TRAIN_SUBSET
    TRAIN_SUBSET = write_subset(out, args.train_limit)
    t_start = time.perf_counter()
    arms: dict[str, list[dict]] = {}
    runs_of: dict[str, Path] = {}

    def record(arm: str, run_dir: Path, result: Any, wall: float) -> None:
        arms.setdefault(arm, []).append({"run": str(run_dir), "accuracy": result.dev["sst2/accuracy"],
                                         "best_accuracy": result.best_metric, "train_s": wall})
        runs_of.setdefault(arm, run_dir)
        print(f"{arm}: dev accuracy {result.dev['sst2/accuracy']:.4f} (best {result.best_metric:.4f}) in {wall:.0f} s",
              flush=True)

    def finished(raw: dict) -> tuple[Any, float] | None:
        """With --reuse, a run an earlier (stopped) invocation finished: its results.json."""
        path = Path(raw["output_dir"]) / "results.json"
        if not args.reuse or not path.is_file():
            return None
        from types import SimpleNamespace

        saved = json.loads(path.read_text(encoding="utf-8"))
        print(f"reusing {raw['output_dir']}", flush=True)
        return SimpleNamespace(dev=saved["dev"], best_metric=saved["best_metric"]), saved["seconds"]

    def timed_train(raw: dict) -> tuple[Any, float]:
        if (done := finished(raw)) is not None:
            return done
        t0 = time.perf_counter()
        res = train(parse_config(raw), overwrite=True)
        return res, time.perf_counter() - t0

    def timed_distill(raw: dict, teacher: Path) -> tuple[Any, float]:
        if (done := finished(raw)) is not None:
            return done
        dcfg = DistillConfig(teacher=str(teacher), student=raw, temperature=args.temperature,
                             losses=DistillLosses(kd=args.kd, hard=args.hard), cache_dir=str(out / "teacher_cache"))
        t0 = time.perf_counter()
        res = run_distill(dcfg, parse_config(raw), overwrite=True)
        return res, time.perf_counter() - t0

    teacher = out / "teacher"
    res, wall = timed_train(experiment("teacher", teacher, args.train_limit, 42, args.teacher_epochs, 1e-4))
    record("teacher", teacher, res, wall)
    for k in args.layers:
        for seed in range(args.seeds):
            d = out / f"drop{k}_ft-s{seed}"
            res, wall = timed_train(experiment(d.name, d, args.train_limit, seed, args.student_epochs, 1e-4,
                                               **dropped(teacher, k)))
            record(f"drop{k}_ft", d, res, wall)
            d = out / f"drop{k}_kd-s{seed}"
            res, wall = timed_distill(experiment(d.name, d, args.train_limit, seed, args.student_epochs, 1e-4,
                                                 **dropped(teacher, k)), teacher)
            record(f"drop{k}_kd", d, res, wall)
    for seed in range(args.bilstm_seeds):
        d = out / f"bilstm_labels-s{seed}"
        res, wall = timed_train(experiment(d.name, d, args.train_limit, seed, args.bilstm_epochs, 2e-3, **BILSTM))
        record("bilstm_labels", d, res, wall)
        d = out / f"bilstm_kd-s{seed}"
        res, wall = timed_distill(experiment(d.name, d, args.train_limit, seed, args.bilstm_epochs, 2e-3, **BILSTM),
                                  teacher)
        record("bilstm_kd", d, res, wall)
    train_s = time.perf_counter() - t_start

    texts = read_dev()
    predictors = {arm: polytask.load(str(run), device="cpu") for arm, run in runs_of.items()}
    int8_arm = None
    if args.int8:
        from polytask.export.onnx import export_onnx
        from polytask.export.quantize import quantize_onnx
        from polytask.serving.onnx_backend import OnnxPredictor

        students = [a for a in arms if a.startswith("drop")]
        best = max(students, key=lambda a: statistics.mean(r["accuracy"] for r in arms[a]))
        fp32 = export_onnx(runs_of[best], out / "onnx-fp32")
        q = quantize_onnx(fp32.directory, out / "onnx-int8", data=DATA / "dev.txt")["quantization"]
        int8_arm = f"{best}_int8"
        arms[int8_arm] = [{"run": str(out / "onnx-int8"), "accuracy": q["eval"]["sst2"]["int8"]}]
        predictors[int8_arm] = OnnxPredictor(out / "onnx-int8", num_threads=torch.get_num_threads())
    lat = latencies(predictors, texts, args.singles, args.rounds)

    rows = []
    teacher_acc = arms["teacher"][0]["accuracy"]
    for arm, recs in arms.items():
        accs = [r["accuracy"] for r in recs]
        if arm == int8_arm:
            size = sum(p.stat().st_size for p in (out / "onnx-int8").glob("*.onnx")) / 2**20
            params = None
        else:
            size = weights_mb(runs_of[arm])
            params = sum(p.numel() for p in predictors[arm].model.parameters()) if hasattr(predictors[arm], "model") \
                else None
        rows.append({
            "arm": arm, "seeds": len(accs), "accuracy_mean": statistics.mean(accs),
            "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "accuracies": accs,
            "of_teacher": statistics.mean(accs) / teacher_acc, "size_mb": size, "params": params,
            **lat[arm],
            "speedup_batch1": lat["teacher"]["batch1_ms"] / lat[arm]["batch1_ms"],
            "speedup_batch64": lat["teacher"]["batch64_ms"] / lat[arm]["batch64_ms"],
            "train_s": [r.get("train_s") for r in recs],
        })
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": torch.get_num_threads(),
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "train_wall_s": train_s, "total_wall_s": time.perf_counter() - t_start, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))


def pareto(rows: list[dict], key: str) -> set[str]:
    """Arms no other arm beats on both accuracy (higher) and ``key`` latency (lower)."""
    front = set()
    for r in rows:
        beaten = any(o is not r and o["accuracy_mean"] >= r["accuracy_mean"] and o[key] <= r[key]
                     and (o["accuracy_mean"] > r["accuracy_mean"] or o[key] < r[key]) for o in rows)
        if not beaten:
            front.add(r["arm"])
    return front


def markdown(report: dict) -> str:
    lines = ["| arm | seeds | dev accuracy | of teacher | batch-1 ms | speed-up b1 | batch-64 ms | speed-up b64 "
             "| weights MB | params | Pareto (b1) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    front = pareto(report["rows"], "batch1_ms")
    for r in report["rows"]:
        acc = f"{r['accuracy_mean']:.4f}" + (f" ± {r['accuracy_std']:.4f}" if r["seeds"] > 1 else "")
        params = f"{r['params'] / 1e6:.1f}M" if r["params"] else "–"
        lines.append(f"| {r['arm']} | {r['seeds']} | {acc} | {r['of_teacher']:.1%} | {r['batch1_ms']:.1f} | "
                     f"{r['speedup_batch1']:.2f}x | {r['batch64_ms']:.0f} | {r['speedup_batch64']:.2f}x | "
                     f"{r['size_mb']:.1f} | {params} | {'yes' if r['arm'] in front else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
