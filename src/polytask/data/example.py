"""The one record type that flows from readers to tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Example:
    """One labelled (or unlabelled) example.

    Attributes:
        text: the text; for token classification, the list of words.
        text_pair: the second text of a sentence pair, or None.
        label: a class name (classification), a list of class names (multilabel), a float
            (regression), a list of tags (token classification), or None when unlabelled.
            Readers keep labels as they find them (strings); tasks convert and check them.
        where: ``file:line`` of the record, used in error messages.
        meta: anything else the reader found (id, domain, ...), carried to predictions.
        group: what keeps examples together when a split is carved out (a SQuAD article's
            title: its questions share one context), or None; see ``data.splits``.
    """

    text: str | list[str]
    text_pair: str | None = None
    label: Any = None
    where: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
