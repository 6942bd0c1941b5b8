"""Read inputs for ``polytask predict``: JSONL, CSV/TSV with a header, or plain text lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from polytask.data.example import Example
from polytask.errors import DataError


def read_inputs(path: str | Path, text_field: str = "text", pair_field: str = "text_pair") -> list[Example]:
    """Unlabelled examples from a prediction input file (see ``read_input_records``)."""
    return [ex for ex, _ in read_input_records(path, text_field, pair_field)]


def read_input_records(
    path: str | Path, text_field: str = "text", pair_field: str = "text_pair"
) -> list[tuple[Example, dict]]:
    """Unlabelled examples from a prediction input file, each with its record as read (the JSON
    object, the CSV row, or ``{"text": line}``), so outputs can repeat every input field as given.

    ``.jsonl``: one object a line with ``text`` (a string, or a word list for token tasks; also
    ``tokens``) and optionally ``text_pair``; other keys are carried into the output.
    ``.csv``/``.tsv``: a header row naming the ``text`` (and ``text_pair``) column.
    Anything else: one text per line, blank lines skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("input file not found", path=str(path))
    suffix = path.suffix.lower()
    out: list[Example] = []
    records: list[dict] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if suffix in (".jsonl", ".json", ".ndjson"):
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"not valid JSON ({exc.msg})", str(path), n) from None
                text = obj.get(text_field, obj.get("tokens")) if isinstance(obj, dict) else None
                if text is None:
                    raise DataError(f"no '{text_field}' (or 'tokens') key in this record", str(path), n)
                meta = {k: v for k, v in obj.items() if k not in (text_field, pair_field, "tokens")}
                out.append(Example(text=text, text_pair=obj.get(pair_field), where=f"{path}:{n}", meta=meta))
                records.append(obj)
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames or text_field not in reader.fieldnames:
                raise DataError(
                    f"no '{text_field}' column in the header (columns: {', '.join(reader.fieldnames or [])})",
                    str(path), 1,
                )
            for n, row in enumerate(reader, 2):
                meta = {k: v for k, v in row.items() if k not in (text_field, pair_field)}
                out.append(Example(text=row[text_field] or "", text_pair=row.get(pair_field), where=f"{path}:{n}", meta=meta))
                records.append(dict(row))
        else:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    out.append(Example(text=line.rstrip("\r\n"), where=f"{path}:{n}"))
                    records.append({text_field: line.rstrip("\r\n")})
    for ex in out:
        if (isinstance(ex.text, str) and not ex.text.strip()) or (isinstance(ex.text, list) and not ex.text):
            raise DataError("empty text", ex.where)
    if not out:
        raise DataError("no inputs in this file", str(path))
    return list(zip(out, records, strict=True))
