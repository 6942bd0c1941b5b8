"""CLI command groups beyond the core ones in ``polytask.cli``.

Each public module here defines ``register(app: typer.Typer) -> None`` and adds its commands;
``polytask.cli`` imports every module of this package, so adding a command touches one file.
"""
