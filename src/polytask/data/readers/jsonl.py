"""JSON Lines: one object per line; keys from ``data.columns`` (default text / text_pair / label)."""

from __future__ import annotations

import json
from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import (
    BadRows,
    as_label,
    format_hint,
    lines,
    make_example,
    pick,
    read_text,
)
from polytask.errors import DataError


@READERS.register("jsonl")
class JsonlReader(Reader):
    """Reads ``{"text": ..., "label": ...}`` per line; other keys are kept in ``Example.meta``.

    Keys come from ``data.columns`` (JSON keys; positions make no sense here). Unset, the text is
    ``text`` (for token-level tasks also ``tokens``), the pair ``text_pair`` when present and the
    label ``label`` (token level: also ``tags``). A record without the default label key (or
    with ``null``) is unlabelled; a label key set in ``data.columns.label`` must hold a label in
    every record. An empty list is a valid multi-label label (no class applies). Numeric labels
    become strings (``1`` -> ``"1"``), a list label (multi-label classes, token tags) stays a list.
    """

    def read(self, path: str | Path) -> list[Example]:
        cfg = self.config
        cols = cfg.columns
        for role in ("text", "text_pair", "label"):
            if isinstance(getattr(cols, role), int):
                raise DataError(
                    f"data.columns.{role} is a position, but JSON records have keys: give the key "
                    "name",
                    path=str(path),
                )
        out = []
        bad = BadRows(cfg, path)
        content = read_text(path, cfg.encoding)
        first = True
        for n, line in lines(content):
            if not line.strip():
                continue
            try:
                out.append(self._record(line, n, path, content, first))
            except DataError as exc:
                bad.add(exc)
            first = False
        bad.report(len(out))
        return out

    def _record(self, line: str, n: int, path: str | Path, content: str, first: bool) -> Example:
        """One record; a DataError here is one bad row (``data.on_bad_rows``)."""
        cfg = self.config
        cols = cfg.columns
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = ""
            if n == 1 and line.strip() in ("[", "{"):
                hint = "; this looks like one pretty-printed JSON document, but jsonl needs one object per line"
            elif first:
                hint = format_hint(content, "jsonl")
            raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}){hint}", str(path), n) from None
        if not isinstance(obj, dict):
            hint = " (the file holds a JSON array: write one object per line)" if isinstance(obj, list) else ""
            raise DataError(f"each line must be a JSON object{hint}", str(path), n)
        text_key = cols.text if cols.text is not None else (
            "tokens" if self.token_level and "tokens" in obj and "text" not in obj else "text")
        label_key = cols.label if cols.label is not None else (
            "tags" if self.token_level and "tags" in obj and "label" not in obj else "label")
        pair_key = cols.text_pair if cols.text_pair is not None else "text_pair"
        text = pick(obj, text_key, path, n)
        pair = obj.get(pair_key) if cols.text_pair is None else pick(obj, pair_key, path, n)
        label = obj.get(label_key) if cols.label is None else pick(obj, label_key, path, n)
        if label == "" or (label is None and cols.label is not None):
            raise DataError(f"empty label in key {label_key!r}", str(path), n)
        if not isinstance(text, (str, list)):
            raise DataError(
                f"the text in key {text_key!r} is a {type(text).__name__}, not a string "
                "(or a word list for token-level tasks)",
                str(path), n,
            )
        if self.token_level and isinstance(text, list) and isinstance(label, list) and len(text) != len(label):
            raise DataError(
                f"{len(text)} tokens in {text_key!r} but {len(label)} tags in {label_key!r}",
                str(path), n,
            )
        meta = {k: v for k, v in obj.items() if k not in (text_key, pair_key, label_key)}
        example = make_example(text, pair, as_label(label), cfg, path, n, text_key, pair_key, meta)
        if cols.group is not None:
            group = pick(obj, cols.group, path, n)
            example.group = None if group is None else str(group)
        return example
