"""What every CLI command shares: consoles, the error exit, the --set option, a metrics table."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config value: key.path=value (repeatable).")]  # noqa: UP007


def fail(exc: Exception) -> NoReturn:
    """Print a user-facing error and exit with status 2 (no traceback)."""
    # Escaped: messages hold brackets ("pip install 'polytask[serve]'", "texts[1]") that rich
    # would otherwise read as markup and drop.
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return table
