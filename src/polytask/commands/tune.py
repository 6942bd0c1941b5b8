"""``polytask tune``: a hyper-parameter search over an experiment (see ``polytask.tuning``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import SetOpt, console, fail
from polytask.errors import PolytaskError


def tune_cmd(
    experiment: Annotated[Path, typer.Argument(help="The YAML experiment file.")],
    space: Annotated[Path, typer.Option(help="YAML search space: override path -> {type: float|int|categorical, low, high, log, choices}.")],
    trials: Annotated[int, typer.Option(help="Trials in the study in all (a resumed study runs the rest).")] = 20,
    output_dir: Annotated[Path | None, typer.Option(help="Study folder (default runs/<name>-tune): study.db, trials/, best_config.yaml, report.html.")] = None,  # noqa: UP007
    set_: SetOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    direction: Annotated[str | None, typer.Option(help="maximize or minimize (default: from the selection metric).")] = None,  # noqa: UP007
) -> None:
    """Search hyper-parameters with Optuna (TPE, median pruning on dev evaluations); a killed
    search resumes from its SQLite study; writes the best config and a report page."""
    from polytask.tuning import tune

    try:
        result = tune(experiment, space, trials, output_dir, set_ or [], seed=seed, direction=direction)
    except PolytaskError as exc:
        fail(exc)
        return
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.states.items()))
    console.print(f"study {result.directory}: {counts}", markup=False)
    if result.best_trial is None:
        console.print("no trial finished; see the report for why", markup=False)
    else:
        console.print(f"best: trial {result.best_trial}, objective {result.best_value:.4f}, {result.best_params}", markup=False)
        console.print(f"best config: {result.best_config} (train it with: polytask train {result.best_config})", markup=False)
    console.print(f"report: {result.report}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_cmd)
