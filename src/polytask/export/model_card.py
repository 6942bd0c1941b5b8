"""Model cards (``README.md``) for exported runs: what the model does, on what data, how well.

A card follows the Hugging Face layout (YAML front matter, then sections; Mitchell et al. 2019,
"Model Cards for Model Reporting"): tasks and labels, data, metrics with their split and step,
the training config, how to load it, intended use, limitations and library versions. Every
figure comes from the run's own files (``checkpoints/*/meta.json``, ``results.json``).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from polytask.runs import LoadedRun

if TYPE_CHECKING:
    from polytask.export.hf import HfExport

PIPELINE_TAGS = {True: "token-classification", False: "text-classification"}


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("polytask", "torch", "transformers", "tokenizers", "sentence-transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _run_root(run: LoadedRun) -> Path:
    """The run directory holding ``results.json`` (the checkpoint's grandparent)."""
    cdir = run.checkpoint_dir
    for p in (cdir, *cdir.parents[:3]):
        if (p / "results.json").is_file() or (p / "config.yaml").is_file():
            return p
    return cdir


def _metrics(run: LoadedRun) -> list[tuple[str, str, str, float]]:
    """(task, split, metric, value) rows: dev at the exported checkpoint, test from results.json."""
    rows: list[tuple[str, str, str, float]] = []
    for key, value in (run.meta.get("metrics") or {}).items():
        task, _, metric = key.partition("/")
        if metric and isinstance(value, (int, float)):
            rows.append((task, "dev", metric, float(value)))
    results = _run_root(run) / "results.json"
    if results.is_file():
        test = json.loads(results.read_text()).get("test") or {}
        for key, value in test.items():
            task, _, metric = key.partition("/")
            if metric and isinstance(value, (int, float)):
                rows.append((task, "test", metric, float(value)))
    return rows


def model_card(run: LoadedRun, export: HfExport, task: str | None) -> str:
    """The card of one exported folder: ``task`` for a task folder, None for the shared encoder."""
    cfg = run.config
    names = [task] if task else list(run.tasks)
    token = bool(task) and run.tasks[task].token_level
    span = bool(task) and run.tasks[task].registry_name == "extractive_qa"
    front: dict[str, Any] = {
        "library_name": "transformers",
        "tags": ["polytask", *sorted({run.tasks[n].registry_name for n in names})],
    }
    if task:
        front["pipeline_tag"] = "question-answering" if span else PIPELINE_TAGS[token]
    else:
        front["pipeline_tag"] = "feature-extraction"
        front["tags"].append("sentence-transformers")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    title = f"{cfg.name}: {task}" if task else f"{cfg.name}: shared encoder"
    lines += [f"# {title}", ""]
    lines += [
        f"Trained with [polytask](https://github.com/) from `{cfg.encoder.name_or_path}` "
        f"({cfg.encoder.type}, {cfg.encoder.pooling} pooling); exported from checkpoint "
        f"`{run.checkpoint_dir.name}` at step {run.meta.get('step', '?')}.",
        "",
        "## Tasks",
        "",
        "| task | type | problem type | labels |",
        "|---|---|---|---|",
    ]
    from polytask.export.hf import PROBLEM_TYPES

    for n in names:
        t = run.tasks[n]
        labels = ", ".join(t.labels) if t.labels else "(a real-valued score)"
        kind = "token classification" if t.token_level else PROBLEM_TYPES.get(t.registry_name, "?")
        if t.registry_name == "extractive_qa":
            labels, kind = "(an answer span of the context)", "question answering"
        lines.append(f"| {n} | {t.registry_name} | {kind} | {labels} |")
    lines += ["", "## Data", ""]
    for tcfg in cfg.tasks:
        if tcfg.name not in names:
            continue
        d = tcfg.data
        parts = [f"{s}: `{getattr(d, s)}`" for s in ("train", "dev", "test") if getattr(d, s)]
        if d.hf_name:
            parts.insert(0, f"Hugging Face dataset `{d.hf_name}`" + (f" ({d.hf_config})" if d.hf_config else ""))
        lines.append(f"- {tcfg.name}: " + ("; ".join(parts) or "(not recorded)"))
    rows = [r for r in _metrics(run) if r[0] in names]
    lines += ["", "## Metrics", ""]
    if rows:
        lines += ["| task | split | metric | value |", "|---|---|---|---|"]
        lines += [f"| {t} | {s} | {m} | {v:.4f} |" for t, s, m, v in rows]
        lines += ["", f"dev: the exported checkpoint's evaluation (step {run.meta.get('step', '?')}); "
                  "test: the best checkpoint on the test split, when the run had one."]
    else:
        lines.append("No evaluation was recorded with this checkpoint.")
    lines += ["", "## How to use", "", "```python", *_usage(task, token, span), "```", ""]
    lines += [
        "## Intended use",
        "",
        "The tasks above, on text like the training data. Check the metrics on your own data "
        "before relying on the model.",
        "",
        "## Limitations",
        "",
        "- Scores are measured on the splits named above only; other domains and languages may "
        "score lower.",
        f"- Inputs longer than {max(run.tasks[n].max_length for n in names)} tokens are truncated "
        "(pass `truncation=True` to the pipeline, as polytask does).",
        "- Biases of the pretrained encoder and of the training data carry over.",
    ]
    if token:
        lines.append("- polytask reads words as the whitespace-separated pieces of a text; the pipeline also "
                     "splits punctuation off words. Give text tokenised as the training data was (\"Paris , France\") "
                     "for the same tags and spans as polytask.")
    if task and not token and not span:
        lines.append("- Loading needs `trust_remote_code=True` (a 60-line model file in this folder; read it first). "
                     "The pipeline then logs that the model class \"is not supported for text-classification\": "
                     "it only means the class is not one of transformers' own; the predictions are polytask's.")
    lines += ["", "## Training config", "", "```yaml",
              yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True).strip(),
              "```", "", "## Library versions", ""]
    lines += [f"- {k} {v}" for k, v in _versions().items()]
    return "\n".join(lines) + "\n"


def _usage(task: str | None, token: bool, span: bool) -> list[str]:
    """The card's "How to use" snippet: question answering, text or token classification, or
    (the shared encoder's folder) sentence-transformers."""
    if span:
        return [
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            "",
            'model = AutoModelForQuestionAnswering.from_pretrained("PATH")',
            'tok = AutoTokenizer.from_pretrained("PATH")',
            'out = model(**tok("a question", "its context", return_tensors="pt"))',
            "# out.start_logits, out.end_logits: (batch, tokens); polytask masks non-context tokens",
        ]
    elif task and not token:
        return [
            "from transformers import pipeline",
            "",
            "# trust_remote_code: modeling_polytask.py in this folder pools like polytask",
            "# (mean of token states), which no standard transformers class does",
            'clf = pipeline("text-classification", model="PATH", trust_remote_code=True, top_k=None)',
            'clf("some text", truncation=True)',
        ]
    elif task:
        return [
            "from transformers import pipeline",
            "",
            'ner = pipeline("token-classification", model="PATH", aggregation_strategy="first")',
            'ner("Alice met Bob in Paris")',
        ]
    else:
        return [
            "from sentence_transformers import SentenceTransformer",
            "",
            'model = SentenceTransformer("PATH")  # polytask\'s pooled vectors',
            'model.encode(["some text"])',
        ]


def write_model_cards(run: LoadedRun, export: HfExport) -> None:
    """A README.md in every task folder, and in the shared encoder's folder for multi-task runs."""
    for name, folder in export.tasks.items():
        (folder / "README.md").write_text(model_card(run, export, name), encoding="utf-8")
    if export.encoder_dir not in export.tasks.values():
        (export.encoder_dir / "README.md").write_text(model_card(run, export, None), encoding="utf-8")
