"""Plain-text layouts: ``label text`` lines (SST-2 style), and folders with one file per document."""

from __future__ import annotations

from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import BadRows, format_hint, lines, make_example, read_text
from polytask.errors import DataError


@READERS.register("label_text")
class LabelTextReader(Reader):
    """``label<whitespace>text`` per line (``1 a great movie``); blank lines are skipped.

    The label is everything before the first run of whitespace, the text the rest of the line.
    """

    def read(self, path: str | Path) -> list[Example]:
        content = read_text(path, self.config.encoding)
        if self.token_level:
            raise DataError(
                "format label_text holds one label per line, for sequence-level tasks, and this "
                "task tags tokens" + (format_hint(content, "label_text") or "; use format: conll"),
                path=str(path),
            )
        out = []
        bad = BadRows(self.config, path)
        hint: str | None = None
        for n, line in lines(content):
            if not line.strip():
                continue
            parts = line.strip().split(None, 1)
            try:
                if len(parts) < 2:
                    if hint is None:
                        hint = format_hint(content, "label_text")
                    raise DataError(
                        f"expected 'label text', found only {parts[0]!r} (format label_text: the label, "
                        f"a space or tab, then the text){hint}",
                        str(path),
                        n,
                    )
                out.append(make_example(parts[1], None, parts[0], self.config, path, n, "text"))
            except DataError as exc:
                bad.add(exc)
        bad.report(len(out))
        return out


@READERS.register("folder")
class FolderReader(Reader):
    """One document per file (any extension), the whole file being the text.

    ``root/<label>/<doc>``: each sub-folder names the label of the files in it (files lying
    directly in ``root`` next to label folders, such as a README, are ignored). ``root/<doc>``
    with no sub-folders: unlabelled documents. Hidden files and folders (``.name``) are skipped;
    the order is sorted by label, then file name, so runs are reproducible. ``Example.where`` is
    the file's path. With ``data.encoding: utf-8,latin-1`` each file may have its own encoding.
    """

    def read(self, path: str | Path) -> list[Example]:
        root = Path(path)
        if not root.is_dir():
            what = "is a file, not a folder (set data.format)" if root.exists() else "not found"
            raise DataError(
                f"folder {what}; data paths are relative to the experiment file", path=str(root)
            )
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        out = []
        if subdirs:
            for d in subdirs:
                out.extend(self._doc(f, d.name) for f in _files(d))
        else:
            out.extend(self._doc(f, None) for f in _files(root))
        return out

    def _doc(self, f: Path, label: str | None) -> Example:
        text = read_text(f, self.config.encoding).strip()
        if not text:
            raise DataError("empty document; remove the file or fill it in", path=str(f))
        return make_example(text, None, label, self.config, f, None, "file")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
