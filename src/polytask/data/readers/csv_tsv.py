"""CSV and TSV files: a header or none, columns by name or position, any delimiter.

TSV files are read without quote processing (``csv.QUOTE_NONE``): real TSV corpora (STS-B, CoLA,
MRPC) contain unbalanced quote characters inside texts, and quoting would swallow whole lines.
CSV files use standard RFC-4180 quoting. Rows with extra trailing columns are fine.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import make_example, pick, read_text
from polytask.errors import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

DEFAULT_TEXT = ("text", "sentence", "sentence1", "question", "content")
DEFAULT_PAIR = ("text_pair", "sentence2")
DEFAULT_LABEL = ("label", "labels", "score")


@READERS.register("csv")
class CsvReader(Reader):
    """Comma-separated values (``data.delimiter`` overrides), RFC-4180 quoting.

    ``data.header``: True/False as given; when unset, the first row is a header if columns are
    named (``data.columns.text`` is a string) or if it contains one of the default column names
    (text, sentence, label, ...), and data otherwise.
    """

    default_delimiter = ","
    quoting = csv.QUOTE_MINIMAL

    def read(self, path: str | Path) -> list[Example]:
        cfg = self.config
        text = read_text(path, cfg.encoding)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=cfg.delimiter or self.default_delimiter,
                            quoting=self.quoting)
        rows = []
        for row in reader:
            rows.append((reader.line_num, row))
        rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
        if not rows:
            raise DataError("no rows in this file", path=str(path))
        header = self._header(rows[0][1])
        if header is not None:
            rows = rows[1:]
        cols = cfg.columns
        text_col = cols.text if cols.text is not None else _default(header, DEFAULT_TEXT, path, "text")
        pair_col = cols.text_pair if cols.text_pair is not None else _default(header, DEFAULT_PAIR, path, None)
        label_col = cols.label if cols.label is not None else _default(header, DEFAULT_LABEL, path, None)
        out = []
        for n, row in rows:
            where = f"{path}:{n}"
            pair = pick(row, pair_col, where, header) if pair_col is not None else None
            label = pick(row, label_col, where, header) if label_col is not None else None
            if label is not None and not label.strip():
                raise DataError(f"{where}: empty label in column {label_col!r}")
            out.append(make_example(pick(row, text_col, where, header), pair, label, cfg, where, text_col))
        return out

    def _header(self, first: list[str]) -> list[str] | None:
        cfg = self.config
        if cfg.header is not None:
            return [c.strip() for c in first] if cfg.header else None
        named = [c for c in (cfg.columns.text, cfg.columns.text_pair, cfg.columns.label) if isinstance(c, str)]
        cells = [c.strip() for c in first]
        if named:
            return cells
        if any(c.lower() in DEFAULT_TEXT + DEFAULT_PAIR + DEFAULT_LABEL for c in cells):
            return cells
        return None


def _default(header: list[str] | None, names: tuple[str, ...], path: str | Path, role: str | None):  # noqa: ANN202
    if header is not None:
        lower = [h.lower() for h in header]
        for name in names:
            if name in lower:
                return header[lower.index(name)]
    if role is None:
        return None
    raise DataError(
        f"cannot tell which column holds the {role}"
        + (f" (header: {', '.join(header)})" if header else " (no header row)")
        + "; set data.columns.text and data.columns.label (names or 0-based positions)",
        path=str(path),
    )


@READERS.register("tsv")
class TsvReader(CsvReader):
    """Tab-separated values without quote processing (see the module docstring)."""

    default_delimiter = "\t"
    quoting = csv.QUOTE_NONE
