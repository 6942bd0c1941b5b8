"""``char_insertion``: insert copies of the text's own characters, for text without spaces.

EDA's random insertion (Wei & Zou, EMNLP 2019, https://arxiv.org/abs/1901.11196) at the
character level. Characters have no synonyms, so the inserted character is one drawn from the
same text (it keeps the text's topic, where a random character of the vocabulary would be
noise): ``n = max(1, alpha * characters)`` insertions at random places.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment._characters import CharacterOptions, characters
from polytask.augment.base import AUGMENTERS, Augmenter, n_changes


@dataclass
class CharInsertionConfig(CharacterOptions):
    """Options of ``char_insertion``: ``alpha``, insertions per character (at least one above 0)."""


@AUGMENTERS.register("char_insertion")
class CharInsertion(Augmenter):
    """Insert ``alpha`` times as many characters (drawn from the text) as the text has."""

    options_class = CharInsertionConfig

    def augment_text(self, text: str, rng: random.Random) -> str:
        chars, where = characters(text)
        if not where:
            return text
        pool = [chars[i] for i in where]
        for _ in range(n_changes(self.options.alpha, len(pool))):
            chars.insert(rng.randint(0, len(chars)), rng.choice(pool))
        return "".join(chars)
