"""``char_swap``: swap random pairs of characters, for text written without spaces.

EDA's random swap (Wei & Zou, EMNLP 2019, https://arxiv.org/abs/1901.11196) applied to
characters, the unit of Chinese and Japanese text, where whitespace does not separate words:
``n = max(1, alpha * characters)`` swaps of two non-space characters. Whitespace stays where it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment._characters import CharacterOptions, characters
from polytask.augment.base import AUGMENTERS, Augmenter, n_changes


@dataclass
class CharSwapConfig(CharacterOptions):
    """Options of ``char_swap``: ``alpha``, swaps per character (at least one when above 0)."""


@AUGMENTERS.register("char_swap")
class CharSwap(Augmenter):
    """Swap ``alpha`` times as many character pairs as the text has characters."""

    options_class = CharSwapConfig

    def augment_text(self, text: str, rng: random.Random) -> str:
        chars, where = characters(text)
        if len(where) < 2:
            return text
        for _ in range(n_changes(self.options.alpha, len(where))):
            i, j = rng.sample(where, 2)
            chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
