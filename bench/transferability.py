"""Do the transferability estimates rank sources as fine-tuning does? Sources x targets on ../shared/data.

Two parts, each cached in its own results file so the bench resumes and either part re-runs alone:

1. ``finetune`` (the expensive "measured accuracy"): every source fine-tuned on every target with
   one fixed small recipe through polytask's own ``train`` (``--labels`` stratified training
   labels, a few epochs, short ``max_length``), scored once at its last step on held-out data
   (no model selection on it). Results: ``bench/results/transferability-finetune.json``.
2. ``estimate``: ``polytask.transferability`` on the same training labels of each target, every
   source, every estimate. Results: ``bench/results/transferability-estimates.json``.

Then the Kendall tau (``scipy.stats.kendalltau``, tau-b) between each estimate and the measured
accuracy over the sources, per target and overall (overall = the mean of the per-target taus),
and the compute ratio (the estimate's seconds, feature extraction included, against the
fine-tunes' seconds), written to ``bench/results/transferability.md``.

Targets: SST-2, AG News, SMS spam, Amazon kitchen reviews (sentence classification), CoNLL-2003
NER (token classification; measured by entity F1). Sources: the packaged MiniLM, a MiniLM with
random weights (same architecture and tokenizer), a BiLSTM over GloVe 6B 50d (random LSTM), a
BiLSTM with random embeddings, and MiniLM runs first fine-tuned with polytask on IMDB and on
Amazon books.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/transferability.py [--grid reduced|full]
     [--parts finetune estimate] [--work bench/runs/transferability]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer import ag_news, amazon, budget, imdb, sst2, write_jsonl  # noqa: E402 (a sibling bench)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("POLYTASK_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results"
NEVER = 10**9  # eval_every: score once, at the last step
ESTIMATES = ["logme", "logme_centered", "leep", "hscore", "knn", "logistic"]
CLEAR = 0.03  # a measured gap this large is beyond single-seed noise (see report)

BILSTM_TRAIN_ENCODER = {"type": "bilstm", "pooling": "max", "dropout": 0.3,
                        "options": {"vocab_from_vectors": True, "max_vocab": 50000, "lowercase": True,
                                    "embedding_dropout": 0.2}}
TRANSFORMER_RECIPE = {"batch_size": 16, "lr": 1e-4, "warmup_ratio": 0.1, "epochs": 5}
BILSTM_RECIPE = {"batch_size": 16, "lr": 2e-3, "warmup_ratio": 0.0, "weight_decay": 0.0, "epochs": 15}

TARGETS_REDUCED = ["sst2", "ag_news", "sms_spam", "amazon_kitchen"]
TARGETS_FULL = [*TARGETS_REDUCED, "conll"]
SOURCES_REDUCED = ["minilm", "minilm_scratch", "bilstm_glove", "bilstm_random", "minilm_imdb"]
SOURCES_FULL = [*SOURCES_REDUCED, "minilm_amazon_books"]


# --- targets -------------------------------------------------------------------------------


def sms_spam() -> list[dict[str, Any]]:
    rows = []
    with open(DATA / "sms_spam/SMSSpamCollection.tsv", encoding="utf-8") as fh:
        next(fh)  # header Label<TAB>SMS
        for line in fh:
            label, _, text = line.rstrip("\n").partition("\t")
            if text.strip():
                rows.append({"text": text, "label": label})
    return rows


def conll_sentences(split: str) -> list[tuple[list[str], list[str]]]:
    sents, words, tags = [], [], []
    for line in open(DATA / f"conll2003/{split}.txt", encoding="utf-8"):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sents.append((words, tags))
            words, tags = [], []
            continue
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        sents.append((words, tags))
    return sents


def write_conll(path: Path, sents: list[tuple[list[str], list[str]]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(ws, ts, strict=True)) + "\n" for ws, ts in sents),
                    encoding="utf-8")
    return str(path)


def make_target(name: str, work: Path, labels: int, n_eval: int) -> dict[str, Any]:
    """Write the target's training labels and held-out set; return its task block (no model)."""
    data = work / "data"
    if name == "conll":
        import random

        train = conll_sentences("train")
        random.Random(0).shuffle(train)
        return {"name": "target", "type": "token_classification",
                "data": {"train": write_conll(data / f"conll_{labels}.conll", train[:labels]),
                         "dev": write_conll(data / "conll_eval.conll", conll_sentences("valid")[:n_eval]),
                         "format": "conll"}}
    if name == "sst2":
        pool, held = sst2("train"), sst2("dev")
    elif name == "ag_news":
        pool, held = ag_news()
    else:
        rows = amazon("kitchen") if name == "amazon_kitchen" else sms_spam()
        order = budget(rows, len(rows), 0)
        pool, held = order[: len(order) // 2], order[len(order) // 2:]
    return {"name": "target", "type": "classification",
            "data": {"train": write_jsonl(data / f"{name}_{labels}.jsonl", budget(pool, labels, 0)),
                     "dev": write_jsonl(data / f"{name}_eval.jsonl", budget(held, n_eval, 1)),
                     "format": "jsonl"}}


# --- sources ---------------------------------------------------------------------------------


def scratch_minilm(work: Path) -> str:
    """A MiniLM folder with the packaged architecture and tokenizer but random weights."""
    out = work / "scratch_minilm"
    if (out / "config.json").is_file():
        return str(out)
    import torch

    from polytask.encoders.transformer import TransformerEncoder, resolve_source

    torch.manual_seed(0)
    enc = TransformerEncoder.from_files(Path(resolve_source("default")))
    enc.model.save_pretrained(out)
    enc.tokenizer.save_pretrained(out)
    return str(out)


def source_run(name: str, work: Path, rows_train: list[dict], rows_dev: list[dict], max_length: int) -> str:
    """A MiniLM fine-tuned with polytask on a source task (trained once, then reused)."""
    run_dir = work / "runs" / name
    if (run_dir / "checkpoints").is_dir():
        return str(run_dir)
    from polytask.config import parse_config
    from polytask.training.loop import train as train_run

    raw = {"name": name,
           "tasks": [{"name": name, "type": "classification",
                      "data": {"train": write_jsonl(work / f"data/{name}_train.jsonl", rows_train),
                               "dev": write_jsonl(work / f"data/{name}_dev.jsonl", rows_dev), "format": "jsonl"}}],
           "train": {"progress": False, "batch_size": 16, "lr": 1e-4, "epochs": 1, "max_length": max_length, "seed": 1}}
    t0 = time.perf_counter()
    r = train_run(parse_config(raw), output_dir=run_dir, overwrite=True)
    print(json.dumps({"source_run": name, "dev": r.dev, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return str(run_dir)


def source_spec(name: str, work: Path) -> str:
    """The ``--sources`` spelling of a bench source (building it first when needed)."""
    if name == "minilm":
        return "default"
    if name == "minilm_scratch":
        return scratch_minilm(work)
    if name == "bilstm_glove":
        return "bilstm:glove-6b-50d"
    if name == "bilstm_random":
        return "bilstm"
    if name == "minilm_imdb":
        rows = imdb(900)
        return source_run("source_imdb", work, rows[:800], rows[800:], 128)
    if name == "minilm_amazon_books":
        order = budget(amazon("books"), 2000, 0)
        return source_run("source_amazon_books", work, order[:800], order[-100:], 128)
    raise SystemExit(f"unknown source {name!r}")


def finetune_config(target_task: dict, source: str, spec: str, max_length: int, seed: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": f"ft_{source}", "tasks": [target_task],
                           "train": {"progress": False, "eval_every": NEVER, "max_length": max_length, "seed": seed}}
    if source.startswith("bilstm"):
        enc = json.loads(json.dumps(BILSTM_TRAIN_ENCODER))
        if source == "bilstm_glove":
            enc["options"]["vectors"] = "glove-6b-50d"
        else:
            del enc["options"]["vocab_from_vectors"], enc["options"]["max_vocab"]
        raw["encoder"] = enc
        raw["train"].update(BILSTM_RECIPE)
    else:
        raw["train"].update(TRANSFORMER_RECIPE)
        if source in ("minilm_imdb", "minilm_amazon_books"):
            raw["transfer"] = {"init_from": spec}
        elif source != "minilm":
            raw["encoder"] = {"name_or_path": spec}
    return raw


# --- the two parts -----------------------------------------------------------------------------


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def part_finetune(args: argparse.Namespace, targets: dict[str, dict], specs: dict[str, str]) -> dict[str, Any]:
    from polytask.config import parse_config
    from polytask.training.loop import train as train_run

    path = RESULTS / "transferability-finetune.json"
    done = load_finetunes()
    for seed in args.seeds:
        for t, task in targets.items():
            for s, spec in specs.items():
                key = f"{t}|{s}|{seed}"
                if key in done:
                    continue
                raw = finetune_config(task, s, spec, args.max_length, seed)
                t0 = time.perf_counter()
                r = train_run(parse_config(raw), output_dir=args.work / "runs" / f"ft_{t}_{s}", overwrite=True)
                metric = "target/f1" if task["type"] == "token_classification" else "target/accuracy"
                done[key] = {"target": t, "source": s, "seed": seed, "metric": metric, "score": r.dev[metric],
                             "seconds": time.perf_counter() - t0, "steps": r.steps}
                print(json.dumps(done[key]), flush=True)
                path.write_text(json.dumps(done, indent=1))
    return done


def load_finetunes() -> dict[str, Any]:
    """The cached fine-tunes, keyed target|source|seed (older keys without a seed were seed 1)."""
    raw = load_json(RESULTS / "transferability-finetune.json")
    return {(k if k.count("|") == 2 else f"{k}|{v.get('seed', 1)}"): {"seed": 1, **v} for k, v in raw.items()}


def aggregate(done: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """target|source -> mean score and total seconds over ``seeds`` (cells missing a seed are left out)."""
    out: dict[str, Any] = {}
    for key in {k.rsplit("|", 1)[0] for k in done}:
        runs = [done.get(f"{key}|{seed}") for seed in seeds]
        if all(runs):
            scores = [r["score"] for r in runs]
            out[key] = {"score": statistics.mean(scores), "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                        "seconds": sum(r["seconds"] for r in runs), "seeds": len(runs)}
    return out


def part_estimate(args: argparse.Namespace, targets: dict[str, dict], specs: dict[str, str]) -> dict[str, Any]:
    import polytask

    path = RESULTS / "transferability-estimates.json"
    out = load_json(path)
    for t, task in targets.items():
        raw = {"name": f"target_{t}", "tasks": [task], "train": {"max_length": args.max_length}}
        t0 = time.perf_counter()
        result = polytask.transferability(raw, sources=list(specs.values()), seed=args.seed, estimates=ESTIMATES)
        names = dict(zip(specs.values(), specs.keys(), strict=True))
        for row in result.to_json()["sources"]:
            out[f"{t}|{names[row['source']]}"] = {"target": t, "source": names[row["source"]], **row}
        print(f"{t}: {time.perf_counter() - t0:.1f} s for {len(specs)} sources", flush=True)
        path.write_text(json.dumps(out, indent=1))
    return out


# --- the tables ----------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def report(args: argparse.Namespace, measured: dict, estimates: dict, targets: list[str], sources: list[str]) -> str:
    from scipy.stats import kendalltau

    names = sorted({n for e in estimates.values() for n in e["estimates"]},
                   key=lambda n: ESTIMATES.index(n) if n in ESTIMATES else 99)
    lines = ["## Measured score and estimates per target and source", ""]
    lines += ["| target | source | measured | fine-tune s | dim | features s | " + " | ".join(names) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(names)]
    taus: dict[str, dict[str, float]] = {n: {} for n in names}
    counts: dict[str, dict[str, int]] = {n: {} for n in names}
    wrong: list[str] = []
    for t in targets:
        cells = [s for s in sources if f"{t}|{s}" in measured and f"{t}|{s}" in estimates]
        for s in cells:
            m, e = measured[f"{t}|{s}"], estimates[f"{t}|{s}"]
            vals = [fmt((e["estimates"].get(n) or {}).get("value")) for n in names]
            score = f"{m['score']:.3f}" + (f" ± {m['sd']:.3f}" if m.get("seeds", 1) > 1 else "")
            lines.append(f"| {t} | {s} | {score} | {m['seconds']:.0f} | {e['dim']} | "
                         f"{e['feature_seconds']:.1f} | " + " | ".join(vals) + " |")
        acc = [measured[f"{t}|{s}"]["score"] for s in cells]
        best_true = cells[max(range(len(cells)), key=lambda i: acc[i])] if cells else None
        for n in names:
            pairs = [(a, (estimates[f"{t}|{s}"]["estimates"].get(n) or {}).get("value"), s)
                     for a, s in zip(acc, cells, strict=True)]
            pairs = [p for p in pairs if p[1] is not None]
            if len(pairs) >= 2:
                tau = kendalltau([p[0] for p in pairs], [p[1] for p in pairs]).statistic
                taus[n][t] = float(tau)
                counts[n][t] = len(pairs)
                top = max(pairs, key=lambda p: p[1])[2]
                if top != best_true and n in ("logme", "logistic", "knn", "hscore"):
                    wrong.append(f"{t}: {n} ranks {top} first; fine-tuning ranks {best_true} first")
    lines += ["", "## Kendall tau-b (estimate vs measured), per target (sources compared); "
              "overall = mean of per-target taus", ""]
    lines += ["| estimate | " + " | ".join(targets) + " | overall |", "|---|" + "---|" * (len(targets) + 1)]
    for n in names:
        row = [f"{fmt(taus[n].get(t), 2)} ({counts[n][t]})" if t in taus[n] else "-" for t in targets]
        overall = statistics.mean(taus[n].values()) if taus[n] else None
        lines.append(f"| {n} | " + " | ".join(row) + f" | {fmt(overall, 2)} |")
    # Single-seed accuracies on a few hundred held-out examples carry a standard error of about
    # 0.02; pairs closer than CLEAR are mostly noise. Agreement on the clear pairs only:
    lines += ["", f"## Pairwise agreement on the clear pairs only (measured gap > {CLEAR}), all targets", "",
              "| estimate | pairs in the right order | share |", "|---|---|---|"]
    for n in names:
        right = total = 0
        for t in targets:
            cells = [s for s in sources if f"{t}|{s}" in measured and f"{t}|{s}" in estimates
                     and (estimates[f"{t}|{s}"]["estimates"].get(n) or {}).get("value") is not None]
            for i, a in enumerate(cells):
                for b in cells[i + 1:]:
                    dm = measured[f"{t}|{a}"]["score"] - measured[f"{t}|{b}"]["score"]
                    if abs(dm) > CLEAR:
                        de = (estimates[f"{t}|{a}"]["estimates"][n]["value"]
                              - estimates[f"{t}|{b}"]["estimates"][n]["value"])
                        total += 1
                        right += dm * de > 0
        lines.append(f"| {n} | {right} / {total} | {fmt(right / total if total else None, 2)} |")
    ft_s = sum(m["seconds"] for k, m in measured.items() if k in estimates)
    lines += ["", "## Compute: estimate seconds (features included) against fine-tune seconds, same cells", "",
              "| estimate | estimate alone s | with features s | fine-tune s | ratio (with features) |",
              "|---|---|---|---|---|"]
    for n in names:
        alone = sum(((e["estimates"].get(n) or {}).get("seconds") or 0.0) for k, e in estimates.items() if k in measured)
        est_s = alone + sum(e["feature_seconds"] for k, e in estimates.items() if k in measured)
        lines.append(f"| {n} | {alone:.1f} | {est_s:.1f} | {ft_s:.0f} | {100 * est_s / max(ft_s, 1e-9):.2f}% |")
    lines += ["", "## Where the estimates' top source differs from fine-tuning's", ""]
    lines += [f"- {w}" for w in wrong] or ["- nowhere"]
    overall = {n: statistics.mean(v.values()) for n, v in taus.items() if v and n != "leep"}
    if overall:
        best = max(overall, key=overall.get)
        lines += ["", f"## Pairs ranked the wrong way round (best estimate overall: {best}; and logme)", ""]
        for n in dict.fromkeys([best, "logme"]):
            for t in targets:
                cells = [s for s in sources if f"{t}|{s}" in measured and f"{t}|{s}" in estimates
                         and (estimates[f"{t}|{s}"]["estimates"].get(n) or {}).get("value") is not None]
                bad = []
                for i, a in enumerate(cells):
                    for b in cells[i + 1:]:
                        dm = measured[f"{t}|{a}"]["score"] - measured[f"{t}|{b}"]["score"]
                        de = (estimates[f"{t}|{a}"]["estimates"][n]["value"]
                              - estimates[f"{t}|{b}"]["estimates"][n]["value"])
                        if dm * de < 0:
                            hi, lo = (a, b) if dm > 0 else (b, a)
                            gap = abs(dm)
                            bad.append(f"{hi} > {lo} by {gap:.3f}")
                lines.append(f"- {n}, {t}: " + ("; ".join(bad) if bad else "none")
                             + " (measured order shown; the estimate has it reversed)" * bool(bad))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=["reduced", "full"], default="reduced")
    ap.add_argument("--parts", nargs="*", default=["finetune", "estimate"], choices=["finetune", "estimate"],
                    help="what to (re)compute; none: only the tables, from the cached results")
    ap.add_argument("--labels", type=int, default=200, help="training labels (sentences for CoNLL) per target")
    ap.add_argument("--eval", type=int, default=300, help="held-out examples per target")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1],
                    help="fine-tune seeds (measured = their mean); the estimates use the first")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "runs" / "transferability")
    args = ap.parse_args()
    target_names = TARGETS_FULL if args.grid == "full" else TARGETS_REDUCED
    source_names = SOURCES_FULL if args.grid == "full" else SOURCES_REDUCED
    RESULTS.mkdir(parents=True, exist_ok=True)
    targets = {t: make_target(t, args.work, args.labels, args.eval) for t in target_names}
    specs = {s: source_spec(s, args.work) for s in source_names}
    args.seed = args.seeds[0]
    done = part_finetune(args, targets, specs) if "finetune" in args.parts else load_finetunes()
    measured = aggregate(done, args.seeds)
    estimates = part_estimate(args, targets, specs) if "estimate" in args.parts else load_json(
        RESULTS / "transferability-estimates.json")
    text = report(args, measured, estimates, target_names, source_names)
    cmd = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python bench/transferability.py", *sys.argv[1:]])
    note = " (these tables re-printed from the cached results; the runs: the same without `--parts`)" * (not args.parts)
    header = (f"# Transferability estimates against fine-tuning\n\nCommand: `{cmd}`{note}\n\n"
              f"Recipe: {args.labels} stratified training labels per target (CoNLL: sentences), held-out "
              f"{args.eval}, max_length {args.max_length}, fine-tune seeds {args.seeds} (measured = their mean; the "
              f"estimates use seed {args.seed}); transformers {TRANSFORMER_RECIPE}, "
              f"BiLSTMs {BILSTM_RECIPE}; scored once at the last step.\n\n")
    print(text)
    (RESULTS / "transferability.md").write_text(header + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
