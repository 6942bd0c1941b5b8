"""Errors a user can cause. Each names the file, line or field and says how to fix it."""

from __future__ import annotations


class PolytaskError(Exception):
    """Base class of every error polytask raises for bad input."""


class ConfigError(PolytaskError):
    """An invalid experiment file or override.

    Args:
        message: what is wrong and how to fix it.
        field: dotted path of the offending field (``train.lr``), when known.
        source: the YAML file, when known.
    """

    def __init__(self, message: str, field: str | None = None, source: str | None = None):
        self.field = field
        self.source = source
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field and f"'{field}'" not in message and f"field {field}" not in message:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class DataError(PolytaskError):
    """A data file that cannot be read or contains invalid rows.

    Args:
        message: what is wrong and how to fix it.
        path: the file.
        line: 1-based line (or record) number, when known.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class CheckpointError(PolytaskError):
    """A run directory or checkpoint that cannot be loaded."""


class ExportError(PolytaskError):
    """An export that failed or whose result does not match the PyTorch model."""
