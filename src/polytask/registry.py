"""A small named registry per family (readers, tasks, encoders, ...).

Members register themselves at import time with ``@REGISTRY.register("name")``; the family's
package imports its own modules so registration never depends on the user remembering an import.
Third-party members plug in by import path: ``my_pkg.tasks:MyTask``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from polytask.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase snake_case names to classes of one family.

    Args:
        family: human name of the family, used in error messages ("task type").
    """

    def __init__(self, family: str):
        self.family = family
        self._members: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._members and self._members[name] is not cls:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._members[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def get(self, name: str, field: str | None = None) -> type[T]:
        """Return the member called ``name``, or import it from ``module:Class``.

        Args:
            name: a registered name or an import path ``package.module:ClassName``.
            field: the config field the name came from, named in the error message.
        """
        if name in self._members:
            return self._members[name]
        if ":" in name:
            module_name, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"cannot import {self.family} {name!r}: {exc}", field=field
                ) from exc
        where = f" (field {field})" if field else ""
        raise ConfigError(
            f"unknown {self.family} {name!r}{where}; known: {', '.join(self.names())} "
            f"(or an import path 'package.module:Class')"
        )

    def names(self) -> list[str]:
        return sorted(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members


def import_members(package: str, path: Iterable[str], shared: tuple[str, ...] = ("base",)) -> None:
    """Import every module of a family's package but its shared ones, so each member registers.

    Called at the end of a family's ``__init__``: adding a member is adding its file.

    Args:
        package: the package's ``__name__``.
        path: its ``__path__``.
        shared: modules that hold no member (the base class, helpers); ``_private`` ones are skipped too.
    """
    for mod in pkgutil.iter_modules(list(path)):
        if mod.name not in shared and not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")
