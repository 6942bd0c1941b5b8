"""``random_swap``: swap two random words, ``n`` times (EDA's RS).

Wei & Zou, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP 2019 (https://arxiv.org/abs/1901.11196): ``n = max(1, alpha *
words)`` swaps of two randomly chosen positions. Sequence texts only (a swap can split an entity).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment.base import AUGMENTERS, Augmenter, check_rate, n_changes


@dataclass
class RandomSwapConfig:
    """Options of ``random_swap``.

    Args:
        alpha: swaps per word of the sentence (at least one when above 0).
    """

    alpha: float = 0.1

    def __post_init__(self) -> None:
        check_rate("alpha", self.alpha)


def swap_units(units: list[str], alpha: float, rng: random.Random) -> list[str]:
    """``units`` (words or characters) with ``n_changes(alpha, len)`` random pairs swapped."""
    out = list(units)
    if len(out) < 2:
        return out
    for _ in range(n_changes(alpha, len(out))):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


@AUGMENTERS.register("random_swap")
class RandomSwap(Augmenter):
    """Swap ``alpha`` times as many word pairs as the sentence has words."""

    options_class = RandomSwapConfig

    def augment_text(self, text: str, rng: random.Random) -> str:
        return " ".join(swap_units(text.split(), self.options.alpha, rng))
