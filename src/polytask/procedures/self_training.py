"""Self-training: pseudo-label the confident part of an unlabelled pool, retrain, repeat.

The classic procedure (Yarowsky, ACL 1995, https://aclanthology.org/P95-1026; Scudder 1965), as
revisited for pretrained text encoders by Du et al., "Self-training Improves Pre-training for
Natural Language Understanding", NAACL 2021 (https://arxiv.org/abs/2010.02194) and for few
labels per class: round 0 trains on the labelled data; each later round predicts the remaining
pool with the previous round's model, adds the examples whose predicted class has probability at
least ``threshold`` (at most ``per_class`` per class and round, the most confident first, so one
easy class cannot flood the training set), and trains again **from the starting encoder** on the
labelled data plus every pseudo-label so far (retraining from scratch keeps a round's mistakes
from compounding through the weights). A pseudo-label, once given, is kept; added examples leave
the pool.

Token classification: a sentence's confidence is that of its least confident word (the
probability of the predicted tag at the word's first subword), so a pseudo-labelled sentence has
every tag above the threshold; its "class", for the per-class cap, is the entity type it mentions
most (ties: the first mentioned), or ``O`` for a sentence without entities.

Layout of the output folder::

    round-0/train.jsonl dev.jsonl [test.jsonl]   the labelled splits, as every round reads them
    round-0/run/                                  the round's polytask run (polytask.load works)
    round-N/pseudo.jsonl                          every pseudo-label so far (text, label or tokens, tags and
                                                  class; confidence, round, source file:line)
    round-N/train.jsonl                           labelled train + pseudo-labels: the round's training file
    round-N/run/
    summary.json                                  per round: examples added per class, dev metric
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polytask.config.schema import ColumnsConfig, ExperimentConfig, TaskConfig
from polytask.data.example import Example
from polytask.data.unlabeled import read_lines, read_unlabeled  # noqa: F401  (re-exported)
from polytask.errors import ConfigError


@dataclass
class RoundResult:
    """One round: what it added and how its model scored.

    Args:
        round: 0 for the labelled-only run.
        run_dir: the round's run folder.
        added: new pseudo-labelled examples per class in this round.
        pseudo_total: pseudo-labelled examples the round trained on.
        pool_left: unlabelled examples not yet pseudo-labelled.
        dev_metric: the run's best value of ``metric`` on dev.
        dev: every dev metric of the run (final evaluation).
    """

    round: int
    run_dir: str
    added: dict[str, int]
    pseudo_total: int
    pool_left: int
    dev_metric: float | None
    dev: dict[str, float] = field(default_factory=dict)


@dataclass
class SelfTrainingResult:
    """Every round of a self-training procedure (also written to ``summary.json``)."""

    task: str
    metric: str
    threshold: float
    per_class: int | None
    rounds: list[RoundResult]
    output_dir: Path
    summary_path: Path
    stopped: str = ""  # why it stopped before the last round, if it did


def _pick_task(cfg: ExperimentConfig, task: str | None) -> TaskConfig:
    return cfg.task_with(task, "unlabeled", "self-train", "tasks[].unlabeled: {path: ...}",
                         "tasks.{name}.unlabeled: {path: FILE} (a file of texts)")


def _write_jsonl(path: Path, examples: list[Example], extra: list[dict[str, Any]] | None = None) -> None:
    """JSONL the jsonl reader reads back: text/text_pair/label, or tokens/tags for word lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i, ex in enumerate(examples):
            words = isinstance(ex.text, list)
            rec: dict[str, Any] = {"tokens" if words else "text": ex.text}
            if ex.text_pair is not None:
                rec["text_pair"] = ex.text_pair
            rec["tags" if words else "label"] = ex.label
            if extra is not None:
                rec.update(extra[i])
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _round_config(cfg: ExperimentConfig, task: str, files: dict[str, Path], labels: list[str]) -> ExperimentConfig:
    """``cfg`` with ``task`` reading the round's JSONL files (every reader setting reset to JSONL's)."""
    new = cfg.model_copy(deep=True)
    tasks = []
    for t in new.tasks:
        if t.name == task:
            data = t.data.model_copy(update={
                "train": str(files["train"]), "dev": str(files["dev"]),
                "test": str(files["test"]) if "test" in files else None, "format": "jsonl",
                "columns": ColumnsConfig(), "label_map": None, "limit": None, "delimiter": None,
                "header": None, "encoding": "utf-8", "hf_name": None,
            })
            # The label set of round 0, so a class that no pseudo-label reaches keeps its head row.
            t = t.model_copy(update={"data": data, "unlabeled": None, "labels": t.labels or labels})
        tasks.append(t)
    new.tasks = tasks
    return new


def self_train(
    cfg: ExperimentConfig,
    *,
    task: str | None = None,
    output_dir: str | Path | None = None,
    rounds: int | None = None,
    threshold: float | None = None,
    per_class: int | None = None,
) -> SelfTrainingResult:
    """Run self-training on one classification or token classification task with an ``unlabeled`` pool.

    Args:
        cfg: the experiment (its other tasks train along unchanged).
        task: the task (may be omitted when only one task has an ``unlabeled`` block).
        output_dir: folder of the rounds (default ``<output_dir or runs/name>/self_training``).
        rounds: rounds after round 0 (default ``unlabeled.self_training.rounds``).
        threshold: confidence a pseudo-label needs (default ``unlabeled.self_training.threshold``).
        per_class: at most this many new examples per class and round (default from the config;
            None: no limit).

    Returns:
        every round's additions and dev metric (also in ``summary.json``).

    Raises:
        ConfigError: no such task, no pool, or a task that is not (token) classification.
        DataError: a missing or empty pool file.
    """
    import polytask
    from polytask.data.loading import load_splits
    from polytask.runs import default_run_dir
    from polytask.tasks import build_task
    from polytask.tasks.classification import ClassificationTask
    from polytask.tasks.token_classification import TokenClassificationTask
    from polytask.training.loop import train

    tc = _pick_task(cfg, task)
    settings = tc.unlabeled.self_training  # type: ignore[union-attr]
    rounds = settings.rounds if rounds is None else rounds
    threshold = settings.threshold if threshold is None else threshold
    per_class = settings.per_class if per_class is None else per_class
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1; got {rounds}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold is a probability, between 0 and 1; got {threshold}")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"per_class must be at least 1 (or unset for no limit); got {per_class}")
    task_obj = build_task(tc, cfg.train.max_length)
    if not isinstance(task_obj, (ClassificationTask, TokenClassificationTask)):
        raise ConfigError(
            f"self-training pseudo-labels classification and token classification tasks; task {tc.name!r} is "
            f"{tc.type!r}, whose predictions carry no one class probability to threshold",
            field=f"tasks.{tc.name}.type",
        )
    token_level = task_obj.token_level

    pool = read_unlabeled(tc, token_level)
    splits = load_splits(tc.data, token_level=token_level)
    task_obj.fit_labels(splits["train"])
    labels = list(task_obj.labels or [])
    out = Path(output_dir) if output_dir else default_run_dir(cfg) / "self_training"
    files = {s: out / "round-0" / f"{s}.jsonl" for s in splits}
    for s, exs in splits.items():
        _write_jsonl(files[s], exs)

    def run_round(r: int, train_file: Path) -> tuple[Path, Any]:
        round_cfg = _round_config(cfg, tc.name, {**files, "train": train_file}, labels)
        run_dir = out / f"round-{r}" / "run"
        return run_dir, train(round_cfg, output_dir=run_dir, overwrite=True)

    run_dir, res = run_round(0, files["train"])
    metric = res.metric
    results = [RoundResult(0, str(run_dir), {}, 0, len(pool), res.best_metric, dict(res.dev))]
    pseudo: list[Example] = []
    pseudo_info: list[dict[str, Any]] = []
    stopped = ""
    for r in range(1, rounds + 1):
        if not pool:
            stopped = f"the pool was used up before round {r}"
            break
        predictor = polytask.load(str(run_dir))
        if token_level:
            preds = tag_confidences(predictor, tc.name, pool)
        else:
            preds = [row[tc.name] for row in predictor.predict_examples(pool, [tc.name])]
        chosen = select_confident(preds, threshold, per_class)
        if not chosen:
            stopped = f"no pool example reached the threshold {threshold} in round {r}"
            break
        added: dict[str, int] = {}
        for i in chosen:
            label = preds[i]["label"]
            added[label] = added.get(label, 0) + 1
            target = preds[i]["tags"] if token_level else label
            pseudo.append(Example(text=pool[i].text, text_pair=pool[i].text_pair, label=target, where=pool[i].where))
            info = {"confidence": preds[i]["probs"][label], "round": r, "source": pool[i].where}
            pseudo_info.append({**info, "class": label} if token_level else info)
        taken = set(chosen)
        pool = [ex for i, ex in enumerate(pool) if i not in taken]
        _write_jsonl(out / f"round-{r}" / "pseudo.jsonl", pseudo, pseudo_info)
        train_file = out / f"round-{r}" / "train.jsonl"
        _write_jsonl(train_file, splits["train"] + pseudo)
        run_dir, res = run_round(r, train_file)
        results.append(RoundResult(r, str(run_dir), dict(sorted(added.items())), len(pseudo), len(pool),
                                   res.best_metric, dict(res.dev)))

    summary = out / "summary.json"
    result = SelfTrainingResult(tc.name, metric, threshold, per_class, results, out, summary, stopped)
    summary.write_text(json.dumps({
        "task": tc.name, "metric": metric, "threshold": threshold, "per_class": per_class, "stopped": stopped,
        "rounds": [asdict(r) for r in results],
    }, indent=2), encoding="utf-8")
    return result


def tag_confidences(predictor: Any, task: str, examples: list[Example]) -> list[dict[str, Any]]:
    """Per sentence: predicted tags, their least confident word's probability, and its class.

    Returns ``{"tags", "label", "probs": {label: confidence}}`` per example, shaped like a
    classification prediction so ``select_confident`` serves both: ``label`` is the entity type
    mentioned most (``O`` when none), ``confidence`` the minimum over words of the predicted tag's
    probability at the word's first subword (0 when a word was truncated away).

    Args:
        predictor: a loaded run (``polytask.load``) with the token classification ``task``.
        task: the task's name.
        examples: word lists.
    """
    import torch

    from polytask.augment.mention_replacement import mention_spans

    t = predictor.tasks[task]
    labels = t.labels or []
    words = [e if isinstance(e.text, list) else Example(text=str(e.text).split(), where=e.where) for e in examples]
    feats = predictor._features(t, words)
    out: list[dict[str, Any]] = []
    size = max(1, int(predictor.batch_size))
    for start in range(0, len(feats), size):
        batch = t.collate(feats[start : start + size], predictor.pad_id)
        with torch.no_grad():
            probs = predictor._logits(batch, [task])[task].float().softmax(-1).cpu()  # (B, T, C)
        for b, (word_ids, n_words) in enumerate(zip(batch["word_ids"], batch["n_words"], strict=True)):
            conf, best = probs[b].max(-1)  # (T,) probability and index of each position's best tag
            tags, confs = ["O"] * n_words, [0.0] * n_words
            seen: set[int] = set()
            for pos, w in enumerate(word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    tags[w], confs[w] = labels[int(best[pos])], float(conf[pos])
            kinds = [k for _, _, k in mention_spans(tags)]
            label = max(dict.fromkeys(kinds), key=kinds.count) if kinds else "O"
            out.append({"tags": tags, "label": label, "probs": {label: min(confs) if confs else 0.0}})
    return out


def select_confident(preds: list[dict[str, Any]], threshold: float, per_class: int | None) -> list[int]:
    """Indices of the predictions to pseudo-label: those whose predicted class has probability
    at least ``threshold``, at most ``per_class`` per class (the most confident first; ties by
    position), returned in pool order.

    Args:
        preds: classification predictions ``{"label": ..., "probs": {class: p}}``.
        threshold: the confidence needed.
        per_class: the cap per class, or None.
    """
    by_class: dict[str, list[tuple[float, int]]] = {}
    for i, p in enumerate(preds):
        conf = float(p["probs"][p["label"]])
        if conf >= threshold:
            by_class.setdefault(p["label"], []).append((-conf, i))
    keep: list[int] = []
    for items in by_class.values():
        items.sort()
        keep += [i for _, i in (items if per_class is None else items[:per_class])]
    return sorted(keep)
