"""Unlabelled text for pretraining: plain-text lines, folders of .txt files, or a text column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.errors import ConfigError, DataError

if TYPE_CHECKING:
    from datasets import IterableDataset

TABLE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".tab")
CSV_TEXT_COLUMNS = ("text", "sentence", "sentence1")  # the csv reader's defaults, in order
EMPTY = "the corpus is empty (no non-blank text); pretraining needs unlabelled text"


def read_corpus(path: str | Path, text_column: str | None = None, encoding: str = "utf-8",
                limit: int | None = None) -> list[str]:
    """The texts of a corpus, in file order; blank lines are skipped.

    Args:
        path: a text file (one text per line), a folder (every ``*.txt`` below it, sorted by
            path, one text per line), or a ``.jsonl`` / ``.csv`` / ``.tsv`` file read by the
            polytask readers (``text_column`` picks the column; labels, if any, are ignored).
        text_column: the column or JSON key of the text in a table file.
        encoding: file encoding(s), as ``data.encoding``.
        limit: stop after this many texts.

    Raises:
        DataError: the path does not exist, or holds no text.
    """
    from polytask.data.readers.common import lines, read_text

    p = _existing(path)
    texts: list[str] = []
    if _is_table(p):
        texts = [t for t in _table_texts(p, text_column, encoding) if t.strip()]
    else:
        for f in _txt_files(p):
            for _, line in lines(read_text(f, encoding)):
                if line.strip():
                    texts.append(line.strip())
                    if limit is not None and len(texts) >= limit:
                        return texts
    if not texts:
        raise DataError(EMPTY, path=str(p))
    return texts[:limit] if limit is not None else texts


def stream_corpus(path: str | Path, text_column: str | None = None, encoding: str = "utf-8",
                  limit: int | None = None) -> IterableDataset:
    """The texts of a corpus as a lazy ``datasets.IterableDataset`` of ``{"text": str}`` rows.

    The same inputs, texts and order as :func:`read_corpus`, read through ``datasets``'
    ``text`` / ``json`` / ``csv`` builders with ``streaming=True``: files are read a chunk at a
    time (10 MB, or 10,000 CSV rows) as the rows are asked for, so memory stays flat whatever the
    corpus size. Only the first text is read here, so that an empty corpus or a missing text
    column fails at once rather than mid-training; errors further down the files surface when
    iteration reaches them.

    Args:
        path: as :func:`read_corpus`. A ``.csv`` / ``.tsv`` file needs a header row.
        text_column: as :func:`read_corpus`.
        encoding: one encoding (a list such as ``utf-8,latin-1`` needs the whole file in hand).
        limit: stop after this many texts.

    Raises:
        DataError: the path does not exist, holds no text, or lacks the text column.
        ConfigError: several encodings.
    """
    from datasets import load_dataset

    p = _existing(path)
    choices = [e.strip() for e in encoding.split(",") if e.strip()] or ["utf-8"]
    if len(choices) > 1:
        raise ConfigError(f"stream reads each file with one encoding, not {encoding!r}; set encoding to "
                          "one (e.g. utf-8 or latin-1), or set stream: false to try several in turn",
                          field="encoding")
    enc = choices[0]
    suffix = p.suffix.lower()
    if _is_table(p) and suffix in (".csv", ".tsv", ".tab"):
        # TSV without quote processing, as the tsv reader; empty cells stay "" (not NaN).
        kwargs: dict[str, Any] = {"sep": "," if suffix == ".csv" else "\t", "encoding": enc,
                                  "keep_default_na": False,
                                  "quoting": csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE}
        builder, files, key, strip = "csv", [p], _csv_column(text_column, p), False
    elif _is_table(p):
        builder, files, kwargs, strip = "json", [p], {"encoding": enc}, False
        key = _json_key(text_column, p)
    else:
        # utf-8-sig drops a byte-order mark at the start of each file, as read_text does.
        utf8 = enc.lower().replace("_", "-") in ("utf-8", "utf8")
        builder, files, kwargs, strip = "text", _txt_files(p), {"encoding": "utf-8-sig" if utf8 else enc}, True
        key = _line
    with corpus_errors(p, enc):
        rows = load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=True, **kwargs)
    texts = rows.map(key, with_indices=True).filter(lambda row: bool(row["text"].strip()))
    texts = texts.map(lambda row: {"text": row["text"].strip()}) if strip else texts
    texts = texts.select_columns(["text"])
    if limit is not None:
        texts = texts.take(limit)
    if next(iter_texts(texts, p, enc), None) is None:
        raise DataError(EMPTY, path=str(p))
    return texts


def iter_texts(texts: IterableDataset, path: str | Path, encoding: str) -> Iterator[str]:
    """The texts of :func:`stream_corpus`, with a decoding or JSON error as a DataError naming the file."""
    with corpus_errors(path, encoding):
        for row in texts:
            yield row["text"]


@contextmanager
def corpus_errors(path: str | Path, encoding: str) -> Iterator[None]:
    """Turn a decoding or parse error met while streaming ``path`` into a DataError naming it."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode byte 0x{exc.object[exc.start]:02x} as {encoding}; set encoding "
                        "(e.g. latin-1)", path=str(path)) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (encoding)", path=str(path)) from None
    except DataError:
        raise
    except Exception as exc:  # pyarrow / pandas parse errors
        if type(exc).__name__ not in ("ArrowInvalid", "ParserError", "DatasetGenerationError"):
            raise
        raise DataError(f"cannot read this file while streaming: {str(exc).splitlines()[0]}",
                        path=str(path)) from None


def _line(row: dict[str, Any], index: int) -> dict[str, Any]:
    return {"text": row["text"]}


def _json_key(text_column: str | None, path: Path) -> Any:
    column = text_column or "text"

    def text_of(row: dict[str, Any], index: int) -> dict[str, Any]:
        # A JSON record without the key reads as null here (the columns are the union of keys).
        text = row.get(column)
        if text is None:
            keys = ", ".join(k for k, v in row.items() if v is not None)
            raise DataError(f"no key {column!r} in this record (keys: {keys}); set text_column",
                            str(path), index + 1)
        if not isinstance(text, (str, list)):
            raise DataError(f"the text in key {column!r} is a {type(text).__name__}, not a string",
                            str(path), index + 1)
        text = text if isinstance(text, str) else " ".join(map(str, text))
        if not text.strip():
            raise DataError(f"empty text in column {column!r}; remove the row or fill it in", str(path), index + 1)
        return {"text": text}

    return text_of


def _csv_column(text_column: str | None, path: Path) -> Any:
    def text_of(row: dict[str, Any], index: int) -> dict[str, Any]:
        header = list(row)
        if text_column is not None:
            if text_column not in row:
                raise DataError(f"no column {text_column!r} in the header (columns: {', '.join(header)}); "
                                "fix text_column (stream needs a header row)", str(path), 1)
            column = text_column
        else:
            lower = [h.lower() for h in header]
            found = [header[lower.index(n)] for n in CSV_TEXT_COLUMNS if n in lower]
            if not found:
                raise DataError(f"cannot tell which column holds the text (header: {', '.join(header)}); "
                                "set text_column to the column name", str(path), 1)
            column = found[0]
        text = "" if row[column] is None else str(row[column])
        if not text.strip():
            # The record number; the line is one more (the header), when no field spans lines.
            raise DataError(f"empty text in column {column!r}; remove the row or fill it in", str(path), index + 2)
        return {"text": text}

    return text_of


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(
            "text not found; give a .txt file (one text per line), a folder of .txt files, or a "
            ".jsonl/.csv/.tsv file with a text column (relative paths start at the config file)",
            path=str(p),
        )
    return p


def _is_table(p: Path) -> bool:
    return p.suffix.lower() in TABLE_SUFFIXES and p.is_file()


def _txt_files(p: Path) -> list[Path]:
    files = sorted(f for f in p.rglob("*.txt") if f.is_file()) if p.is_dir() else [p]
    if not files:
        raise DataError("no .txt files in this folder; put one text per line in .txt files", path=str(p))
    return files


def _table_texts(path: Path, text_column: str | None, encoding: str) -> list[str]:
    from polytask.config.schema import ColumnsConfig, DataConfig
    from polytask.data.loading import resolve_format
    from polytask.data.readers import READERS

    config = DataConfig(train=str(path), encoding=encoding, columns=ColumnsConfig(text=text_column))
    reader = READERS.get(resolve_format(config, path, token_level=False))(config, token_level=False)
    return [ex.text if isinstance(ex.text, str) else " ".join(ex.text) for ex in reader.read(path)]
