"""Multi30k German -> English with a BERT2BERT model: warm-started from the packaged MiniLM vs the
same architecture from random weights, equal steps; BLEU/chrF (lower-cased: the MiniLM vocabulary
is uncased) on test_2016_flickr; generation throughput (tokens/s) and latency at batch 1 and 32.

Run (both arms one after the other in one process, the same steps, batch size, learning rate and
data; throughput measured on the warm-started model, alternating batch 1 and 32):
    .venv/bin/python bench/generation.py --arms warm,scratch --steps 40 --batch-size 16 \
        --train-limit 2000 --test-limit 150 --dev 16 --throughput --calls 6
Results land in bench/results/generation_<arms>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "multi30k"
RESULTS = REPO / "bench" / "results"


def dev_slice(n: int) -> Path:
    """The first ``n`` validation pairs, written outside the project (dev only picks 'best')."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "polytask-bench-generation"
    out.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        lines = (DATA / f"val.{lang}").read_text(encoding="utf-8").splitlines()[:n]
        (out / f"val{n}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / f"val{n}"


def config(arm: str, args: argparse.Namespace) -> dict:
    return {
        "name": f"bench_generation_{arm}",
        "encoder": {"name_or_path": "default" if arm == "warm" else "scratch:default"},
        "tasks": [{
            "name": "mt", "type": "seq2seq",
            "data": {"train": str(DATA / "train"), "dev": str(dev_slice(args.dev)), "limit": args.train_limit,
                     "parallel": {"source": "de", "target": "en"}},
            "options": {"max_source_length": 64, "max_target_length": 40, "label_smoothing": 0.1,
                        "num_beams": args.beams, "max_new_tokens": args.max_new_tokens, "lowercase": True,
                        "decoder_init": "encoder" if arm == "warm" else "random"},
        }],
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                  "warmup_ratio": 0.1, "max_length": 64, "seed": 42, "progress": args.progress, "eval_batch_size": 64},
    }


def test_pairs(limit: int | None) -> tuple[list[str], list[str]]:
    src = (DATA / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    ref = (DATA / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    return src[:limit], ref[:limit]


def throughput(predictor, sources: list[str], batch: int, rounds: int) -> dict:  # noqa: ANN001
    """Generated tokens/s and per-call latency of ``predictor.predict`` at one batch size."""
    tok = predictor.tokenizer
    latencies, tokens = [], 0
    chunks = [sources[i : i + batch] for i in range(0, batch * rounds, batch)]
    predictor.batch_size = batch
    predictor.predict(chunks[0])  # warm-up
    for chunk in chunks:
        t0 = time.perf_counter()
        rows = predictor.predict(chunk)
        latencies.append(time.perf_counter() - t0)
        tokens += sum(len(tok(r["text"], add_special_tokens=False)["input_ids"]) + 1 for r in rows)
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"batch": batch, "calls": len(chunks), "tokens_per_s": tokens / sum(latencies),
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": q[18]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", default="warm,scratch", help="comma-separated: warm, scratch")
    ap.add_argument("--train-limit", type=int, default=None, help="a seeded subset of the 29,000 training pairs")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--calls", type=int, default=8, help="throughput: predict calls per batch size and round")
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--dev", type=int, default=64)
    ap.add_argument("--test-limit", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--throughput", action="store_true", help="also time generation at batch 1 and 32")
    args = ap.parse_args()
    import torch

    import polytask
    from polytask.config import parse_config
    from polytask.evaluation import metrics as M
    from polytask.training.loop import train

    results = {"command_args": vars(args), "arms": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    dest = RESULTS / f"generation_{args.arms.replace(',', '_')}.json"
    for arm in args.arms.split(","):
        run_dir = RESULTS / f"generation_{arm}_run"
        t0 = time.perf_counter()
        res = train(parse_config(config(arm, args)), output_dir=run_dir, overwrite=True)
        train_wall = time.perf_counter() - t0
        predictor = polytask.load(str(run_dir))
        src, ref = test_pairs(args.test_limit)
        predictor.batch_size = 64
        t1 = time.perf_counter()
        hyps = [r["text"] for r in predictor.predict(src)]
        test_wall = time.perf_counter() - t1
        out = {
            "steps": args.steps, "batch_size": args.batch_size, "beams": args.beams,
            "lr": config(arm, args)["train"]["lr"], "threads": torch.get_num_threads(),
            "train_wall_s": train_wall, "test_pairs": len(src), "test_generation_wall_s": test_wall,
            "test_lowercased": M.bleu_chrf(ref, hyps, lowercase=True), "dev": res.dev,
            "samples": list(zip(src[:5], hyps[:5], ref[:5], strict=True)),
        }
        results["arms"][arm] = out
        dest.write_text(json.dumps(results, indent=2))  # kept even if a later part is cut short
        if arm == "warm":
            warm_predictor, warm_src = predictor, src
        print(json.dumps({arm: out}, indent=2), flush=True)
    if args.throughput and "warm" in results["arms"]:
        # After both arms' scores (so a cut-short run keeps them); alternate the two batch sizes
        # so both see the same machine load.
        parts: dict[int, list[dict]] = {1: [], 32: []}
        for _ in range(2):
            parts[1].append(throughput(warm_predictor, warm_src, 1, args.calls))
            parts[32].append(throughput(warm_predictor, warm_src, 32, max(2, args.calls // 4)))
        results["arms"]["warm"]["throughput"] = parts
        dest.write_text(json.dumps(results, indent=2))
        print(json.dumps(parts, indent=2), flush=True)


if __name__ == "__main__":
    main()
