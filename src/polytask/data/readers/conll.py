"""CoNLL-style token files (Tjong Kim Sang & De Meulder 2003, "Introduction to the CoNLL-2003
Shared Task: Language-Independent Named Entity Recognition", CoNLL 2003,
https://aclanthology.org/W03-0419/).

One token per line with columns, a blank or whitespace-only line between sentences (WNUT-16 files
separate sentences with a lone tab), lines starting with ``data.docstart`` (``-DOCSTART-``)
skipped. A line holding a tab is split on tabs, so a token may contain spaces
(``New York<TAB>B-LOC``); any other line is split on runs of spaces. Unicode spaces such as
U+00A0 never split, because tweets carry them inside tokens. The token and tag columns are
``data.columns.tokens`` (default 0) and ``data.columns.tags`` (default -1, the last column).
"""

from __future__ import annotations

import re
from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import lines, location, read_text
from polytask.errors import DataError

_SPACES = re.compile(r" +")


def split_columns(line: str) -> list[str]:
    """Columns of one CoNLL line: on tabs when it holds one inside, else on runs of spaces."""
    line = line.strip(" \t\r\n\v\f")
    if "\t" in line:
        return [c.strip(" ") for c in line.split("\t") if c.strip(" ")]
    return [c for c in _SPACES.split(line) if c]


@READERS.register("conll")
class ConllReader(Reader):
    """Sentences as word lists (``Example.text``) with one tag per word (``Example.label``);
    ``Example.where`` is the line of the sentence's first token."""

    def read(self, path: str | Path) -> list[Example]:
        if not self.token_level:
            raise DataError(
                "the conll format holds one tag per token: use it with a token_classification "
                "task (or pick another data.format)",
                path=str(path),
            )
        cfg = self.config
        t_col, g_col = cfg.columns.tokens, cfg.columns.tags
        # Columns needed for both positions to exist, counting negative ones from the end;
        # at least two, since a token's own column cannot also be its tag.
        need = max(2, *((c + 1) if c >= 0 else -c for c in (t_col, g_col)))
        out: list[Example] = []
        words: list[str] = []
        tags: list[str] = []
        start = 0

        def flush() -> None:
            if words:
                out.append(Example(text=list(words), label=list(tags), where=location(path, start)))
                words.clear()
                tags.clear()

        for n, line in lines(read_text(path, cfg.encoding)):
            if not line.strip():
                flush()
                continue
            if cfg.docstart and line.lstrip().startswith(cfg.docstart):
                flush()
                continue
            parts = split_columns(line)
            if len(parts) < need:
                raise DataError(
                    f"{len(parts)} column(s), but the token column is {t_col} and the tag column "
                    f"{g_col}; every line needs a token and a tag (check data.columns.tokens / "
                    "data.columns.tags, or make the sentence break a blank line)",
                    str(path),
                    n,
                )
            if not words:
                start = n
            words.append(parts[t_col])
            tags.append(parts[g_col])
        flush()
        return out
