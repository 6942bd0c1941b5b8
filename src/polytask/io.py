"""Shared file writing: every file and folder polytask writes appears whole or not at all.

A file is written beside its place under a temporary name, flushed to disk and renamed into
place (``os.replace`` is atomic on one file system); a folder is written beside its place and
swapped in, the previous one kept until the new one is there. A crash or Ctrl-C at any moment
leaves the old version or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_path(path: Path) -> Path:
    """A hidden sibling of ``path`` unique to this process (``.name.tmp-<pid>``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Let ``writer(tmp)`` write a file at a temporary path, then rename it to ``path``.

    For libraries that write files themselves (safetensors, matplotlib): the suffix is kept so
    they pick the right format.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    writer(tmp)
    os.replace(tmp, path)
    return path


def commit_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place; keep the previous one until the new one is there."""
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def write_dir(final: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Let ``writer(tmp)`` fill a temporary folder beside ``final``, then swap it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    writer(tmp)
    commit_dir(tmp, final)
    return final
