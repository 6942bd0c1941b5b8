"""``polytask export onnx|quantize``: ONNX graphs of a run, and their int8 versions.

(``polytask export-hf``, the encoder as a transformers folder, lives in ``polytask.cli``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import console, fail
from polytask.errors import PolytaskError

export_app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Export a run for serving: one ONNX graph (encoder + every head), or an int8 one.",
)


@export_app.command("onnx")
def onnx_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory (or a checkpoint folder).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for model.onnx, polytask_onnx.json and tokenizer/.")],
    checkpoint: Annotated[str, typer.Option(help="best (falls back to last) or last.")] = "best",
    tolerance: Annotated[float, typer.Option(help="Largest |ONNX - torch| logit difference accepted on new shapes.")] = 1e-3,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,  # noqa: UP007
) -> None:
    """Export the whole model as one ONNX graph and check it against PyTorch on new shapes."""
    from polytask.export.onnx import export_onnx

    try:
        if not run.exists():
            raise PolytaskError(f"{run}: no such run directory; pass the folder `polytask train` wrote")
        result = export_onnx(run, out_dir, checkpoint=checkpoint, tolerance=tolerance, opset=opset)
    except PolytaskError as exc:
        fail(exc)
        return
    console.print(
        f"parity with torch on new shapes: max |diff| = {result.max_abs_diff:.2e} (tolerance {tolerance:g})"
    )
    console.print(
        f"ONNX model written to {result.directory} (tasks: {', '.join(result.manifest['tasks'])}); "
        f"load it with polytask.load('{result.directory}')"
    )


@export_app.command("quantize")
def quantize_cmd(
    source: Annotated[Path, typer.Argument(help="An ONNX export folder, or a run directory (exported first).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the int8 model.")],
    data: Annotated[Path | None, typer.Option(help="A labelled file to measure the accuracy cost on (default: each task's dev split).")] = None,  # noqa: UP007
    task: Annotated[str | None, typer.Option(help="Task to measure (default: every task; required with --data for a multi-task run).")] = None,  # noqa: UP007
    checkpoint: Annotated[str, typer.Option(help="best or last, when SOURCE is a run directory.")] = "best",
    batch_size: Annotated[int, typer.Option(help="Inputs per forward pass while scoring.")] = 64,
    max_drop: Annotated[float | None, typer.Option(help="Fail when a task's main metric drops by more than this.")] = None,  # noqa: UP007
    per_channel: Annotated[bool, typer.Option(help="Per-channel weight scales (more accurate).")] = False,
) -> None:
    """Dynamic int8 quantisation with ONNX Runtime; scores fp32 and int8 and records both."""
    from rich.table import Table

    from polytask.export.quantize import quantize_onnx

    try:
        if not source.exists():
            raise PolytaskError(f"{source}: no such run directory or ONNX export folder")
        manifest = quantize_onnx(source, out_dir, data=data, task=task, checkpoint=checkpoint,
                                 batch_size=batch_size, max_drop=max_drop, per_channel=per_channel)
    except PolytaskError as exc:
        fail(exc)
        return
    q = manifest["quantization"]
    table = Table(title="int8 accuracy cost")
    for col in ("task", "split", "n", "metric", "fp32", "int8", "difference"):
        table.add_column(col, justify="left" if col in ("task", "split", "metric") else "right")
    for name, r in q["eval"].items():
        table.add_row(name, r["split"], str(r["n_examples"]), r["metric"], f"{r['fp32']:.4f}",
                      f"{r['int8']:.4f}", f"{r['difference']:+.4f}")
    console.print(table)
    size = q["size_bytes"]
    console.print(
        f"int8 model written to {out_dir} ({size['int8'] / 1e6:.1f} MB, fp32 {size['fp32'] / 1e6:.1f} MB); "
        f"load it with polytask.load('{out_dir}')"
    )


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group (``onnx``, ``quantize``) to ``app``."""
    app.add_typer(export_app, name="export")
