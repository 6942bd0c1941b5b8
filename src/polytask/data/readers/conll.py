"""CoNLL-style token files (Tjong Kim Sang & De Meulder 2003, "Introduction to the CoNLL-2003
Shared Task: Language-Independent Named Entity Recognition", CoNLL 2003,
https://aclanthology.org/W03-0419/).

One token per line with columns, a blank or whitespace-only line between sentences (WNUT-16 files
separate sentences with a lone tab), lines starting with ``data.docstart`` (``-DOCSTART-``)
skipped. A line holding a tab is split on tabs, so a token may contain spaces
(``New York<TAB>B-LOC``); any other line is split on runs of spaces. Unicode spaces such as
U+00A0 never split, because tweets carry them inside tokens. The token and tag columns are
``data.columns.tokens`` (default 0) and ``data.columns.tags`` (default -1, the last column).

Every token line must have as many columns as most lines of the file: a line with an extra or
a missing column would otherwise silently take another column as its tag. Such a line, one too
short for the configured columns, or a tag holding a control character is a bad row: under
``data.on_bad_rows: error`` (the default) it stops the read, under ``skip``/``warn`` its whole
sentence is left out and reported. A line holding nothing but U+FEFF (a stray byte-order mark,
as in a public social-media NER set) is a sentence break like a blank line.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import (
    BadRows,
    check_label_text,
    format_hint,
    lines,
    location,
    read_text,
)
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
    ``Example.where`` is the line of the sentence's first token and ``Example.meta["token_lines"]``
    the line of each token, so an error about one tag names that tag's own line."""

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
        where: list[int] = []
        spoilt = False  # the sentence holds a bad row (left out under skip/warn)
        bad = BadRows(cfg, path)
        content = read_text(path, cfg.encoding)

        def flush() -> None:
            nonlocal spoilt
            if words and not spoilt:
                out.append(Example(text=list(words), label=list(tags), where=location(path, where[0]),
                                   meta={"token_lines": list(where)}))
            words.clear()
            tags.clear()
            where.clear()
            spoilt = False

        rows: list[tuple[int, list[str] | None]] = []  # None: a sentence break
        for n, line in lines(content):
            if not line.strip().strip("\ufeff") or (cfg.docstart and line.lstrip().startswith(cfg.docstart)):
                rows.append((n, None))
            else:
                rows.append((n, split_columns(line)))
        # The file's column count: the most common one (the first line's on a tie), so the
        # line named as odd is the odd one even when it comes first.
        counts = Counter(len(p) for _, p in rows if p is not None)
        width = max(counts, key=lambda w: counts[w]) if counts else 0
        first_of = {len(p): n for n, p in reversed(rows) if p is not None}

        for n, parts in rows:
            if parts is None:
                flush()
                continue
            try:
                if len(parts) < need:
                    raise DataError(
                        f"{len(parts)} column(s), but the token column is {t_col} and the tag column "
                        f"{g_col}; every line needs a token and a tag (check data.columns.tokens / "
                        "data.columns.tags, or make the sentence break a blank line)"
                        + format_hint(content, "conll"),
                        str(path),
                        n,
                    )
                if len(parts) != width:
                    raise DataError(
                        f"{len(parts)} columns, but most lines of this file have {width} (the first "
                        f"such: line {first_of[width]}); an extra or missing column would shift the "
                        "tag column (fix the line, or set data.on_bad_rows: skip to leave its "
                        "sentence out)",
                        str(path),
                        n,
                    )
                check_label_text(parts[g_col], path, n, noun="tag")
            except DataError as exc:
                bad.add(exc)
                spoilt = True
                continue
            words.append(parts[t_col])
            tags.append(parts[g_col])
            where.append(n)
        flush()
        bad.report(len(out))
        return out
