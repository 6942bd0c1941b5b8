"""``polytask distill``: train a smaller student on a finished run's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import SetOpt, console, fail, metrics_table
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    @app.command()
    def distill(
        config: Annotated[Path, typer.Argument(help="The YAML distill config (teacher, student, losses, ...).")],
        set_: SetOpt = None,
        resume: Annotated[bool, typer.Option(help="Continue the student run where it stopped.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing student run.")] = False,
    ) -> None:
        """Distil a finished run (the teacher) into a student experiment; the result is an ordinary run."""
        from polytask.procedures.distill import distill as run_distill
        from polytask.procedures.distill import load_distill_config

        try:
            dcfg, student = load_distill_config(config, set_ or [])
            result = run_distill(dcfg, student, resume=resume, overwrite=overwrite)
        except PolytaskError as exc:
            fail(exc)
        console.print(metrics_table(f"student dev metrics ({result.steps} steps)", result.dev))
        console.print(f"student run written to {result.run_dir}; predict with polytask predict {result.run_dir}")
