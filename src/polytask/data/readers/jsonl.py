"""JSON Lines: one object per line; keys from ``data.columns`` (default text / text_pair / label)."""

from __future__ import annotations

import json
from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import lines, make_example, pick, read_text
from polytask.errors import DataError


@READERS.register("jsonl")
class JsonlReader(Reader):
    """Reads ``{"text": ..., "label": ...}`` per line; other keys are kept in ``Example.meta``.

    For token classification, ``text`` may be a word list (or ``tokens``) and the label a tag list.
    """

    def read(self, path: str | Path) -> list[Example]:
        cfg = self.config
        cols = cfg.columns
        out = []
        for n, line in lines(read_text(path, cfg.encoding)):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno})", str(path), n) from None
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", str(path), n)
            text_key = cols.text if cols.text is not None else ("tokens" if self.token_level and "tokens" in obj and "text" not in obj else "text")
            label_key = cols.label if cols.label is not None else ("tags" if self.token_level and "tags" in obj and "label" not in obj else "label")
            pair_key = cols.text_pair if cols.text_pair is not None else "text_pair"
            text = pick(obj, text_key, where)
            pair = obj.get(pair_key) if cols.text_pair is None else pick(obj, pair_key, where)
            label = obj.get(label_key) if cols.label is None else pick(obj, label_key, where)
            meta = {k: v for k, v in obj.items() if k not in (text_key, pair_key, label_key)}
            if isinstance(label, (int, float)) and not isinstance(label, bool):
                label = str(label)
            out.append(make_example(text, pair, label, cfg, where, text_key, meta))
        return out
