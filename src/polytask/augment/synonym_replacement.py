"""``synonym_replacement``: replace words by synonyms (EDA's SR; Dai & Adel's SR for tags).

Wei & Zou, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP 2019 (https://arxiv.org/abs/1901.11196): choose ``n =
max(1, alpha * words)`` words that are not stopwords and replace each by a random synonym.
For token classification only words tagged ``O`` are replaced, one word by one word, so the
tags stay as they are (Dai & Adel, "An Analysis of Simple Data Augmentation for Named Entity
Recognition", COLING 2020, https://arxiv.org/abs/2010.11683, replace tokens by synonyms; keeping
to ``O`` words means no entity is ever renamed into something else).

Synonyms are nearest neighbours in word vectors (see ``polytask.augment.synonyms``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment.base import (
    AUGMENTERS,
    OUTSIDE,
    Augmenter,
    is_content_word,
    match_case,
    n_changes,
    split_core,
)
from polytask.augment.synonyms import SynonymOptions, check_source


@dataclass
class SynonymReplacementConfig(SynonymOptions):
    """Options of ``synonym_replacement``: those of ``SynonymOptions`` (``alpha``: fraction of
    the words replaced, default 0.1)."""


def replace_words(words: list[str], alpha: float, finder, rng: random.Random, allowed: list[bool] | None = None) -> list[str]:  # noqa: ANN001
    """``words`` with ``n_changes(alpha, len(words))`` content words replaced by synonyms.

    Args:
        words: the words (not modified).
        alpha: the fraction of words to replace.
        finder: word -> its synonyms (a ``NeighbourSynonyms``).
        rng: the source of every random choice.
        allowed: per word, whether it may be replaced (None: all).
    """
    out = list(words)
    n = n_changes(alpha, len(out))
    if n == 0:
        return out
    positions = [i for i, w in enumerate(out) if (allowed is None or allowed[i]) and is_content_word(split_core(w)[1])]
    rng.shuffle(positions)
    done = 0
    for i in positions:
        if done >= n:
            break
        pre, core, post = split_core(out[i])
        synonyms = finder(core)
        if synonyms:
            out[i] = pre + match_case(rng.choice(synonyms), core) + post
            done += 1
    return out


@AUGMENTERS.register("synonym_replacement")
class SynonymReplacement(Augmenter):
    """Replace ``alpha`` of the words (``O`` words only in tagged data) by a synonym."""

    options_class = SynonymReplacementConfig
    token_level_ok = True

    def check(self, field: str) -> None:
        check_source(self.options.source, f"{field}.source")

    def augment_text(self, text: str, rng: random.Random) -> str:
        return " ".join(replace_words(text.split(), self.options.alpha, self.options.finder(), rng))

    def augment_tokens(self, words, tags, rng):  # noqa: ANN001, ANN201
        if tags is None:  # unlabelled word lists: nothing says which words are entities, so none is touched
            return list(words), None
        allowed = [t == OUTSIDE for t in tags]
        return replace_words(words, self.options.alpha, self.options.finder(), rng, allowed), list(tags)
