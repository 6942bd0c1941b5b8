"""``char_deletion``: delete each character with probability ``alpha``, for text without spaces.

EDA's random deletion (Wei & Zou, EMNLP 2019, https://arxiv.org/abs/1901.11196) applied to
characters: each non-space character is removed with probability ``alpha``; one always stays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment._characters import CharacterOptions, characters
from polytask.augment.base import AUGMENTERS, Augmenter


@dataclass
class CharDeletionConfig(CharacterOptions):
    """Options of ``char_deletion``: ``alpha``, the probability each character is deleted."""


@AUGMENTERS.register("char_deletion")
class CharDeletion(Augmenter):
    """Delete each non-space character with probability ``alpha``."""

    options_class = CharDeletionConfig

    def augment_text(self, text: str, rng: random.Random) -> str:
        chars, where = characters(text)
        if self.options.alpha <= 0 or len(where) <= 1:
            return text
        drop = {i for i in where if rng.random() < self.options.alpha}
        if len(drop) == len(where):
            drop.discard(rng.choice(where))
        return "".join(c for i, c in enumerate(chars) if i not in drop)
