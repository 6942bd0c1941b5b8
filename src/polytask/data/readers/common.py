"""What every reader shares: opening files with a clear encoding error, picking columns,
turning raw rows into Examples with file:line, and applying the label map."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from polytask.config.schema import Column, DataConfig
from polytask.data.example import Example
from polytask.errors import DataError


def read_text(path: str | Path, encoding: str) -> str:
    """The whole file as text; a UTF-8 BOM is dropped, a decoding error names file and line.

    Args:
        path: the file.
        encoding: one encoding, or several separated by commas, tried in order for each file
            (``utf-8,latin-1`` for collections where a few files are not UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder: set data.format)" if path.is_dir() else ""
        raise DataError(
            f"file not found{hint}; data paths are relative to the experiment file", path=str(path)
        )
    raw = path.read_bytes()
    choices = [e.strip() for e in encoding.split(",") if e.strip()]
    first_error: UnicodeDecodeError | None = None
    for enc in choices:
        codec = "utf-8-sig" if enc.lower().replace("_", "-") in ("utf-8", "utf8") else enc
        try:
            return raw.decode(codec)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
        except LookupError:
            raise DataError(f"unknown encoding {enc!r} (data.encoding)", path=str(path)) from None
    assert first_error is not None
    line = raw[: first_error.start].count(b"\n") + 1
    raise DataError(
        f"cannot decode byte 0x{raw[first_error.start]:02x} at offset {first_error.start} as {encoding}; "
        "set data.encoding to the file's encoding (e.g. latin-1, or utf-8,latin-1 to try both)",
        path=str(path),
        line=line,
    )


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline)."""
    for n, line in enumerate(io.StringIO(text, newline=None), 1):
        yield n, line.rstrip("\r\n")


def map_label(raw: Any, config: DataConfig, where: str) -> Any:
    """Apply ``data.label_map``; labels are kept as the reader found them otherwise."""
    if raw is None or config.label_map is None or isinstance(raw, list):
        return raw
    key = str(raw).strip()
    if key not in config.label_map:
        raise DataError(
            f"{where}: label {key!r} is not in data.label_map (keys: {', '.join(config.label_map)}); "
            "add it to the map or fix the data"
        )
    return config.label_map[key]


def make_example(
    text: Any, pair: Any, label: Any, config: DataConfig, where: str, text_col: Column | None, meta: dict | None = None
) -> Example:
    if text is None or (isinstance(text, str) and not text.strip()):
        raise DataError(f"{where}: empty text in column {text_col!r}; remove the row or fill it in")
    if isinstance(label, str):
        label = label.strip()
    return Example(text=text, text_pair=pair, label=map_label(label, config, where), where=where, meta=meta or {})


def pick(row: Sequence[str] | dict[str, Any], col: Column, where: str, header: Sequence[str] | None = None) -> Any:
    """Cell ``col`` of a row: by name (header or JSON key) or by 0-based position."""
    if isinstance(row, dict):
        if col not in row:
            raise DataError(f"{where}: no key {col!r} in this record (keys: {', '.join(map(str, row))}); "
                            "set data.columns")
        return row[col]
    if isinstance(col, str):
        if header is None:
            raise DataError(f"{where}: column {col!r} is named but the file has no header; "
                            "give data.columns as 0-based positions or set data.header: true")
        if col not in header:
            raise DataError(f"{where}: no column {col!r} in the header (columns: {', '.join(header)}); "
                            "fix data.columns")
        col = list(header).index(col)
    if not -len(row) <= col < len(row):
        raise DataError(f"{where}: row has {len(row)} columns, column {col} is missing; "
                        "check data.delimiter and data.columns")
    return row[col]
