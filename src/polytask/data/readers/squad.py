"""SQuAD JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``.

The layout of SQuAD v1.1 and v2.0 (Rajpurkar et al., EMNLP 2016, https://arxiv.org/abs/1606.05250;
Rajpurkar, Jia and Liang, ACL 2018, https://arxiv.org/abs/1806.03822), which most extractive QA
sets copy. Each question becomes one Example: ``text`` the question, ``text_pair`` the context,
``label`` the answers as ``[{"text", "answer_start"}]`` (an empty list for a v2.0 question marked
``is_impossible``), ``meta`` its ``id`` and ``title``, ``group`` the article's title (splits keep
an article's questions together).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import read_text
from polytask.errors import DataError


def looks_like_squad(path: str | Path) -> bool:
    """Whether a ``.json`` file is SQuAD-shaped (one JSON object with ``data`` articles holding
    ``paragraphs``) rather than JSON Lines: read from the first 64 KiB only."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return False
    start = head.lstrip("\ufeff \t\r\n")
    return start.startswith("{") and '"data"' in head and '"paragraphs"' in head


def where_of(path: str | Path, qid: Any) -> str:
    """``file (question id)``: what an error about one SQuAD question names."""
    return f"{path} (question {qid})"


@READERS.register("squad")
class SquadReader(Reader):
    """Reads a SQuAD v1.1 / v2.0 file into one Example per question (see the module docstring).

    A question without answers that is not marked ``is_impossible`` is an error naming the
    question id (a v1.1 file never has one); ``plausible_answers`` of v2.0 are ignored.
    """

    def read(self, path: str | Path) -> list[Example]:
        content = read_text(path, self.config.encoding)
        try:
            doc = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno})", str(path), exc.lineno) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise DataError(
                'a SQuAD file is one JSON object {"data": [{"title", "paragraphs"}]}; this one has no '
                '"data" list (for one record per line use data.format: jsonl)',
                str(path),
            )
        out: list[Example] = []
        for a, article in enumerate(doc["data"]):
            title = str(article.get("title", f"article {a}"))
            for p, para in enumerate(article.get("paragraphs", [])):
                context = para.get("context")
                if not isinstance(context, str) or not context.strip():
                    raise DataError(f"article {title!r}, paragraph {p}: no context", str(path))
                for q in para.get("qas", []):
                    out.append(self._question(q, context, title, path))
        return out

    @staticmethod
    def _question(q: dict[str, Any], context: str, title: str, path: str | Path) -> Example:
        qid = q.get("id", "?")
        where = where_of(path, qid)
        question = q.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: empty question")
        impossible = bool(q.get("is_impossible", False))
        answers = [] if impossible else [
            {"text": str(ans.get("text", "")), "answer_start": int(ans.get("answer_start", -1))}
            for ans in q.get("answers", [])
        ]
        if not impossible and not answers:
            raise DataError(
                f"{where}: no answers and not marked is_impossible; give its answers, or mark it "
                '"is_impossible": true (SQuAD v2.0)'
            )
        return Example(text=question, text_pair=context, label=answers, where=where,
                       meta={"id": qid, "title": title}, group=title)
