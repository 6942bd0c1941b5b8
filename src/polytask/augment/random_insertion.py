"""``random_insertion``: insert synonyms of the sentence's own words at random places (EDA's RI).

Wei & Zou, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP 2019 (https://arxiv.org/abs/1901.11196): ``n = max(1, alpha *
words)`` times, take a random non-stopword of the sentence that has a synonym and insert one of
its synonyms at a random position. Sequence texts only (an inserted word has no tag).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment.base import AUGMENTERS, Augmenter, is_content_word, n_changes, split_core
from polytask.augment.synonyms import SynonymOptions, check_source

TRIES = 10  # EDA's attempts to find a word with a synonym before giving up on one insertion


@dataclass
class RandomInsertionConfig(SynonymOptions):
    """Options of ``random_insertion``: those of ``SynonymOptions`` (``alpha``: insertions per
    word of the sentence, default 0.1)."""


@AUGMENTERS.register("random_insertion")
class RandomInsertion(Augmenter):
    """Insert ``alpha`` times as many synonyms as the sentence has words."""

    options_class = RandomInsertionConfig

    def check(self, field: str) -> None:
        check_source(self.options.source, f"{field}.source")

    def augment_text(self, text: str, rng: random.Random) -> str:
        words = text.split()
        n = n_changes(self.options.alpha, len(words))
        if n == 0:
            return " ".join(words)
        finder = self.options.finder()
        seeds = [split_core(w)[1] for w in words]
        seeds = [s for s in seeds if is_content_word(s)]
        for _ in range(n):
            for _ in range(TRIES):
                if not seeds:
                    break
                synonyms = finder(rng.choice(seeds))
                if synonyms:
                    words.insert(rng.randint(0, len(words)), rng.choice(synonyms))
                    break
        return " ".join(words)
