"""What every CLI command shares: consoles, the error exit, the --set option, a metrics table."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

NO_TERMINAL_WIDTH = 10_000
"""Width used when output is not a terminal: lines are never wrapped (rich would wrap at 80
columns, breaking run names and paths in files and pipes)."""


def make_console(stderr: bool = False) -> Console:
    """A rich console that wraps to the terminal, or not at all when writing to a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(stderr=stderr, soft_wrap=not tty, width=None if tty else NO_TERMINAL_WIDTH)


console = make_console()
err_console = make_console(stderr=True)

CheckpointOpt = Annotated[str, typer.Option(help="Which checkpoint: best (the best dev score; falls back to last) or last.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config value: key.path=value (repeatable).")]  # noqa: UP007


def fail(exc: Exception) -> NoReturn:
    """Print a user-facing error and exit with status 2 (no traceback)."""
    # Escaped: messages hold brackets ("pip install 'polytask[serve]'", "texts[1]") that rich
    # would otherwise read as markup and drop.
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


COUNT_KEYS = ("n_examples", "steps", "step", "best_step", "epoch", "epochs")


def is_count(key: str) -> bool:
    """Whether a metric named ``key`` counts things (shown as an integer)."""
    leaf = key.rsplit("/", 1)[-1]
    return leaf in COUNT_KEYS or leaf.startswith("n_")


def format_metric(value: object, key: str = "") -> str:
    """A metric for people: 4 decimals; integers, and counts such as ``n_examples`` (which JSON
    may hold as 1821.0), as integers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (is_count(key) and float(value).is_integer()):
        return str(int(value))
    return f"{value:.4f}"


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    """A two-column table of metrics, rounded as ``format_metric`` does."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, format_metric(v, k))
    return table
