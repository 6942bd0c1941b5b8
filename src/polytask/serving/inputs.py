"""Read inputs for ``polytask predict``: JSONL, CSV/TSV with a header, or plain text lines."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from polytask.data.example import Example
from polytask.errors import DataError, PolytaskError


def decode_input(path: Path, encoding: str = "utf-8") -> str:
    """The file's text; a file that is not in ``encoding`` is one DataError naming the file, the
    line and the byte, and how to convert it (a UTF-8 BOM is dropped)."""
    raw = path.read_bytes()
    skip = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[skip:].decode(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", str(path)) from None
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = raw[:offset].count(b"\n") + 1
        raise DataError(
            f"not {encoding} text: byte 0x{raw[offset]:02x} at offset {offset} cannot be decoded (the file is "
            f"probably Latin-1 or Windows-1252); convert it, e.g. `iconv -f latin1 -t utf-8 {path} > "
            f"{path.with_suffix('.utf8' + path.suffix).name}`, and predict on the converted file",
            str(path),
            line,
        ) from None


def check_output_file(path: str | Path, option: str) -> Path:
    """Fail before any work starts when ``path`` cannot be written: a folder where the file
    should be, a file where a folder should be, or a folder without write permission.

    Missing parent folders are created (as the write would). The check writes and removes a
    probe file beside ``path``, so what it reports is what the real write would meet.

    Args:
        path: the output file.
        option: the command-line option that named it (``-o``), for the message.
    """
    path = Path(path)
    if path.is_dir():
        raise PolytaskError(f"cannot write {path} ({option}): it is a folder; give a file path such as "
                            f"{path / 'out.jsonl'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise PolytaskError(f"cannot write {path} ({option}): {ancestor} is a file, not a folder; "
                            f"choose another {option}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PolytaskError(
            f"cannot write {path} ({option}): {exc.strerror or exc}; choose another {option}, or make "
            f"{path.parent} writable"
        ) from None
    return path


def read_inputs(
    path: str | Path, text_field: str = "text", pair_field: str = "text_pair", encoding: str = "utf-8"
) -> list[Example]:
    """Unlabelled examples from a prediction input file (see ``read_input_records``)."""
    return [ex for ex, _ in read_input_records(path, text_field, pair_field, encoding)]


def read_input_records(
    path: str | Path, text_field: str = "text", pair_field: str = "text_pair", encoding: str = "utf-8"
) -> list[tuple[Example, dict]]:
    """Unlabelled examples from a prediction input file, each with its record as read (the JSON
    object, the CSV row, or ``{"text": line}``), so outputs can repeat every input field as given.

    ``.jsonl``: one object a line with ``text`` (a string, or a word list for token tasks; also
    ``tokens``) and optionally ``text_pair``; other keys are carried into the output.
    ``.csv``/``.tsv``: a header row naming the ``text`` (and ``text_pair``) column.
    Anything else: one text per line, blank lines skipped.

    Args:
        path: the input file.
        text_field: the key or column holding the text.
        pair_field: the key or column holding the second text of a pair.
        encoding: the file's encoding (a file in another fails naming the byte and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("input file not found", path=str(path))
    suffix = path.suffix.lower()
    out: list[Example] = []
    records: list[dict] = []
    with io.StringIO(decode_input(path, encoding), newline="") as fh:
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


def check_inputs_fit(predictor: object, names: list[str], examples: list[Example]) -> None:
    """A DataError naming the input's line when it gives a ``text_pair`` to a task trained on
    single texts (the model would silently read the pair as part of its input)."""
    from polytask.tasks.base import check_pairs

    tasks = getattr(predictor, "tasks", {})
    for name in names:
        task = tasks.get(name)
        if task is not None and not getattr(task, "token_level", False) and hasattr(task, "pairs"):
            check_pairs(task, examples)
