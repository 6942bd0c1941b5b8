"""CSV and TSV files: a header or none, columns by name or position, any delimiter.

Quoting: CSV files use standard RFC-4180 quoting (``"a, b"``, ``""`` for a quote), parsed by the
``csv`` module, so quoted fields may hold the delimiter and newlines. TSV files are read without
quote processing (``csv.QUOTE_NONE``): real TSV corpora (STS-B, CoLA, MRPC) contain unbalanced
quote characters inside texts, and quote processing would swallow whole lines into one field.
A TSV file that does quote its fields keeps the quotes; read such a file as ``format: csv`` with
``delimiter: "\\t"``.

Header (``data.header``): True or False is obeyed. Left unset (auto), the first row is a header
when any of these holds, and data otherwise:

1. a column is configured by name (``data.columns.text: review``): names need a header;
2. the first row contains a default column name (text, sentence, sentence1, sentence2,
   text_pair, label, labels, score; any case), e.g. SMS Spam's ``Label<TAB>SMS``;
3. some column is numeric in every sampled row after the first but not in the first row
   (the type test of ``csv.Sniffer.has_header``), e.g. MRPC's ``Quality`` over 0/1 labels.

Set ``data.header`` explicitly whenever a file could fool these rules.

Rows with extra trailing columns (STS-B) are fine; a row too short for a configured column is an
error naming file, line and column.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

from polytask.config.schema import Column
from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import BadRows, make_example, pick, read_text
from polytask.errors import DataError

# Some corpora hold whole documents in one cell; the csv module's default cap is 128 KiB.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

DEFAULT_TEXT = ("text", "sentence", "sentence1")
DEFAULT_PAIR = ("text_pair", "sentence2")
DEFAULT_LABEL = ("label", "labels", "score")
HEADER_SAMPLE = 50  # rows after the first looked at by the numeric-column header test
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@READERS.register("csv")
class CsvReader(Reader):
    """Comma-separated values (``data.delimiter`` overrides), RFC-4180 quoting.

    Columns come from ``data.columns`` (names or 0-based positions). Unset, a file with a header
    uses its ``text`` (or ``sentence``, ``sentence1``) column, ``text_pair`` (or ``sentence2``)
    and ``label`` (or ``labels``, ``score``) when present; a file without a header needs
    positions. See the module docstring for how the header is detected.
    """

    default_delimiter = ","
    quoting = csv.QUOTE_MINIMAL

    def read(self, path: str | Path) -> list[Example]:
        cfg = self.config
        rows = self._rows(path, read_text(path, cfg.encoding))
        if not rows:
            raise DataError("no rows in this file", path=str(path))
        header = self._header(rows)
        if header is not None:
            rows = rows[1:]
        cols = cfg.columns
        text_col = cols.text if cols.text is not None else _default(header, DEFAULT_TEXT, path, "text")
        pair_col = cols.text_pair if cols.text_pair is not None else _default(header, DEFAULT_PAIR, path)
        label_col = cols.label if cols.label is not None else _default(header, DEFAULT_LABEL, path)
        out = []
        bad = BadRows(cfg, path)
        for n, row in rows:
            try:
                text = pick(row, text_col, path, n, header)
                pair = pick(row, pair_col, path, n, header) if pair_col is not None else None
                label = pick(row, label_col, path, n, header) if label_col is not None else None
                if label is not None and not label.strip():
                    raise DataError(f"empty label in column {label_col!r}", str(path), n)
                example = make_example(text, pair, label, cfg, path, n, text_col, pair_col)
                if cols.group is not None:
                    example.group = pick(row, cols.group, path, n, header)
                out.append(example)
            except DataError as exc:
                bad.add(exc)
        bad.report(len(out))
        return out

    def _rows(self, path: str | Path, text: str) -> list[tuple[int, list[str]]]:
        """Non-blank rows with the 1-based line each starts on (quoted fields may span lines)."""
        physical = list(io.StringIO(text, newline=""))
        delimiter = self.config.delimiter or self.default_delimiter
        reader = csv.reader(iter(physical), delimiter=delimiter, quoting=self.quoting)
        rows: list[tuple[int, list[str]]] = []
        start = 1
        try:
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append((start, row))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"malformed {self.registry_name.upper()} row: {exc}", str(path), start) from None
        if self.quoting != csv.QUOTE_NONE and rows and reader.line_num > rows[-1][0]:
            _check_closed_quote(physical, rows[-1][0], delimiter, path)
        return rows

    def _header(self, rows: list[tuple[int, list[str]]]) -> list[str] | None:
        cfg = self.config
        first = [c.strip() for c in rows[0][1]]
        if cfg.header is not None:
            return first if cfg.header else None
        cols = (cfg.columns.text, cfg.columns.text_pair, cfg.columns.label)
        if any(isinstance(c, str) for c in cols):
            return first
        if any(c.lower() in DEFAULT_TEXT + DEFAULT_PAIR + DEFAULT_LABEL for c in first):
            return first
        return first if _numeric_column_under_text(first, [r for _, r in rows[1 : 1 + HEADER_SAMPLE]]) else None


def _numeric_column_under_text(first: list[str], sample: list[list[str]]) -> bool:
    """True when some column is a number in every sampled row but not in the first row."""
    for j, cell in enumerate(first):
        if not cell or _NUMBER.fullmatch(cell):
            continue
        below = [r[j].strip() for r in sample if j < len(r)]
        if below and all(_NUMBER.fullmatch(v) for v in below):
            return True
    return False


def _check_closed_quote(physical: list[str], start: int, delimiter: str, path: str | Path) -> None:
    """The csv module silently lets an unclosed quote run to the end of the file: catch it."""
    tail = io.StringIO("".join(physical[start - 1 :]), newline="")
    try:
        list(csv.reader(tail, delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DataError(
                "a quoted field opened on this line is never closed and runs to the end of the "
                "file; fix the quoting, or read the file as tsv (no quote processing)",
                str(path),
                start,
            ) from None


def _default(
    header: list[str] | None, names: tuple[str, ...], path: str | Path, role: str | None = None
) -> Column | None:
    """The header column matching one of ``names`` (any case); for ``role`` it must exist."""
    if header is not None:
        lower = [h.lower() for h in header]
        for name in names:
            if name in lower:
                return header[lower.index(name)]
    if role is None:
        return None
    if header is None:
        raise DataError(
            f"cannot tell which column holds the {role}: the file has no header row; set "
            "data.columns.text and data.columns.label to 0-based positions (e.g. text: 1, "
            "label: 0), or data.header: true if the first row is a header",
            path=str(path),
        )
    raise DataError(
        f"cannot tell which column holds the {role} (header: {', '.join(header)}); set "
        "data.columns.text and data.columns.label to column names or 0-based positions",
        path=str(path),
    )


@READERS.register("tsv")
class TsvReader(CsvReader):
    """Tab-separated values without quote processing (see the module docstring)."""

    default_delimiter = "\t"
    quoting = csv.QUOTE_NONE
