"""polytask's word encoders (BiLSTM, CNN) against a bare PyTorch training step of the same shape.

IMDB reviews cut to 256 tokens, batch 32, embeddings of 100 and (BiLSTM) 128 units per direction
or (CNN) 100 filters of widths 3, 4, 5, fused AdamW, gradient clipping at 1.0. Each system runs
``--epochs`` epochs over the same ``--limit`` training reviews in its own subprocess; each epoch is
timed from its first step to its last (building the vocabulary and the model is not timed) and
the fastest epoch counts (the one least disturbed by other processes on a shared machine); then it
scores ``--dev-limit`` validation reviews, evenly spaced through the file (not timed):

- ``polytask``: this checkout's ``build_run`` and ``train_step`` (its collation, length-bucketed
  batches, the step engine);
- ``polytask_before``: the same with ``--before-src OTHER_CHECKOUT/src`` (the build before);
- ``bare``: ``nn.Embedding`` -> ``nn.LSTM(bidirectional=True)`` (or the three ``nn.Conv1d``) ->
  max over time -> ``nn.Linear``, every batch padded to 256, the token ids made once by
  polytask's tokenizer before the clock starts.

Systems alternate (p, b, bare, p, b, bare, ...) over ``--rounds``; each system's median is reported.
``--precision bf16`` runs every system under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Run: .venv/bin/python bench/word_encoders.py [--encoders bilstm cnn] [--limit 640] [--dev-limit 500]
[--rounds 2] [--epochs 3] [--precision no|bf16] [--before-src OTHER/src]
Prints a Markdown table for BENCHMARKS.md and writes bench/results/word_encoders.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "imdb"
SHAPE = {"batch_size": 32, "max_length": 256, "embedding_dim": 100, "hidden_size": 128, "num_filters": 100,
         "kernel_sizes": [3, 4, 5], "lr": 2e-3, "seed": 0}


def _config(encoder: str, limit: int, dev_limit: int, precision: str, out: Path, epochs: int) -> dict:
    options = {"embedding_dim": SHAPE["embedding_dim"]}
    options.update({"hidden_size": SHAPE["hidden_size"]} if encoder == "bilstm" else
                   {"num_filters": SHAPE["num_filters"], "kernel_sizes": SHAPE["kernel_sizes"]})
    return {
        "name": f"bench_{encoder}", "output_dir": str(out),
        "encoder": {"type": encoder, "pooling": "max", "dropout": 0.0, "options": options},
        "tasks": [{"name": "imdb", "type": "classification",
                   "data": {"train": str(DATA / "train.jsonl"), "dev": str(DATA / "val.jsonl"), "limit": limit}}],
        "train": {"batch_size": SHAPE["batch_size"], "max_length": SHAPE["max_length"], "lr": SHAPE["lr"],
                  "warmup_ratio": 0.0, "weight_decay": 0.0, "epochs": epochs, "seed": SHAPE["seed"], "progress": False,
                  "cpu": True, "mixed_precision": precision, "eval_batch_size": 64},
        "_dev_limit": dev_limit,
    }


def _stride(n: int, k: int) -> int:
    """The step of an evenly spaced sample of ``k`` of ``n`` items (IMDB's files are sorted by label)."""
    return max(1, n // max(1, k))


def run_polytask(raw: dict) -> dict:
    """One epoch through polytask's own step; dev accuracy after it."""
    from polytask.config import parse_config
    from polytask.training import schedule
    from polytask.training.loop import evaluate, train_step
    from polytask.training.run import build_run

    dev_limit = raw.pop("_dev_limit")
    cfg = parse_config(raw)
    run = build_run(cfg, overwrite=True)
    every = _stride(len(run.data["imdb"].splits["dev"]), dev_limit)
    run.data["imdb"].splits["dev"] = run.data["imdb"].splits["dev"][::every][:dev_limit]
    run.feats["imdb"]["dev"] = run.feats["imdb"]["dev"][::every][:dev_limit]
    epochs = cfg.train.epochs
    times = []
    for epoch in range(int(epochs)):
        batches = schedule.epoch_batches(run.feats, cfg.train, epoch, 1, 0, run.plan.sampler, run.plan.run_epochs,
                                         run.plan.mode)
        tokens = sum(len(run.feats["imdb"]["train"][j]["input_ids"]) for _, idx in batches for j in idx)
        run.model.train()
        start = time.perf_counter()
        for group in batches:
            train_step(run, [group])
        float(run.engine.mean_loss())  # wait for the last step
        times.append(time.perf_counter() - start)
    seconds = min(times)  # the epoch least disturbed by other processes on the machine
    metrics = evaluate(run)
    examples = sum(len(idx) for _, idx in batches)
    if run.lock is not None:
        run.lock.release()
    return {"seconds": seconds, "epoch_seconds": times, "examples": examples, "tokens": tokens,
            "accuracy": metrics["imdb/accuracy"], "precision": run.accelerator.mixed_precision}


def run_bare(raw: dict) -> dict:
    """The same epoch as a bare PyTorch loop: fixed 256-token batches, no framework."""
    import random

    import torch
    from torch import nn

    from polytask.config import parse_config
    from polytask.training.setup import prepare_tasks

    dev_limit = raw.pop("_dev_limit")
    cfg = parse_config(raw)
    torch.manual_seed(SHAPE["seed"])
    data = prepare_tasks(cfg)
    from polytask.encoders import build_encoder

    texts = [ex.text for ex in data["imdb"].splits["train"]]
    tok = build_encoder(cfg.encoder, texts=lambda: texts).tokenizer  # the same vocabulary polytask builds
    labels = data["imdb"].task.labels

    def tensors(examples: list) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tok([ex.text for ex in examples], truncation=True, max_length=SHAPE["max_length"],
                  padding="max_length", return_tensors="pt")
        return enc["input_ids"], torch.tensor([labels.index(ex.label) for ex in examples])

    x_train, y_train = tensors(data["imdb"].splits["train"])
    dev = data["imdb"].splits["dev"]
    x_dev, y_dev = tensors(dev[:: _stride(len(dev), dev_limit)][:dev_limit])
    d, h = SHAPE["embedding_dim"], SHAPE["hidden_size"]
    encoder = raw["encoder"]["type"]

    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(len(tok), d, padding_idx=tok.pad_token_id)
            if encoder == "bilstm":
                self.lstm = nn.LSTM(d, h, bidirectional=True, batch_first=True)
                width = 2 * h
            else:
                self.convs = nn.ModuleList(nn.Conv1d(d, SHAPE["num_filters"], k, padding="same")
                                           for k in SHAPE["kernel_sizes"])
                width = SHAPE["num_filters"] * len(SHAPE["kernel_sizes"])
            self.out = nn.Linear(width, len(labels))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embedding(ids)  # (B, T, D)
            if encoder == "bilstm":
                states = self.lstm(x)[0]  # (B, T, 2h)
            else:
                xt = x.transpose(1, 2)
                states = torch.cat([torch.relu(c(xt)) for c in self.convs], 1).transpose(1, 2)
            return self.out(states.max(1).values)

    model = Bare()
    opt = torch.optim.AdamW(model.parameters(), lr=SHAPE["lr"], weight_decay=0.0, fused=True)
    order = list(range(len(x_train)))
    random.Random(SHAPE["seed"]).shuffle(order)
    bs = SHAPE["batch_size"]
    amp = cfg.train.mixed_precision == "bf16"
    model.train()
    times = []
    for epoch in range(int(cfg.train.epochs)):
        random.Random(SHAPE["seed"] + epoch).shuffle(order)
        start = time.perf_counter()
        for i in range(0, len(order), bs):
            idx = torch.tensor(order[i : i + bs])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = nn.functional.cross_entropy(model(x_train[idx]).float(), y_train[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        float(loss)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        pred = torch.cat([model(x_dev[i : i + 64]).argmax(-1) for i in range(0, len(x_dev), 64)])
    return {"seconds": seconds, "epoch_seconds": times, "examples": len(order), "tokens": int(x_train.numel()),
            "accuracy": float((pred == y_dev).float().mean()), "precision": "bf16" if amp else "no"}


def child(args: argparse.Namespace) -> None:
    raw = json.loads(args.child)
    result = run_bare(raw) if args.system == "bare" else run_polytask(raw)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoders", nargs="+", default=["bilstm", "cnn"], choices=["bilstm", "cnn"])
    p.add_argument("--limit", type=int, default=640, help="training reviews (one epoch over them is timed)")
    p.add_argument("--dev-limit", type=int, default=500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3, help="epochs each system trains; its fastest one is its time")
    p.add_argument("--precision", default="no", choices=["no", "bf16"])
    p.add_argument("--before-src", default=None, help="another checkout's src: system polytask_before")
    p.add_argument("--system", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args)
        return
    systems = ["polytask"] + (["polytask_before"] if args.before_src else []) + ["bare"]
    results: dict[str, dict[str, list[dict]]] = {}
    out = REPO / "bench" / "results" / "word_encoders_runs"
    for encoder in args.encoders:
        results[encoder] = {s: [] for s in systems}
        for r in range(args.rounds):
            for system in systems:
                raw = _config(encoder, args.limit, args.dev_limit, args.precision, out / f"{encoder}-{system}",
                              args.epochs)
                src = args.before_src if system == "polytask_before" else str(REPO / "src")
                env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
                proc = subprocess.run([sys.executable, __file__, "--system", system, "--child", json.dumps(raw)],
                                      capture_output=True, text=True, env=env, cwd=REPO, check=False)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(f"{encoder}/{system} failed:\n{proc.stderr[-3000:]}")
                res = json.loads(line[7:])
                res["examples_per_second"] = res["examples"] / res["seconds"]
                results[encoder][system].append(res)
                print(f"round {r + 1} {encoder:6s} {system:16s} {res['examples_per_second']:7.1f} ex/s  "
                      f"acc {res['accuracy']:.4f}  ({res['precision']})", flush=True)
    print(f"\n| encoder | system | examples/s (median of {args.rounds}) | vs bare | tokens/s vs bare "
          "| dev accuracy | tokens per epoch |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for encoder, by_system in results.items():
        bare = statistics.median(r["examples_per_second"] for r in by_system["bare"])
        bare_tokens = statistics.median(r["tokens"] / r["seconds"] for r in by_system["bare"])
        for system, rows in by_system.items():
            speed = statistics.median(r["examples_per_second"] for r in rows)
            tokens = statistics.median(r["tokens"] / r["seconds"] for r in rows)  # padding counted
            acc = statistics.median(r["accuracy"] for r in rows)
            summary[f"{encoder}/{system}"] = {"examples_per_second": speed, "vs_bare": speed / bare,
                                              "tokens_vs_bare": tokens / bare_tokens, "accuracy": acc}
            print(f"| {encoder} | {system} | {speed:.1f} | {speed / bare:.2f}x | {tokens / bare_tokens:.2f}x | "
                  f"{acc:.4f} | {rows[0]['tokens']} |")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "word_encoders.json").write_text(
        json.dumps({"args": vars(args), "runs": results, "summary": summary}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
