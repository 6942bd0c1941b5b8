"""``polytask pretrain``: domain-adaptive masked-LM pretraining on unlabelled text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import SetOpt, console, fail
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    @app.command()
    def pretrain(
        config: Annotated[Path, typer.Argument(help="The YAML pretrain config (encoder, text, output_dir, ...).")],
        set_: SetOpt = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing OUTPUT_DIR/model.")] = False,
    ) -> None:
        """Continue masked-LM pretraining of an encoder on unlabelled text (writes OUTPUT_DIR/model)."""
        from polytask.pretrain import load_pretrain_config, pretrain_mlm

        try:
            cfg = load_pretrain_config(config, set_ or [])
            result = pretrain_mlm(cfg, overwrite=overwrite)
        except PolytaskError as exc:
            fail(exc)

        def show(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f}"

        console.print(
            f"held-out perplexity {show(result.perplexity_before)} -> {show(result.perplexity_after)} "
            f"after {result.steps} steps ({result.examples_per_second:.1f} sequences/s)"
        )
        console.print(f"model written to {result.model_dir}; use it as encoder.name_or_path: {result.model_dir}")
