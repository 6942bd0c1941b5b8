"""A task's pool of unlabelled text (``tasks[].unlabeled``), read with the task's reader settings:
what self-training pseudo-labels and consistency training (UDA) regularises on."""

from __future__ import annotations

import warnings
from pathlib import Path

from polytask.config.schema import TaskConfig
from polytask.data.example import Example
from polytask.errors import DataError


def read_unlabeled(tc: TaskConfig, token_level: bool = False) -> list[Example]:
    """The task's unlabelled pool, labels dropped (``unlabeled.limit`` applied).

    Args:
        tc: the task; its ``unlabeled`` block names the file and its format, and ``data`` gives
            the remaining reader settings (delimiter, encoding, columns when unset).
        token_level: whether the task tags tokens.

    Raises:
        DataError: a missing or empty file.
    Warns:
        UserWarning: the pool is the training file itself.
    """
    from polytask.data.loading import read_file
    from polytask.data.splits import seeded_subset

    unl = tc.unlabeled
    assert unl is not None
    path = Path(unl.path)
    if not path.exists():
        raise DataError(f"the unlabeled file of task {tc.name!r} does not exist (tasks.{tc.name}.unlabeled.path)",
                        path=str(path))
    if path.is_file() and not path.read_text(encoding=tc.data.encoding, errors="replace").strip():
        raise DataError(
            f"the unlabeled file of task {tc.name!r} is empty; tasks.{tc.name}.unlabeled.path must hold texts "
            "(one per row; a label column, if present, is ignored)",
            path=str(path),
        )
    if tc.data.train and path.resolve() == Path(tc.data.train).resolve():
        warnings.warn(
            f"tasks.{tc.name}.unlabeled.path is the training file {path}: its texts already have labels, so "
            "pseudo-labelling them adds nothing new; point unlabeled.path at text outside the training set",
            UserWarning,
            stacklevel=2,
        )
    if unl.format == "lines" or (unl.format == "auto" and path.is_file() and path.suffix.lower() == ".txt"):
        pool = read_lines(path, tc.data.encoding, token_level)
    else:
        data = tc.data.model_copy(update={
            "train": str(path), "dev": None, "test": None, "format": unl.format, "label_map": None,
            "columns": unl.columns or tc.data.columns, "limit": None,
        })
        examples = read_file(data, path, token_level, split="unlabeled")
        pool = [Example(text=e.text, text_pair=e.text_pair, label=None, where=e.where, meta=dict(e.meta))
                for e in examples]
    if unl.limit:
        pool = seeded_subset(pool, unl.limit, tc.data.split_seed)
    return pool


def read_lines(path: Path, encoding: str, token_level: bool) -> list[Example]:
    """One unlabelled text per non-blank line (words split on spaces for token tasks)."""
    out = []
    with open(path, encoding=encoding) as fh:
        for n, line in enumerate(fh, start=1):
            text = line.strip()
            if text:
                out.append(Example(text=text.split() if token_level else text, where=f"{path}:{n}"))
    return out
