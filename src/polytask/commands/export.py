"""``polytask export hf|onnx|quantize`` and ``polytask push``: a run as Hugging Face folders
(and on the Hub), as one ONNX graph, or as an int8 graph.

(``polytask export-hf``, the old name of ``export hf``, is kept in ``polytask.cli``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import console, fail
from polytask.errors import PolytaskError

export_app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="Export a run: Hugging Face folders (pipeline, sentence-transformers), one ONNX graph, or an int8 one.",
)


def export_hf_and_report(run: Path, out_dir: Path, checkpoint: str, base_encoder: str | None) -> None:
    """Shared by ``export hf`` and the old ``export-hf``: export, then say how to load each folder."""
    from polytask.export.hf import export_hf_folders

    try:
        if not run.exists():
            raise PolytaskError(f"{run}: no such run directory; pass the folder `polytask train` wrote")
        result = export_hf_folders(run, out_dir, checkpoint, base_encoder=base_encoder)
    except PolytaskError as exc:
        fail(exc)
        return
    for name, folder in result.tasks.items():
        remote = name in result.remote_code
        kind = "token-classification" if not remote else "text-classification"
        flag = ", trust_remote_code=True" if remote else ""
        console.print(
            f"{name}: {folder} (max |logit diff| {result.max_abs_diff[name]:.1e}); "
            f"pipeline(\"{kind}\", model=\"{folder}\"{flag})", soft_wrap=True, markup=False,
        )
    console.print(
        f"encoder: {result.encoder_dir} (SentenceTransformer or AutoModel.from_pretrained); "
        "model card: README.md in each folder", soft_wrap=True, markup=False,
    )
    if result.remote_code:
        console.print(
            "trust_remote_code: polytask pools by the mean of token states, which no standard "
            "transformers sequence classifier does; the folder's modeling_polytask.py does it",
            soft_wrap=True, markup=False,
        )


@export_app.command("hf")
def hf_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory (or a checkpoint folder).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (one subfolder per task for a multi-task run).")],
    checkpoint: Annotated[str, typer.Option(help="best (falls back to last) or last.")] = "best",
    base_encoder: Annotated[str | None, typer.Option(help="For a lora run whose base model moved: where the base encoder is now.")] = None,  # noqa: UP007
) -> None:
    """Write each task as a transformers model with its head (pipeline-ready), the encoder with
    sentence-transformers files, and model cards; checked against polytask's logits."""
    export_hf_and_report(run, out_dir, checkpoint, base_encoder)


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


def push_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repository, user/name (created if absent).")],
    folder: Annotated[Path | None, typer.Option(help="Where to write the export first (default: a temporary folder, kept).")] = None,  # noqa: UP007
    checkpoint: Annotated[str, typer.Option(help="best (falls back to last) or last.")] = "best",
    private: Annotated[bool, typer.Option(help="Create the repository private.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Export and list the files, upload nothing (no network needed).")] = False,
) -> None:
    """Export a run (as `export hf` does) and upload it to the Hugging Face Hub."""
    from polytask.export.push import push_run

    try:
        if not run.exists():
            raise PolytaskError(f"{run}: no such run directory; pass the folder `polytask train` wrote")
        result = push_run(run, repo_id, folder=folder, checkpoint=checkpoint, private=private, dry_run=dry_run)
    except PolytaskError as exc:
        fail(exc)
        return
    if result.url is None:
        console.print(f"dry run: {len(result.files)} files in {result.folder} would go to {repo_id}:", markup=False)
        for f in result.files:
            console.print(f"  {f}", markup=False, highlight=False)
    else:
        console.print(f"{len(result.files)} files uploaded to {result.url}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group (``hf``, ``onnx``, ``quantize``) and ``push`` to ``app``."""
    app.add_typer(export_app, name="export")
    app.command("push")(push_cmd)
