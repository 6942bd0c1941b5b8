"""Unlabelled text for pretraining: plain-text lines, folders of .txt files, or a text column."""

from __future__ import annotations

from pathlib import Path

from polytask.errors import DataError

TABLE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".tab")


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

    p = Path(path)
    if not p.exists():
        raise DataError(
            "text not found; give a .txt file (one text per line), a folder of .txt files, or a "
            ".jsonl/.csv/.tsv file with a text column (relative paths start at the config file)",
            path=str(p),
        )
    texts: list[str] = []
    if p.suffix.lower() in TABLE_SUFFIXES and p.is_file():
        texts = [t for t in _table_texts(p, text_column, encoding) if t.strip()]
    else:
        files = sorted(f for f in p.rglob("*.txt") if f.is_file()) if p.is_dir() else [p]
        if not files:
            raise DataError("no .txt files in this folder; put one text per line in .txt files",
                            path=str(p))
        for f in files:
            for _, line in lines(read_text(f, encoding)):
                if line.strip():
                    texts.append(line.strip())
                    if limit is not None and len(texts) >= limit:
                        return texts
    if not texts:
        raise DataError("the corpus is empty (no non-blank text); pretraining needs unlabelled text",
                        path=str(p))
    return texts[:limit] if limit is not None else texts


def _table_texts(path: Path, text_column: str | None, encoding: str) -> list[str]:
    from polytask.config.schema import ColumnsConfig, DataConfig
    from polytask.data.loading import resolve_format
    from polytask.data.readers import READERS

    config = DataConfig(train=str(path), encoding=encoding, columns=ColumnsConfig(text=text_column))
    reader = READERS.get(resolve_format(config, path, token_level=False))(config, token_level=False)
    return [ex.text if isinstance(ex.text, str) else " ".join(ex.text) for ex in reader.read(path)]
