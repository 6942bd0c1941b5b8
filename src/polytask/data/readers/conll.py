"""CoNLL-style token files (Tjong Kim Sang & De Meulder 2003): one token per line with
whitespace-separated columns, a blank (or whitespace-only) line between sentences, ``-DOCSTART-``
lines skipped. The token and tag columns are ``data.columns.tokens`` / ``data.columns.tags``."""

from __future__ import annotations

from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import lines, read_text
from polytask.errors import DataError


@READERS.register("conll")
class ConllReader(Reader):
    """Sentences as word lists with one tag per word."""

    def read(self, path: str | Path) -> list[Example]:
        if not self.token_level:
            raise DataError("the conll format holds token tags: use it with a token_classification task",
                            path=str(path))
        cfg = self.config
        t_col, g_col = cfg.columns.tokens, cfg.columns.tags
        out: list[Example] = []
        words: list[str] = []
        tags: list[str] = []
        start = 0

        def flush() -> None:
            if words:
                out.append(Example(text=list(words), label=list(tags), where=f"{path}:{start}"))
                words.clear()
                tags.clear()

        for n, line in lines(read_text(path, cfg.encoding)):
            if not line.strip():
                flush()
                continue
            if cfg.docstart and line.lstrip().startswith(cfg.docstart):
                flush()
                continue
            parts = line.split()
            need = max(t_col if t_col >= 0 else -t_col - 1, g_col if g_col >= 0 else -g_col - 1) + 1
            if len(parts) < need or len(parts) < 2:
                raise DataError(
                    f"{len(parts)} column(s) but the token column is {t_col} and the tag column {g_col}; "
                    "every line needs a token and a tag (check data.columns.tokens / tags)",
                    str(path), n,
                )
            if not words:
                start = n
            words.append(parts[t_col])
            tags.append(parts[g_col])
        flush()
        return out
