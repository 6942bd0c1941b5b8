"""``polytask compare``, ``polytask report`` and ``polytask runs``: did it help, and by how much?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from polytask.commands._common import console, err_console, fail
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    app.command()(compare)
    app.command()(report)
    app.command()(runs)


def compare(
    study: Annotated[Path, typer.Argument(help="The study YAML (target, arms, budgets, seeds).")],
    output_dir: Annotated[Path | None, typer.Option(help="Study folder (default: output_dir or studies/<name>).")] = None,  # noqa: UP007
    check: Annotated[bool, typer.Option("--check", help="Only check the study (every cell's final config, init_from sources included) and list its cells; train nothing.")] = False,
    keep_going: Annotated[bool, typer.Option("--keep-going/--no-keep-going", help="When a cell fails, report it and go on with the others (exit 1 at the end); --no-keep-going stops at the first failure.")] = True,
) -> None:
    """Run a label-budget study (arms x budgets x seeds; resumable) and write its report."""
    from polytask.study.compare import run_compare
    from polytask.study.config import load_study
    from polytask.study.runner import cell_status, plan_study

    def on_event(kind: str, message: str) -> None:
        if kind == "fail":
            err_console.print(f"[bold red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)
            return
        style = {"skip": "dim", "start": "bold", "stop": "yellow"}.get(kind, "")
        console.print(f"[{style}]{escape(message)}[/]" if style else escape(message), highlight=False)

    try:
        if check:
            plan = plan_study(load_study(study), output_dir)
            table = Table(title=f"study {plan.study.name}: {len(plan.cells)} cells in {plan.study_dir}")
            for col in ("target", "arm", "budget", "labels", "seed", "status"):
                table.add_column(col)
            for c in plan.cells:
                table.add_row(c.target, c.arm, c.budget, str(c.n_train), str(c.seed), cell_status(c.run_dir))
            console.print(table)
            return
        result = run_compare(study, output_dir, on_event, keep_going=keep_going)
    except PolytaskError as exc:
        fail(exc)
        return
    r = result.run
    failed = f", {len(r.failed)} failed" if r.failed else ""
    console.print(f"{len(r.trained)} run(s) trained, {len(r.skipped)} finished before{failed}")
    console.print(f"results: {r.study_dir / 'results.csv'}; report: {result.html} and {result.markdown}")
    if r.interrupted:
        err_console.print("interrupted: run the same command again to continue")
        raise typer.Exit(code=130)
    if r.failed:
        err_console.print(f"[bold red]{len(r.failed)} cell(s) failed[/] (fix them and run the same command "
                          "again: finished cells are kept):", highlight=False)
        for key, message in r.failed:
            err_console.print(f"  {escape(key)}: {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


def report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder written by `polytask compare`.")],
) -> None:
    """(Re)write a study's results.csv/.jsonl, report.html and report.md from its finished runs."""
    from polytask.study.report import build_report

    try:
        html, md = build_report(study_dir)
    except PolytaskError as exc:
        fail(exc)
        return
    console.print(f"report written: {html} and {md}")


def runs(
    directory: Annotated[Path, typer.Argument(help="A folder holding run directories (searched recursively).")] = Path("runs"),
    to_mlflow: Annotated[bool, typer.Option("--to-mlflow", help="Also log every finished run to MLflow (needs polytask[tracking]).")] = False,
    tracking_uri: Annotated[str, typer.Option(help="MLflow tracking URI for --to-mlflow.")] = "file:./mlruns",
) -> None:
    """List the runs in a folder with their key metrics."""
    from polytask.tracking import find_runs, mlflow_log_run

    try:
        found = find_runs(directory)
        table = Table(title=f"{len(found)} run(s) in {directory}")
        for col, justify in (("run", "left"), ("tasks", "left"), ("status", "left"), ("steps", "right"),
                             ("best metric", "left"), ("best", "right"), ("test", "left"), ("time", "right")):
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for info in found:
            path = info["path"]
            rel = str(path.relative_to(directory)) if path != directory else "."
            test = ", ".join(f"{k}={v:.4f}" for k, v in list(info["test"].items())[:3])
            best = f"{info['best']:.4f}" if isinstance(info["best"], (int, float)) else "–"
            secs = f"{info['seconds']:.0f}s" if isinstance(info["seconds"], (int, float)) else "–"
            table.add_row(rel, ", ".join(info["tasks"]), info["status"], str(info["steps"] or "–"),
                          info["metric"] or "–", best, test or "–", secs)
        console.print(table)
        if to_mlflow:
            for info in found:
                if info["status"] == "finished":
                    run_id = mlflow_log_run(info["path"], tracking_uri)
                    console.print(f"{info['path']} -> MLflow run {run_id}")
    except PolytaskError as exc:
        fail(exc)
