"""``random_deletion``: delete each word with probability ``alpha`` (EDA's RD).

Wei & Zou, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP 2019 (https://arxiv.org/abs/1901.11196): every word is removed
with probability ``alpha``; when all would go, one random word stays. Sequence texts only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment.base import AUGMENTERS, Augmenter, check_rate


@dataclass
class RandomDeletionConfig:
    """Options of ``random_deletion``.

    Args:
        alpha: the probability that each word is deleted.
    """

    alpha: float = 0.1

    def __post_init__(self) -> None:
        check_rate("alpha", self.alpha)


def delete_units(units: list[str], alpha: float, rng: random.Random) -> list[str]:
    """``units`` (words or characters) each kept with probability ``1 - alpha``; never empty."""
    if alpha <= 0 or len(units) <= 1:
        return list(units)
    kept = [u for u in units if rng.random() >= alpha]
    return kept or [rng.choice(units)]


@AUGMENTERS.register("random_deletion")
class RandomDeletion(Augmenter):
    """Delete each word with probability ``alpha``."""

    options_class = RandomDeletionConfig

    def augment_text(self, text: str, rng: random.Random) -> str:
        return " ".join(delete_units(text.split(), self.options.alpha, rng))
