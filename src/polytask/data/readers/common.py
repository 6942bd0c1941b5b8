"""What every reader shares: opening files with a clear encoding error, picking columns,
turning raw rows into Examples with ``file:line``, and applying the label map.

Every error is a DataError carrying the file and the 1-based line (or record) number, so the
message reads ``path:line: what is wrong; how to fix it``.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from polytask.config.schema import Column, DataConfig
from polytask.data.example import Example
from polytask.errors import DataError

UTF8_BOM = b"\xef\xbb\xbf"
SHOWN_LINES = 20  # line numbers listed in a bad-rows report
logger = logging.getLogger("polytask.data")


def read_text(path: str | Path, encoding: str) -> str:
    """The whole file as text; a UTF-8 BOM is dropped, a decoding error names file and line.

    Reading the file in one piece and decoding once is what keeps a 30 MB file under a second.

    Args:
        path: the file.
        encoding: one encoding, or several separated by commas, tried in order for each file
            (``utf-8,latin-1`` for collections where a few files are not UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder: set data.format to folder or hf)" if path.is_dir() else ""
        raise DataError(
            f"file not found{hint}; data paths are relative to the experiment file", path=str(path)
        )
    raw = path.read_bytes()
    choices = [e.strip() for e in encoding.split(",") if e.strip()] or ["utf-8"]
    # A UTF-8 BOM is dropped whatever the configured encoding (MRPC's header would otherwise
    # start with "\ufeffQuality"); UTF-16/32 codecs handle their own BOMs.
    skip = len(UTF8_BOM) if raw.startswith(UTF8_BOM) else 0
    first_error: UnicodeDecodeError | None = None
    for enc in choices:
        try:
            return raw[skip:].decode(enc)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
        except LookupError:
            raise DataError(f"unknown encoding {enc!r} (data.encoding)", path=str(path)) from None
    assert first_error is not None
    offset = first_error.start + skip
    line = raw[:offset].count(b"\n") + 1
    raise DataError(
        f"cannot decode byte 0x{raw[offset]:02x} at offset {offset} as {encoding}; "
        "set data.encoding (e.g. latin-1, or utf-8,latin-1 to try both in turn)",
        path=str(path),
        line=line,
    )


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline).

    Only ``\\n``, ``\\r\\n`` and ``\\r`` end a line (not ``str.splitlines``'s Unicode separators,
    which occur inside real texts), so numbers match what an editor shows.
    """
    for n, line in enumerate(io.StringIO(text, newline=None), 1):
        yield n, line.rstrip("\r\n")


def location(path: str | Path, line: int | None) -> str:
    """The ``Example.where`` string: ``path:line``, or the path alone."""
    return f"{path}:{line}" if line is not None else str(path)


def map_label(raw: Any, config: DataConfig, path: str | Path, line: int | None) -> Any:
    """Apply ``data.label_map`` (to each element of a list label); labels are kept otherwise.

    Args:
        raw: the label as read (a string, or a list of strings).
        config: the data config holding ``label_map``.
        path: the file, for the error message.
        line: the 1-based line or record, for the error message.
    """
    if raw is None or config.label_map is None:
        return raw
    if isinstance(raw, list):
        return [map_label(r, config, path, line) for r in raw]
    key = str(raw).strip()
    if key not in config.label_map:
        raise DataError(
            f"label {key!r} is not in data.label_map (keys: {', '.join(config.label_map)}); "
            "add it to the map or fix the data",
            str(path),
            line,
        )
    return config.label_map[key]


def check_label_text(label: Any, path: str | Path, line: int | None, noun: str = "label") -> None:
    """A DataError when a label (or any element of a list label) holds a control character:
    ``'1\\x00'`` would otherwise become a class of its own.

    Args:
        label: the label as read.
        path: the file, for the message.
        line: the 1-based line, for the message.
        noun: what a label is called here ("label", "tag").
    """
    for value in label if isinstance(label, list) else [label]:
        if not isinstance(value, str):
            continue
        for i, ch in enumerate(value):
            if unicodedata.category(ch) == "Cc":
                raise DataError(
                    f"{noun} {value!r} holds a control character (U+{ord(ch):04X} at position {i}); "
                    "labels are plain text: fix the file (NUL bytes often mean a binary or UTF-16 "
                    "file: check data.encoding)",
                    str(path),
                    line,
                )


class BadRows:
    """Rows a reader cannot use, handled as ``data.on_bad_rows`` says.

    ``error`` raises the first; ``skip`` and ``warn`` leave them out and ``report`` logs how
    many and on which lines (``warn`` also logs each row's own message as it is found). When
    every row is bad the first error is raised anyway: the settings are wrong, not the rows.

    Args:
        config: the data config (``on_bad_rows``).
        path: the file.
    """

    def __init__(self, config: DataConfig, path: str | Path):
        self.mode = getattr(config, "on_bad_rows", "error")
        self.path = str(path)
        self.lines: list[int] = []
        self.first: DataError | None = None

    def add(self, exc: DataError) -> None:
        """Record (or, under ``error``, raise) one bad row's error."""
        if self.mode == "error":
            raise exc
        self.first = self.first or exc
        if exc.line is not None:
            self.lines.append(exc.line)
        if self.mode == "warn":
            logger.warning("%s (row skipped: data.on_bad_rows is warn)", exc)

    def report(self, kept: int) -> None:
        """Log the summary; raise the first error when nothing was ``kept``."""
        if self.first is None:
            return
        if kept == 0:
            raise self.first
        shown = ", ".join(map(str, self.lines[:SHOWN_LINES]))
        more = f" and {len(self.lines) - SHOWN_LINES} more" if len(self.lines) > SHOWN_LINES else ""
        logger.warning(
            "%s: skipped %d bad row(s) (data.on_bad_rows: %s) on line(s) %s%s; the first: %s",
            self.path, len(self.lines), self.mode, shown, more, self.first,
        )


_TAG = re.compile(r"(O|[BIESLU]-\S+)")


def sniff_format(text: str) -> str | None:
    """The format a file's text looks like (``conll``, ``jsonl``, ``tsv``, ``csv``), or None;
    used only to add a hint to an error, never to pick the reader.

    Args:
        text: the file's text (the first 200 non-blank lines are looked at).
    """
    sample = [ln for _, ln in lines(text[:200_000]) if ln.strip()][:200]
    if not sample:
        return None
    if sum(ln.lstrip().startswith("{") for ln in sample) >= 0.9 * len(sample):
        return "jsonl"
    last = [ln.split()[-1] for ln in sample]
    short = sum(1 <= len(ln.split()) <= 6 for ln in sample)
    tags = sum(bool(_TAG.fullmatch(t)) for t in last)
    blank_between = any(not ln.strip() for _, ln in lines(text[:200_000]))
    if tags >= 0.7 * len(sample) and short >= 0.9 * len(sample) and blank_between:
        return "conll"
    if sum("\t" in ln for ln in sample) >= 0.9 * len(sample):
        return "tsv"
    if sum("," in ln for ln in sample) >= 0.9 * len(sample):
        return "csv"
    return None


def format_hint(text: str, configured: str) -> str:
    """``; this file looks like <fmt>: set data.format: <fmt>`` when it looks like another format."""
    guess = sniff_format(text)
    if guess is None or guess == configured:
        return ""
    what = {"conll": "CoNLL (a token and its tag per line, a blank line between sentences)",
            "jsonl": "JSON Lines (one object per line)", "tsv": "tab-separated columns",
            "csv": "comma-separated columns"}[guess]
    return f"; this file looks like {what}: set data.format: {guess}"


def as_label(value: Any) -> Any:
    """Numbers (JSON, HF datasets) become the strings a text file would hold: readers keep
    labels as strings, and the task converts them (to floats for regression)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [as_label(v) for v in value]
    if isinstance(value, str):
        return value.strip()
    return value


def make_example(
    text: Any,
    pair: Any,
    label: Any,
    config: DataConfig,
    path: str | Path,
    line: int | None,
    text_col: Column | None,
    pair_col: Column | None = None,
    meta: dict[str, Any] | None = None,
) -> Example:
    """Check the text and build an Example (label mapped through ``data.label_map``).

    Args:
        text: the text, or a word list for token-level data.
        pair: the second text of a pair, or None.
        label: the raw label (string or list), or None when unlabelled.
        config: the data config.
        path: the file; with ``line`` it becomes ``Example.where``.
        line: 1-based line or record number, or None (one file per example).
        text_col: the column the text came from, named in the empty-text error.
        pair_col: the column the pair text came from.
        meta: extra fields carried to predictions.
    """
    if _is_empty(text):
        raise DataError(
            f"empty text in column {text_col!r}; remove the row or fill it in", str(path), line
        )
    if isinstance(pair, str) and not pair.strip():
        raise DataError(
            f"empty text in column {pair_col!r}; remove the row or fill it in", str(path), line
        )
    label = as_label(label)
    check_label_text(label, path, line)
    return Example(
        text=text,
        text_pair=pair,
        label=map_label(label, config, path, line),
        where=location(path, line),
        meta=meta or {},
    )


def _is_empty(text: Any) -> bool:
    if isinstance(text, list):
        return not any(str(t).strip() for t in text)
    return text is None or (isinstance(text, str) and not text.strip())


def pick(
    row: Sequence[str] | dict[str, Any],
    col: Column,
    path: str | Path,
    line: int | None,
    header: Sequence[str] | None = None,
) -> Any:
    """Cell ``col`` of a row: by name (header or JSON key) or by 0-based position.

    Args:
        row: a list of cells (CSV/TSV) or a JSON object.
        col: a column name or a 0-based position (negative counts from the end).
        path: the file, for error messages.
        line: the row's 1-based line, for error messages.
        header: the header row, needed to find named columns of a CSV/TSV row.
    """
    if isinstance(row, dict):
        if col not in row:
            raise DataError(
                f"no key {col!r} in this record (keys: {', '.join(map(str, row))}); "
                "set data.columns",
                str(path),
                line,
            )
        return row[col]
    if isinstance(col, str):
        if header is None:
            raise DataError(
                f"column {col!r} is named but the file has no header; give data.columns as "
                "0-based positions or set data.header: true",
                str(path),
                line,
            )
        if col not in header:
            raise DataError(
                f"no column {col!r} in the header (columns: {', '.join(header)}); fix "
                "data.columns (if the file has no header row, give 0-based positions)",
                str(path),
                line,
            )
        col = list(header).index(col)
    if not -len(row) <= col < len(row):
        raise DataError(
            f"row has {len(row)} columns, column {col} is missing; check data.delimiter and "
            "data.columns",
            str(path),
            line,
        )
    return row[col]
