"""``polytask affinity EXP.yaml``: which tasks help each other (inter-task affinity)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from polytask.commands._common import SetOpt, console, fail
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    """Add the ``affinity`` command to ``app``."""

    @app.command()
    def affinity(
        experiment: Annotated[Path, typer.Argument(help="The YAML experiment file (two tasks or more).")],
        steps: Annotated[int, typer.Option(help="Training steps; each takes one batch of every task.")] = 100,
        every: Annotated[int, typer.Option(help="Measure every n-th step (the others only train).")] = 1,
        lookahead_lr: Annotated[float | None, typer.Option(help="SGD learning rate of the lookahead step (default: train.lr).")] = None,  # noqa: UP007
        max_groups: Annotated[int, typer.Option(help="Suggest groupings into 1 .. this many groups.")] = 3,
        seed: Annotated[int | None, typer.Option(help="Seed of heads, dropout and batch order (default: train.seed).")] = None,  # noqa: UP007
        set_: SetOpt = None,
        output_dir: Annotated[Path | None, typer.Option(help="Where affinity.json and affinity.png go (default: output_dir or runs/<name>).")] = None,  # noqa: UP007
    ) -> None:
        """Measure inter-task affinity during a short multi-task run and suggest task groupings."""
        from polytask.config import load_config
        from polytask.procedures.affinity import measure_affinity

        try:
            cfg = load_config(experiment, set_ or [])
            out = output_dir or Path(cfg.output_dir or Path("runs") / cfg.name)
            result = measure_affinity(cfg, steps=steps, lookahead_lr=lookahead_lr, every=every, seed=seed,
                                      max_groups=max_groups, output_dir=out)
        except PolytaskError as exc:
            fail(exc)
            return
        console.print(affinity_table(result.tasks, result.matrix, result.stderr, result.measurements))
        console.print("suggested groupings (score: mean affinity a task gets from its group):")
        for g in result.groupings:
            groups = "  |  ".join(" + ".join(group) for group in g.groups)
            note = "" if g.exact else " (local search)"
            console.print(f"  k={g.k}: {groups}   score {g.score:.4g}{note}", highlight=False)
        console.print(f"written: {out / 'affinity.json'}, {out / 'affinity.png'}", highlight=False)


def affinity_table(names: list[str], matrix: list[list[float]], stderr: list[list[float]], measurements: int) -> Table:
    """The matrix as a rich table: rows source task i, columns target task j; green helps, red
    hurts, ``?`` marks a value within two standard errors of 0 (its sign is uncertain)."""
    from polytask.procedures.affinity import format_value

    table = Table(
        title=f"inter-task affinity Z(i->j), mean of {measurements} measured steps",
        caption="row i helps column j when green; ? = within 2 standard errors of 0 (run more --steps)",
    )
    table.add_column("source \\ target")
    for name in names:
        table.add_column(name, justify="right")
    for i, name in enumerate(names):
        cells = []
        for j, v in enumerate(matrix[i]):
            colour = "green" if v > 0 else "red" if v < 0 else "white"
            unsure = " ?" if abs(v) < 2 * stderr[i][j] else "  "
            cells.append(f"[{colour}]{format_value(v)}[/]{unsure}")
        table.add_row(name, *cells)
    return table
