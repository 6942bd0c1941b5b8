"""``polytask transferability EXP.yaml --sources A B C``: which source will help, before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polytask.commands._common import SetOpt, console, fail
from polytask.errors import ConfigError, PolytaskError

ListOpt = list[str] | None


def register(app: typer.Typer) -> None:
    """Add the ``transferability`` command to ``app``."""

    # Extra arguments are allowed so that ``--sources A B C`` works (typer options take one value
    # each): the words after the experiment that are not options join --sources (or --partners).
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def transferability(
        ctx: typer.Context,
        experiment: Annotated[Path, typer.Argument(help="The target experiment YAML (its first task, or --task).")],
        sources: Annotated[ListOpt, typer.Option("--sources", help="Candidate sources: default, an HF folder or id, scratch:<id>, bilstm:glove-6b-50d, bilstm, cnn:..., an encoder YAML, a run folder. Several may follow one --sources.")] = None,  # noqa: E501
        partners: Annotated[ListOpt, typer.Option("--partners", help="task=run_folder per task: score every run on every other task's data.")] = None,  # noqa: E501
        task: Annotated[str | None, typer.Option(help="The target task (default: the experiment's first).")] = None,  # noqa: UP007
        budget: Annotated[int | None, typer.Option(help="Score on this many training examples (stratified, seeded); all by default.")] = None,  # noqa: E501, UP007
        seed: Annotated[int, typer.Option(help="Seed of the sample and of random source weights.")] = 0,
        estimates: Annotated[str | None, typer.Option(help="Comma-separated estimates (default: logme,leep,hscore,knn,logistic).")] = None,  # noqa: E501, UP007
        rank_by: Annotated[str, typer.Option(help="The estimate that orders the table.")] = "logme",
        max_length: Annotated[int | None, typer.Option(help="Tokens per example (default: the experiment's).")] = None,  # noqa: UP007
        batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 32,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
        study: Annotated[Path | None, typer.Option(help="A study folder: write transferability.json there, so `polytask report` shows the estimates beside what the study measured.")] = None,  # noqa: E501, UP007
        set_: SetOpt = None,
    ) -> None:
        """Rank candidate sources (or task partners) for a target by LogME, LEEP, H-score and probes."""
        import polytask
        from polytask.config import load_config
        from polytask.transferability.ranking import task_partners

        extra = list(ctx.args)
        try:
            bad = [a for a in extra if a.startswith("-")]
            if bad:
                raise ConfigError(f"unknown option {bad[0]!r}; see polytask transferability --help")
            if partners is not None and sources is None:
                partners = [*partners, *extra]
            else:
                sources = [*(sources or []), *extra]
            if partners and sources:
                raise ConfigError("give --sources or --partners, not both")
            cfg = load_config(experiment, set_ or [])
            kwargs = {"budget": budget, "seed": seed, "rank_by": rank_by, "max_length": max_length,
                      "batch_size": batch_size,
                      "estimates": [e.strip() for e in estimates.split(",") if e.strip()] if estimates else None}
            if partners:
                runs = dict(_pair(p) for p in partners)
                base = experiment.resolve().parent
                runs = {k: str(v if Path(v).exists() else base / v) for k, v in runs.items()}
                results = task_partners(cfg, runs, **kwargs)
                labels = {str(v): f"{k} ({v})" for k, v in runs.items()}
            else:
                results = {"": polytask.transferability(cfg, sources, task=task, **kwargs)}
                labels = {}
            if study is not None:
                save_for_study(results, study)
        except PolytaskError as exc:
            fail(exc)
            return
        if as_json:
            payload = {k or r.task: r.to_json() for k, r in results.items()}
            # Plain stdout, not rich: rich wraps long lines (paths) at the terminal width.
            typer.echo(json.dumps(payload if partners else next(iter(payload.values())), indent=2))
            return
        for result in results.values():
            console.print(ranking_table(result, labels))


def save_for_study(results: dict, study: Path) -> Path:
    """Write the rankings to ``STUDY/transferability.json`` (read by the study report)."""
    from polytask.io import write_json

    if not study.is_dir():
        raise ConfigError(f"--study {study}: no such study folder; run polytask compare first, or drop --study")
    path = study / "transferability.json"
    write_json(path, {k or r.task: r.to_json() for k, r in results.items()})
    return path


def _pair(text: str) -> tuple[str, str]:
    name, sep, run = text.partition("=")
    if not sep or not name or not run:
        raise ConfigError(f"--partners takes task=run_folder, got {text!r}", field="--partners")
    return name, run


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def ranking_table(result, labels: dict[str, str] | None = None) -> Table:  # noqa: ANN001
    """The ranking as a rich table: one row per source, each estimate with its seconds."""
    labels = labels or {}
    unit = "words" if result.task_type == "token_classification" else "examples"
    table = Table(title=f"transferability to {result.task} ({result.task_type}, {result.examples} {unit}), "
                        f"ranked by {result.rank_by}",
                  caption="higher is better for every estimate; (s) = seconds; - = does not apply")
    table.add_column("#", justify="right")
    table.add_column("source")
    table.add_column("dim", justify="right")
    table.add_column("features (s)", justify="right")
    for name in result.estimates:
        table.add_column(f"{name} (s)", justify="right")
    skipped: dict[str, str] = {}
    for i, row in enumerate(result.sources, 1):
        cells = []
        for name in result.estimates:
            e = row.estimates[name]
            if e.value is None:
                skipped.setdefault(name, e.skipped or "")
                cells.append("-")
            else:
                cells.append(f"{fmt(e.value)} ({e.seconds:.2f})")
        table.add_row(str(i), labels.get(row.source, row.source), str(row.dim), f"{row.feature_seconds:.2f}", *cells)
    if skipped:
        table.caption += "; " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return table
