"""``polytask evaluate``: score a saved run on a labelled file or on its configured splits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from polytask.errors import DataError, PolytaskError
from polytask.evaluation.evaluate import evaluate_task
from polytask.runs import load_run
from polytask.training.checkpoint import write_json


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    task: str | None = None,
    output: str | Path | None = None,
    checkpoint: str = "best",
    batch_size: int = 64,
    on_results: Callable[[dict[str, dict[str, float]]], None] | None = None,
) -> tuple[dict[str, dict[str, float]], Path]:
    """Metrics per task, written as JSON.

    The output file is checked for writability before anything is loaded; the metrics go to
    ``on_results`` before they are written (atomically: a temp file renamed into place), so a
    write that still fails loses nothing computed.

    Args:
        run: run directory.
        data: a labelled file, read with the task's data settings; when absent each task is
            scored on its configured test split (dev when there is no test).
        task: the task to score (required with ``data`` for a multi-task run).
        output: JSON path (default ``<run>/eval-<data file stem or 'splits'>.json``).
        checkpoint: ``best`` (falls back to ``last``) or ``last``.
        batch_size: examples per forward pass.
        on_results: called with the metrics once computed, before they are written (the CLI
            prints them).
    """
    from polytask.data.loading import load_splits, read_file
    from polytask.serving.inputs import check_output_file

    out = Path(output) if output else Path(run) / f"eval-{Path(data).stem if data else 'splits'}.json"
    if Path(run).is_dir():  # a missing run is load_run's error to name
        check_output_file(out, "--output" if output else "--output (default: inside the run)")
    loaded = load_run(run, checkpoint)
    names = list(loaded.tasks)
    if task is not None:
        if task not in loaded.tasks:
            raise DataError(f"unknown task {task!r}; this run has: {', '.join(names)}")
        names = [task]
    elif data is not None and len(names) > 1:
        raise DataError(f"--data needs --task for a multi-task run (tasks: {', '.join(names)})")
    tokenizer = loaded.model.encoder.tokenizer
    pad_id = tokenizer.pad_token_id or 0
    results: dict[str, dict[str, float]] = {}
    for name in names:
        t = loaded.tasks[name]
        if data is not None:
            split = "eval"
            cfg = t.config.data.model_copy(update={"train": str(data), "dev": None, "test": None, "limit": None})
            examples = read_file(cfg, str(data), t.token_level, split="test")
        else:
            splits = load_splits(t.config.data, token_level=t.token_level)
            split = "test" if "test" in splits else "dev"
            examples = splits[split]
        t.check(examples, split)
        metrics, _ = evaluate_task(loaded.model, t, examples, tokenizer, pad_id, batch_size)
        metrics["n_examples"] = float(len(examples))
        results[name] = metrics
    if on_results is not None:
        on_results(results)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, results)
    except OSError as exc:
        raise PolytaskError(
            f"the metrics{' (printed above)' if on_results else ''} could not be written to {out}: "
            f"{exc.strerror or exc}; choose another --output"
        ) from None
    return results, out
