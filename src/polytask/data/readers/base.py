"""Reader family: turns one file (or folder) into a list of Examples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from polytask.config.schema import DataConfig
from polytask.data.example import Example
from polytask.registry import Registry


class Reader(ABC):
    """Reads one data source described by a task's ``data`` config.

    Args:
        config: the task's data config (columns, delimiter, encoding, label_map, ...).
        token_level: True for token-classification tasks (text is a list of words, label a list
            of tags).
    """

    registry_name: str

    def __init__(self, config: DataConfig, token_level: bool = False):
        self.config = config
        self.token_level = token_level

    @abstractmethod
    def read(self, path: str | Path) -> list[Example]:
        """Read every example from ``path``; raise DataError naming file and line on bad rows."""


READERS: Registry[Reader] = Registry("data format")
