"""Line-aligned parallel files, the way machine-translation corpora ship (Multi30k, WMT, OPUS).

``train.de`` and ``train.en`` hold one sentence per line, line ``n`` of one the translation of
line ``n`` of the other. The split path in the config is the stem (``data/train``); the suffixes
come from ``data.parallel`` (``{source: de, target: en}``). Each Example's ``text`` is the source
sentence, its ``label`` the target sentence, its ``where`` the source file and line.
"""

from __future__ import annotations

from pathlib import Path

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import BadRows, location, read_text
from polytask.errors import DataError


def parallel_paths(path: str | Path, suffixes: tuple[str, str]) -> tuple[Path, Path]:
    """``(stem.source, stem.target)``; a path already ending in the source suffix is taken as
    the source file itself (``train.de`` as well as ``train``)."""
    p = Path(path)
    source, target = suffixes
    if p.suffix == f".{source}" and not Path(f"{p}.{source}").exists():
        p = p.with_suffix("")
    return Path(f"{p}.{source}"), Path(f"{p}.{target}")


@READERS.register("parallel")
class ParallelReader(Reader):
    """Two line-aligned files: source sentences and their targets.

    Two files of different line counts are an error naming both files and both counts (a
    misaligned corpus trains on wrong pairs silently). An empty source or target line is a bad
    row (``data.on_bad_rows``) named by file and line.
    """

    def read(self, path: str | Path) -> list[Example]:
        par = self.config.parallel
        if par is None:
            raise DataError(
                "format parallel needs data.parallel: {source: <suffix>, target: <suffix>} "
                "(e.g. {source: de, target: en} for train.de + train.en)", path=str(path)
            )
        if self.token_level:
            raise DataError("parallel files hold sentence pairs for seq2seq tasks, and this task tags tokens",
                            path=str(path))
        src_path, tgt_path = parallel_paths(path, (par.source, par.target))
        src = _lines(read_text(src_path, self.config.encoding))
        tgt = _lines(read_text(tgt_path, self.config.encoding))
        if len(src) != len(tgt):
            raise DataError(
                f"parallel files differ in length: {src_path} has {len(src)} lines, {tgt_path} has "
                f"{len(tgt)}; line n of one must be the translation of line n of the other"
            )
        out: list[Example] = []
        bad = BadRows(self.config, src_path)
        for n, (s, t) in enumerate(zip(src, tgt, strict=True), 1):
            try:
                if not s.strip():
                    raise DataError("empty source sentence; remove the line from both files or fill it in",
                                    str(src_path), n)
                if not t.strip():
                    raise DataError("empty target sentence; remove the line from both files or fill it in",
                                    str(tgt_path), n)
                out.append(Example(text=s.strip(), label=t.strip(), where=location(src_path, n)))
            except DataError as exc:
                bad.add(exc)
        bad.report(len(out))
        return out


def _lines(text: str) -> list[str]:
    """The file's lines; a final newline ends the last line rather than starting an empty one.

    Only ``\\n``, ``\\r\\n`` and ``\\r`` end a line, as in ``common.lines``."""
    parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return parts
