"""``polytask augment EXP.yaml``: training examples beside their augmented copies, before training;
``polytask self-train EXP.yaml``: rounds of pseudo-labelling an unlabelled pool and retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from polytask.commands._common import SetOpt, console, fail
from polytask.data.example import Example
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    """Add the ``augment`` and ``self-train`` commands to ``app``."""

    @app.command()
    def augment(
        experiment: Annotated[Path, typer.Argument(help="The YAML experiment file (a task with an augment block).")],
        task: Annotated[str | None, typer.Option(help="The task (default: the only task with an augment block).")] = None,  # noqa: UP007
        n: Annotated[int, typer.Option(help="How many training examples to show.")] = 20,
        seed: Annotated[int | None, typer.Option(help="Seed (default: train.seed).")] = None,  # noqa: UP007
        epoch: Annotated[int, typer.Option(help="Which epoch's copies to show (0-based).")] = 0,
        set_: SetOpt = None,
    ) -> None:
        """Print training examples beside the augmented copies training would make of them."""
        from polytask.augment import preview, resolve_paths
        from polytask.config import load_config

        try:
            cfg = load_config(experiment, set_ or [])
            resolve_paths(cfg, experiment.parent)
            rows = preview(cfg, task, n=n, seed=seed, epoch=epoch)
        except PolytaskError as exc:
            fail(exc)
            return
        print_preview(rows)

    @app.command("self-train")
    def self_train_cmd(
        experiment: Annotated[Path, typer.Argument(help="The YAML experiment file (a task with an unlabeled block).")],
        task: Annotated[str | None, typer.Option(help="The task (default: the only task with an unlabeled block).")] = None,  # noqa: UP007
        rounds: Annotated[int | None, typer.Option(help="Rounds after the first run (default: unlabeled.self_training.rounds).")] = None,  # noqa: UP007
        threshold: Annotated[float | None, typer.Option(help="Confidence a pseudo-label needs (default: from the config).")] = None,  # noqa: UP007
        per_class: Annotated[int | None, typer.Option(help="At most this many new examples per class and round.")] = None,  # noqa: UP007
        output_dir: Annotated[Path | None, typer.Option(help="Folder of the rounds (default: output_dir or runs/<name>, plus /self_training).")] = None,  # noqa: UP007
        set_: SetOpt = None,
    ) -> None:
        """Self-training: train, pseudo-label the confident part of the unlabelled pool (balanced
        per class), retrain from the starting encoder; one kept run per round and a summary."""
        from polytask.augment import resolve_paths
        from polytask.config import load_config
        from polytask.procedures.self_training import self_train

        try:
            cfg = load_config(experiment, set_ or [])
            resolve_paths(cfg, experiment.parent)
            result = self_train(cfg, task=task, output_dir=output_dir, rounds=rounds, threshold=threshold,
                                per_class=per_class)
        except PolytaskError as exc:
            fail(exc)
            return
        table = Table(title=f"self-training of {result.task} ({result.metric} on dev)")
        for col in ("round", "added per class", "pseudo-labelled", "pool left", result.metric):
            table.add_column(col)
        for r in result.rounds:
            added = ", ".join(f"{k}: {v}" for k, v in r.added.items()) or "-"
            value = "-" if r.dev_metric is None else f"{r.dev_metric:.4f}"
            table.add_row(str(r.round), escape(added), str(r.pseudo_total), str(r.pool_left), value)
        console.print(table)
        console.print(f"summary written to {result.summary_path}", highlight=False)


def show(example: Example, text_only: bool = False) -> str:
    """One example as a line: words with entity tags as ``word/TAG``; pairs as ``text || pair``."""
    if isinstance(example.text, list):
        tags = example.label if isinstance(example.label, list) else None
        if tags is None or text_only:
            return " ".join(example.text)
        return " ".join(w if t == "O" else f"{w}/{t}" for w, t in zip(example.text, tags, strict=True))
    return example.text if example.text_pair is None else f"{example.text} || {example.text_pair}"


def print_preview(rows) -> None:  # noqa: ANN001
    """Each original, then its copies indented beneath it with the ops each copy got."""
    for i, row in enumerate(rows, start=1):
        console.print(f"[bold]{i:>3}[/] {escape(show(row.original))}", soft_wrap=True, highlight=False)
        for c in row.copies:
            ops = ", ".join(c.meta["augmented"]["ops"]) or "no op drawn"
            console.print(f"    -> {escape(show(c))}  [dim]({ops})[/]", soft_wrap=True, highlight=False)
