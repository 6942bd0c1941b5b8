"""Plain-text layouts: ``label text`` lines (SST-2 style), and folders with one file per document."""

from __future__ import annotations

from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import lines, make_example, read_text
from polytask.errors import DataError


@READERS.register("label_text")
class LabelTextReader(Reader):
    """``label<whitespace>text`` per line; blank lines are skipped."""

    def read(self, path: str | Path) -> list[Example]:
        out = []
        for n, line in lines(read_text(path, self.config.encoding)):
            if not line.strip():
                continue
            parts = line.strip().split(None, 1)
            where = f"{path}:{n}"
            if len(parts) < 2:
                raise DataError(f"{where}: expected 'label text', found only {parts[0]!r}")
            out.append(make_example(parts[1], None, parts[0], self.config, where, "text"))
        return out


@READERS.register("folder")
class FolderReader(Reader):
    """One document per file: ``root/<label>/<doc>`` (the sub-folder names the label), or
    ``root/<doc>`` for unlabelled documents. Hidden files are skipped; the order is sorted."""

    def read(self, path: str | Path) -> list[Example]:
        root = Path(path)
        if not root.is_dir():
            raise DataError("folder not found; data paths are relative to the experiment file", path=str(root))
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        out = []
        if subdirs:
            for d in subdirs:
                for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
                    out.append(self._doc(f, d.name))
        else:
            for f in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
                out.append(self._doc(f, None))
        return out

    def _doc(self, f: Path, label: str | None) -> Example:
        text = read_text(f, self.config.encoding).strip()
        return make_example(text, None, label, self.config, str(f), "file")
