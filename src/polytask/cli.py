"""``polytask`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import (
    CheckpointOpt,
    SetOpt,
    console,
    err_console,
    fail,
    format_metric,
    metrics_table,
)
from polytask.errors import PolytaskError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Transfer and multi-task learning for text.",
    # Help texts are plain text: "polytask[tracking]" must not be read as rich markup.
    rich_markup_mode=None,
)
_fail = fail
_metrics_table = metrics_table


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib import metadata

    from polytask import __version__

    libs = []
    for pkg in ("torch", "transformers"):
        try:
            libs.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    console.print(f"polytask {__version__} ({', '.join(libs)})", markup=False, highlight=False)
    raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Transfer and multi-task learning for text."""


@app.command()
def train(
    experiment: Annotated[Path, typer.Argument(help="The YAML experiment file.")],
    set_: SetOpt = None,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (default: output_dir or runs/<name>).")] = None,  # noqa: UP007
    resume: Annotated[bool, typer.Option(help="Continue the run in the output directory.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in the output directory.")] = False,
) -> None:
    """Fine-tune the encoder and task heads of an experiment."""
    from polytask.config import load_config
    from polytask.training.loop import train as run_train

    try:
        cfg = load_config(experiment, set_ or [])
        result = run_train(cfg, output_dir=output_dir, resume=resume, overwrite=overwrite)
    except PolytaskError as exc:
        _fail(exc)
        return
    console.print(_metrics_table(f"dev (step {result.steps})", result.dev))
    if result.test:
        console.print(_metrics_table("test (best checkpoint)", result.test))
    state = "interrupted (resume with --resume)" if result.interrupted else (
        "stopped early" if result.stopped_early else "finished")
    console.print(
        f"{state}: best {result.metric}={format_metric(result.best_metric)} at step {result.best_step}; "
        f"{result.examples_per_second:.1f} examples/s; run in {result.run_dir}"
    )
    if result.interrupted:  # as a shell expects of Ctrl-C: `train && evaluate` must not go on
        raise typer.Exit(code=130)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    data: Annotated[Path | None, typer.Option(help="A labelled file read with the task's data settings (default: the task's test, else dev split).")] = None,  # noqa: UP007
    task: Annotated[str | None, typer.Option(help="Task to evaluate (default: every task when --data is absent, the only task otherwise).")] = None,  # noqa: UP007
    output: Annotated[Path | None, typer.Option(help="Write metrics JSON here (default: RUN/eval-<file>.json).")] = None,  # noqa: UP007
    checkpoint: CheckpointOpt = "best",
) -> None:
    """Score a saved run on labelled data."""
    from polytask.evaluation.run_eval import evaluate_run

    def show(results: dict) -> None:  # before the write: a failing write loses nothing
        for name, metrics in results.items():
            console.print(_metrics_table(name, metrics))

    try:
        _, out_path = evaluate_run(run, data, task, output, checkpoint, on_results=show)
    except PolytaskError as exc:
        _fail(exc)
        return
    console.print(f"metrics written to {out_path}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".jsonl (text / text_pair / tokens keys), .csv/.tsv with a 'text' column, or one text per line.")],  # noqa: A002
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions as JSONL.")],
    task: Annotated[list[str] | None, typer.Option(help="Tasks to answer (default: all).")] = None,  # noqa: UP007
    checkpoint: CheckpointOpt = "best",
    batch_size: Annotated[int, typer.Option(help="Inputs per forward pass.")] = 64,
    key: Annotated[str, typer.Option(help="Output field holding {task: prediction}; input fields are kept unchanged.")] = "prediction",
) -> None:
    """Predict labels (with probabilities), tags (with entity spans) or scores for new texts;
    each output line is its input record plus the predictions under --key."""
    import polytask
    from polytask.serving.inputs import check_inputs_fit, check_output_file, read_input_records
    from polytask.serving.predictor import check_prediction_key, prediction_records

    try:
        check_output_file(output, "-o")  # before the model loads: a bad -o fails in a second
        predictor = polytask.load(str(run), checkpoint=checkpoint)
        predictor.batch_size = batch_size
        names = predictor.task_names(task or None)
        pairs = read_input_records(input)
        examples = [ex for ex, _ in pairs]
        check_prediction_key([rec for _, rec in pairs], key)  # before the model runs
        check_inputs_fit(predictor, names, examples)
        rows = predictor.predict_examples(examples, names)
        records = prediction_records([rec for _, rec in pairs], rows, key)
    except PolytaskError as exc:
        _fail(exc)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        tmp.replace(output)
    except OSError as exc:
        _fail(PolytaskError(f"cannot write {output} (-o): {exc.strerror or exc}; choose another -o"))
    console.print(f"{len(rows)} predictions written to {output}")


@app.command("export-hf")
def export_hf_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the transformers folders.")],
    checkpoint: Annotated[str, typer.Option(help="best (falls back to last) or last.")] = "best",
    base_encoder: Annotated[
        str | None, typer.Option(help="For a lora run whose base model moved: where the base encoder is now.")
    ] = None,
) -> None:
    """Old name of `polytask export hf` (kept so scripts keep working): the run as transformers
    folders with their heads, sentence-transformers files and model cards."""
    from polytask.commands.export import export_hf_and_report

    export_hf_and_report(run, out_dir, checkpoint, base_encoder)


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(help="The study folder (finished runs in it are kept).")] = Path("runs/demo"),
    set_: SetOpt = None,
) -> None:
    """A small transfer study on BBC News topics: scratch, GloVe and MiniLM encoders, a source task
    and multi-task training, with a report (offline, about 8 minutes on 2 CPU cores; needs the
    demo extra of polytask)."""
    from polytask.demo import run_demo

    try:
        result = run_demo(output_dir, set_ or [], console)
    except PolytaskError as exc:
        _fail(exc)
        return
    if result.run.interrupted:
        err_console.print("interrupted: run the same command again to continue")
        raise typer.Exit(code=130)


def _register_commands() -> None:
    """Add every ``polytask.commands`` module's commands (one module per command group)."""
    import importlib
    import pkgutil

    from polytask import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"polytask.commands.{mod.name}").register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("aborted")
        sys.exit(130)


if __name__ == "__main__":
    main()
