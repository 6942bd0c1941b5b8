"""``mention_replacement``: swap an entity mention for another mention of the same type.

Dai & Adel, "An Analysis of Simple Data Augmentation for Named Entity Recognition", COLING 2020
(https://arxiv.org/abs/2010.11683), mention replacement (MR): each mention of the sentence is,
with probability ``alpha``, replaced by a mention of the same entity type drawn at random from
the training data; the new mention brings its own tags (``B-PER I-PER`` for a two-word name),
so the tags stay aligned with the words whatever the length. Token classification only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from polytask.augment.base import AUGMENTERS, OUTSIDE, Augmenter, check_rate
from polytask.data.example import Example

Mention = tuple[tuple[str, ...], tuple[str, ...]]  # (words, tags)


@dataclass
class MentionReplacementConfig:
    """Options of ``mention_replacement``.

    Args:
        alpha: the probability that each mention is replaced (Dai & Adel's ``p``).
    """

    alpha: float = 0.3

    def __post_init__(self) -> None:
        check_rate("alpha", self.alpha)


def _split(tag: str) -> tuple[str, str]:
    """``B-PER`` -> ``('B', 'PER')``; a tag without a prefix is its own type (``('', 'PER')``)."""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BIESLU":
        return tag[0], tag[2:]
    return "", tag


def mention_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` of each mention in IOB1, IOB2/BIO, BIOES or BILOU tags.

    A mention starts at a ``B``/``S``/``U`` tag, at an ``I`` tag of a new type, or at a
    prefix-less tag; it goes on over ``I``/``E``/``L`` tags of its type and ends after an
    ``E``/``L`` tag.
    """
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tags):
        if tags[i] == OUTSIDE:
            i += 1
            continue
        prefix, kind = _split(tags[i])
        j = i + 1
        if prefix not in ("S", "U", "E", "L"):
            while j < len(tags):
                p, k = _split(tags[j])
                if k != kind or tags[j] == OUTSIDE or p not in ("I", "E", "L", "") or (p == "" and prefix != ""):
                    break
                j += 1
                if p in ("E", "L"):
                    break
        out.append((i, j, kind))
        i = j
    return out


@AUGMENTERS.register("mention_replacement")
class MentionReplacement(Augmenter):
    """Replace each mention, with probability ``alpha``, by another training mention of its type."""

    options_class = MentionReplacementConfig
    sequence_ok = False
    token_level_ok = True

    def __init__(self, options: MentionReplacementConfig):
        super().__init__(options)
        self.mentions: dict[str, list[Mention]] = {}

    def fit(self, examples: list[Example]) -> None:
        seen: dict[str, dict[Mention, None]] = {}  # insertion-ordered sets: a deterministic inventory
        for ex in examples:
            if not isinstance(ex.text, list) or not isinstance(ex.label, list):
                continue
            for start, end, kind in mention_spans(ex.label):
                seen.setdefault(kind, {})[(tuple(ex.text[start:end]), tuple(ex.label[start:end]))] = None
        self.mentions = {kind: list(ms) for kind, ms in seen.items()}

    def augment_text(self, text: str, rng: random.Random) -> str:
        raise NotImplementedError("mention_replacement needs tagged words")

    def augment_tokens(self, words, tags, rng):  # noqa: ANN001, ANN201
        if tags is None or self.options.alpha <= 0:
            return list(words), tags
        out_words: list[str] = []
        out_tags: list[str] = []
        pos = 0
        for start, end, kind in mention_spans(tags):
            out_words += words[pos:start]
            out_tags += tags[pos:start]
            own = (tuple(words[start:end]), tuple(tags[start:end]))
            others = [m for m in self.mentions.get(kind, []) if m[0] != own[0]]
            if others and rng.random() < self.options.alpha:
                new_words, new_tags = rng.choice(others)
                out_words += new_words
                out_tags += new_tags
            else:
                out_words += own[0]
                out_tags += own[1]
            pos = end
        return out_words + words[pos:], out_tags + tags[pos:]
