"""Inference speed on SST-2 dev sentences: polytask (torch, ONNX, ONNX int8) vs a transformers pipeline.

All systems run the same all-MiniLM-L6-v2 weights with the same classification head, in this one
process, on the CPU:

- ``polytask-torch``: ``polytask.load(run, precision="no")`` (fp32; length-sorted batches, dynamic
  padding, inference mode);
- ``polytask-torch-bf16``: ``polytask.load(run, precision="bf16")``: the encoder under bf16 autocast
  (what ``precision="auto"``, the default, picks on a CPU with AMX/AVX512-BF16), the head in fp32;
- ``polytask-onnx``: the run exported with ``polytask export onnx`` and run by ONNX Runtime;
- ``polytask-onnx-int8``: the same graph after ``polytask export quantize`` (dynamic int8);
- ``hf-pipeline``: ``transformers.pipeline("text-classification")`` over a transformers model holding
  the run's encoder and head (mean pooling + linear, as polytask computes; checked to agree).

Measured, warm-up excluded, systems alternated (their order rotates every round, so drifting load
on a shared machine hits all of them alike):

1. throughput: all dev sentences (872) in one call with batch size 64, texts/s (median of rounds);
2. latency at batch 1 (one sentence a call) and batch 64 (consecutive 64-sentence requests),
   p50/p95 in milliseconds;
3. multi-task: a model with k=3 heads answering 3 tasks in one call vs 3 single-task models
   (copies of the encoder) answering one each, time for all three answers.

The model: the SST-2 run of ``bench/finetune_sst2.py`` (``bench/results/polytask_run``, dev accuracy
~0.89) when present, else a run fine-tuned here for ``--train-steps`` steps (accuracy then is low
and said so; it does not change speed). ``--run`` picks another run.

Run: .venv/bin/python bench/inference.py [--quick] [--rounds 3] [--threads N] [--limit N] [--no-multitask]
Writes bench/results/inference.json and bench/results/inference.md (Markdown tables).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data")) / "sst2_sent"
RESULTS = REPO / "bench" / "results"
SST2_RUN = RESULTS / "polytask_run"
MAX_LENGTH = 128


def project_path(path: Path | str) -> str:
    """``path`` relative to the project (results must not name the machine's folders); a path
    outside the project is named by its last two parts."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return Path(*p.parts[-2:]).as_posix()


def read_sst2(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, text = line.split(" ", 1)
            texts.append(text)
            labels.append({"0": "neg", "1": "pos"}[label])
    return texts, labels


def brief_run(out: Path, steps: int) -> Path:
    """Fine-tune the packaged MiniLM on SST-2 for a few steps (only when no run is given)."""
    from polytask.config import parse_config
    from polytask.training.loop import train

    raw = {
        "name": "bench_inference",
        "tasks": [{"name": "sst2", "type": "classification",
                   "data": {"train": str(DATA / "train.txt"), "dev": str(DATA / "dev.txt"), "format": "label_text",
                            "label_map": {"0": "neg", "1": "pos"}}}],
        "train": {"epochs": 1, "max_steps": steps, "batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.0,
                  "max_length": MAX_LENGTH, "seed": 42, "progress": False, "mixed_precision": "no"},
    }
    train(parse_config(raw), output_dir=out, overwrite=True)
    return out


# ---- the transformers side -------------------------------------------------------------------
def hf_classifier(predictor: Any, task: str) -> Any:
    """A transformers model computing what the polytask run computes (encoder, pooling, head)."""
    from transformers import BertConfig, BertPreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    encoder = predictor.model.encoder
    head = predictor.model.heads[task].out
    pooling = encoder.pooling

    class PooledClassifier(BertPreTrainedModel):
        config_class = BertConfig

        def __init__(self, config: BertConfig):
            super().__init__(config)
            self.bert = copy.deepcopy(encoder.model)
            self.classifier = copy.deepcopy(head)

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_: Any):  # noqa: ANN001
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state  # (B, T, H)
            m = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            if pooling == "cls":
                pooled = states[:, 0]
            elif pooling == "max":
                pooled = states.masked_fill(m == 0, float("-inf")).max(1).values
            else:
                pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
            return SequenceClassifierOutput(logits=self.classifier(pooled))  # (B, C)

    config = copy.deepcopy(encoder.model.config)
    labels = predictor.tasks[task].labels
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {lab: i for i, lab in enumerate(labels)}
    return PooledClassifier(config).eval()


def hf_pipeline(predictor: Any, task: str) -> Any:
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    # Silences "model 'PooledClassifier' is not supported for text-classification": a custom head
    # (mean pooling, as polytask) is the point; the pipeline runs any model returning logits.
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    try:
        return pipeline("text-classification", model=hf_classifier(predictor, task),
                        tokenizer=predictor.tokenizer, device=-1)
    finally:
        hf_logging.set_verbosity_error()


# ---- timing ----------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def rotate(items: list[Any], k: int) -> list[Any]:
    k %= len(items)
    return items[k:] + items[:k]


def bench_systems(systems: dict[str, Callable[[list[str]], Any]], texts: list[str], rounds: int,
                  n_single: int) -> dict[str, dict[str, float]]:
    names = list(systems)
    for fn in systems.values():  # warm-up: first calls allocate, JIT-compile kernels, fill caches
        fn(texts[:64])
        fn(texts[:1])
    through: dict[str, list[float]] = {n: [] for n in names}
    lat1: dict[str, list[float]] = {n: [] for n in names}
    lat64: dict[str, list[float]] = {n: [] for n in names}
    singles = texts[:: max(1, len(texts) // n_single)][:n_single]
    chunks = [texts[i : i + 64] for i in range(0, len(texts) - 63, 64)] or [texts]
    for r in range(rounds):
        for n in rotate(names, r):
            through[n].append(len(texts) / timed(lambda n=n: systems[n](texts)))
        for j, t in enumerate(singles):
            for n in rotate(names, r + j):
                lat1[n].append(1000 * timed(lambda n=n, t=t: systems[n]([t])))
        for j, c in enumerate(chunks):
            for n in rotate(names, r + j):
                lat64[n].append(1000 * timed(lambda n=n, c=c: systems[n](c)))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {through[n][-1]:.0f}/s" for n in names), flush=True)
    return {
        n: {"texts_per_s": statistics.median(through[n]), "texts_per_s_all": through[n],
            "b1_p50_ms": pct(lat1[n], 50), "b1_p95_ms": pct(lat1[n], 95),
            "b64_p50_ms": pct(lat64[n], 50), "b64_p95_ms": pct(lat64[n], 95),
            "b1_calls": len(lat1[n]), "b64_calls": len(lat64[n])}
        for n in names
    }


def multitask_models(run: Any, k: int) -> tuple[Any, list[Any]]:
    """One Predictor with k classification heads, and k single-task Predictors (own encoder each).

    Heads are copies of the run's head with small seeded perturbations, so the k answers differ.
    """
    from polytask.config.schema import TaskConfig
    from polytask.multitask.model import PolytaskModel
    from polytask.runs import LoadedRun
    from polytask.serving.predictor import Predictor
    from polytask.tasks import build_task

    (name, task), = run.tasks.items()
    gen = torch.Generator().manual_seed(0)
    tasks, heads = {}, {}
    for i in range(k):
        tcfg = TaskConfig(name=f"task{i}", type="classification", labels=task.labels, data=task.config.data)
        tasks[tcfg.name] = build_task(tcfg, MAX_LENGTH)
        head = copy.deepcopy(run.model.heads[name])
        with torch.no_grad():
            for p in head.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        heads[tcfg.name] = head
    multi = PolytaskModel(run.model.encoder, tasks)
    multi.heads = torch.nn.ModuleDict(heads)
    multi_p = Predictor(LoadedRun(multi.eval(), tasks, run.config, run.checkpoint_dir, run.meta), device="cpu",
                        precision="no")
    singles = []
    for n, t in tasks.items():
        single = PolytaskModel(copy.deepcopy(run.model.encoder), {n: t})
        single.heads = torch.nn.ModuleDict({n: heads[n]})
        singles.append(Predictor(LoadedRun(single.eval(), {n: t}, run.config, run.checkpoint_dir, run.meta),
                                 device="cpu", precision="no"))
    return multi_p, singles


def bench_multitask(run: Any, texts: list[str], rounds: int, k: int) -> dict[str, Any]:
    multi, singles = multitask_models(run, k)
    together = multi.predict(texts)
    alone = [s.predict(texts) for s in singles]
    diff = max(abs(row[f"task{i}"]["probs"]["pos"] - alone[i][j]["probs"]["pos"])
               for j, row in enumerate(together) for i in range(k))
    t_multi, t_single = [], []
    for r in range(rounds):
        for which in rotate(["multi", "single"], r):
            if which == "multi":
                t_multi.append(timed(lambda: multi.predict(texts)))
            else:
                t_single.append(timed(lambda: [s.predict(texts) for s in singles]))
    m, s = statistics.median(t_multi), statistics.median(t_single)
    return {"k": k, "texts": len(texts), "multi_s": m, "singles_s": s, "speedup": s / m,
            "target_speedup": 0.8 * k, "max_abs_prob_diff": diff}


# ---- main ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 sentences, 1 round, 10 single calls")
    ap.add_argument("--run", type=Path, default=None, help=f"a polytask SST-2 run (default {SST2_RUN} when present)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--singles", type=int, default=100, help="sentences timed one at a time per round")
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: theirs)")
    ap.add_argument("--train-steps", type=int, default=60, help="steps of the brief run made when no run exists")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--limit", type=int, default=None, help="time only the first N dev sentences (all 872 by default)")
    ap.add_argument("--no-multitask", action="store_true", help="skip the multi-task timing (3 heads vs 3 models)")
    args = ap.parse_args()
    if not (DATA / "dev.txt").is_file():
        sys.exit(f"SST-2 not found at {DATA} (set POLYTASK_DATA to the folder holding sst2_sent/)")
    if args.quick:
        args.rounds, args.singles = 1, 10

    import polytask
    from polytask.export.onnx import export_onnx
    from polytask.export.quantize import quantize_onnx
    from polytask.serving.onnx_backend import OnnxPredictor

    if args.threads:
        torch.set_num_threads(args.threads)
    texts, gold = read_sst2(DATA / "dev.txt")
    if args.quick:
        texts, gold = texts[:64], gold[:64]
    elif args.limit:
        texts, gold = texts[: args.limit], gold[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "inference_work"
    run_dir = args.run or (SST2_RUN if (SST2_RUN / "checkpoints").is_dir() else None)
    trained_here = run_dir is None
    if trained_here:
        steps = 3 if args.quick else args.train_steps
        print(f"no SST-2 run found: fine-tuning the packaged MiniLM for {steps} steps", flush=True)
        run_dir = brief_run(work / "run", steps)

    print(f"exporting {run_dir} to ONNX and quantising (accuracy measured on SST-2 dev)", flush=True)
    t0 = time.perf_counter()
    fp32 = export_onnx(run_dir, work / "onnx-fp32")
    export_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        dev = DATA / "dev.txt"
        if args.quick:  # score the int8 model on the same 64 sentences only
            dev = Path(tmp) / "dev.txt"
            dev.write_text("\n".join((DATA / "dev.txt").read_text(encoding="utf-8").splitlines()[:64]) + "\n")
        t0 = time.perf_counter()
        q = quantize_onnx(fp32.directory, work / "onnx-int8", data=dev)["quantization"]
        quantize_s = time.perf_counter() - t0

    torch_p = polytask.load(str(run_dir), device="cpu", precision="no")
    bf16_p = polytask.load(str(run_dir), device="cpu", precision="bf16")
    (task,) = torch_p.task_names(None)
    onnx_p = OnnxPredictor(fp32.directory, num_threads=args.threads)
    int8_p = OnnxPredictor(work / "onnx-int8", num_threads=args.threads)
    pipe = hf_pipeline(torch_p, task)

    # Same computation: the pipeline's probabilities equal polytask's (before any timing).
    check = texts[:32]
    hf_out = pipe(check, batch_size=8, top_k=None, truncation=True, max_length=MAX_LENGTH)
    ours = torch_p.predict(check)
    agree = max(abs({d["label"]: d["score"] for d in h}["pos"] - o["probs"]["pos"]) for h, o in zip(hf_out, ours, strict=True))
    print(f"pipeline vs polytask max |prob diff| on 32 sentences: {agree:.2e}", flush=True)
    if agree > 1e-4:
        sys.exit("the pipeline model does not compute what the polytask run computes; timings would compare different models")

    systems = {
        "polytask-torch": lambda xs: torch_p.predict(xs),
        "polytask-torch-bf16": lambda xs: bf16_p.predict(xs),
        "polytask-onnx": lambda xs: onnx_p.predict(xs),
        "polytask-onnx-int8": lambda xs: int8_p.predict(xs),
        "hf-pipeline": lambda xs: pipe(xs, batch_size=min(64, len(xs)), truncation=True, max_length=MAX_LENGTH),
    }
    print(f"timing {len(systems)} systems on {len(texts)} sentences, {args.rounds} round(s)", flush=True)
    speed = bench_systems(systems, texts, args.rounds, args.singles)
    base = speed["hf-pipeline"]
    for row in speed.values():
        row["throughput_vs_pipeline"] = row["texts_per_s"] / base["texts_per_s"]
        row["b1_p50_speedup_vs_pipeline"] = base["b1_p50_ms"] / row["b1_p50_ms"]
        row["b64_p50_speedup_vs_pipeline"] = base["b64_p50_ms"] / row["b64_p50_ms"]

    print("multi-task: one 3-head model vs 3 single-task models", flush=True)
    from polytask.runs import load_run

    multi = None if args.no_multitask else bench_multitask(load_run(run_dir), texts, args.rounds, k=3)

    accuracy = {
        name: sum(p["label"] == g for p, g in zip(pred.predict(texts), gold, strict=True)) / len(texts)
        for name, pred in (("polytask-torch", torch_p), ("polytask-torch-bf16", bf16_p), ("polytask-onnx", onnx_p), ("polytask-onnx-int8", int8_p))
    }
    import onnxruntime
    import transformers

    result = {
        "benchmark": "inference", "quick": args.quick,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "ort_threads": args.threads or "default",
                    "load_average": os.getloadavg()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "model": {"run": project_path(run_dir), "trained_here": trained_here, "task": task,
                  "encoder": "all-MiniLM-L6-v2 (packaged)", "accuracy_on_timed_sentences": accuracy},
        "data": {"file": str(DATA / "dev.txt"), "sentences": len(texts), "rounds": args.rounds,
                 "batch1_sentences_per_round": args.singles},
        "export": {"seconds": export_s, "parity_max_abs_diff": fp32.max_abs_diff},
        "quantization": {"seconds": quantize_s, **q},
        "pipeline_agreement_max_abs_prob_diff": agree,
        "systems": speed,
        "multitask": multi,
    }
    (args.out / "inference.json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    (args.out / "inference.md").write_text(md)
    print(md)
    print(f"written: {args.out / 'inference.json'}, {args.out / 'inference.md'}")


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"SST-2 dev, {r['data']['sentences']} sentences, {r['data']['rounds']} round(s){' (--quick)' if r['quick'] else ''}; "
        f"{m['cpu_count']} CPUs, torch threads {m['torch_threads']}, load average at the end "
        f"{m['load_average'][0]:.1f}; torch {r['versions']['torch']}, onnxruntime {r['versions']['onnxruntime']}, "
        f"transformers {r['versions']['transformers']}.",
        "",
        "| system | texts/s (batch 64, all sentences) | vs pipeline | batch 1 p50 / p95 ms | vs pipeline (p50) "
        "| batch 64 p50 / p95 ms | vs pipeline (p50) | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in r["systems"].items():
        acc = r["model"]["accuracy_on_timed_sentences"].get(name)
        lines.append(
            f"| {name} | {s['texts_per_s']:.0f} | {s['throughput_vs_pipeline']:.2f}x | "
            f"{s['b1_p50_ms']:.1f} / {s['b1_p95_ms']:.1f} | {s['b1_p50_speedup_vs_pipeline']:.2f}x | "
            f"{s['b64_p50_ms']:.0f} / {s['b64_p95_ms']:.0f} | {s['b64_p50_speedup_vs_pipeline']:.2f}x | "
            f"{'' if acc is None else f'{acc:.3f}'} |"
        )
    mt = r["multitask"]
    q = r["quantization"]
    ev = next(iter(q["eval"].values()))
    if mt is not None:
        lines += [
            "",
            f"Multi-task (k={mt['k']}): one model answering {mt['k']} tasks {mt['multi_s']:.2f} s vs {mt['k']} "
            f"single-task models {mt['singles_s']:.2f} s for {mt['texts']} sentences: **{mt['speedup']:.2f}x** "
            f"(target {mt['target_speedup']:.1f}x; answers identical up to {mt['max_abs_prob_diff']:.1e}).",
        ]
    lines += [
        "",
        f"ONNX export {r['export']['seconds']:.0f} s, parity with torch on new shapes {r['export']['parity_max_abs_diff']:.1e}. "
        f"int8: {q['size_bytes']['int8'] / 1e6:.1f} MB vs {q['size_bytes']['fp32'] / 1e6:.1f} MB; "
        f"{ev['metric']} on {ev['n_examples']} dev sentences {ev['fp32']:.4f} (fp32) -> {ev['int8']:.4f} (int8), "
        f"difference {ev['difference']:+.4f}.",
        f"Model: {'a run fine-tuned here for a few steps (accuracy not meaningful)' if r['model']['trained_here'] else project_path(r['model']['run'])}; "
        f"the pipeline runs the same weights (max prob difference {r['pipeline_agreement_max_abs_prob_diff']:.1e}).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
