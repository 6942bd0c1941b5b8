"""Augmentation family: each member edits one text (or one tagged word list) into a new one.

A member is an ``Augmenter`` with an options dataclass (checked by ``polytask.options``), a
registration in ``AUGMENTERS`` and a docstring citing its paper. ``polytask.augment.pipeline``
applies a task's ``augment`` block (which members, how often, how many copies) to the training
set each epoch; members never see dev or test data.

Word-level members read a sequence text as whitespace-separated words and write their words back
joined by single spaces; character-level members (for text written without spaces, e.g. Chinese)
edit the characters of the string. Token-classification members receive the words and their tags
and must return tags aligned with the words they return: only label-preserving edits are
allowed there (Dai & Adel, COLING 2020).
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

from polytask.data.example import Example
from polytask.errors import ConfigError
from polytask.registry import Registry

AUGMENTERS: Registry[Augmenter] = Registry("augmentation op")

OUTSIDE = "O"

# EDA's list of words never replaced or used as insertion seeds (function words carry little
# meaning of their own and their neighbours in vector space are other function words). Written
# here from the usual English function words; Wei & Zou use NLTK's list.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves""".split()
)

_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


@dataclass
class NoOptions:
    """Options of a member that takes none."""


def check_rate(name: str, value: float) -> None:
    """Raise ValueError unless ``0 <= value <= 1`` (a rate of words or characters)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (a fraction of the words); got {value}")


def n_changes(alpha: float, n: int) -> int:
    """How many edits a sentence of ``n`` units gets at rate ``alpha``: EDA's
    ``max(1, int(alpha * n))``, and none at ``alpha == 0`` or for an empty sentence."""
    if alpha <= 0 or n == 0:
        return 0
    return max(1, int(alpha * n))


def split_core(word: str) -> tuple[str, str, str]:
    """``'"great!'`` -> ``('"', 'great', '!')``: punctuation around a word, kept when it is replaced."""
    m = _CORE.match(word)
    assert m is not None  # the pattern matches any string
    return m.group(1), m.group(2), m.group(3)


def match_case(new: str, like: str) -> str:
    """``new`` written in the case of ``like`` (``Great`` -> ``Fine``, ``GREAT`` -> ``FINE``)."""
    if like.isupper() and len(like) > 1:
        return new.upper()
    if like[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def is_content_word(core: str) -> bool:
    """A word worth replacing: alphabetic and not a stopword."""
    return core.isalpha() and core.lower() not in STOPWORDS


class Augmenter(ABC):
    """One augmentation operation.

    Args:
        options: an instance of the member's ``options_class``.

    Class attributes:
        options_class: the options dataclass (its fields are the YAML keys beside ``type``).
        sequence_ok: usable on sequence texts (classification, multilabel, pairs).
        token_level_ok: keeps token tags aligned, so usable for token classification.
    """

    registry_name: str
    options_class: type = NoOptions
    sequence_ok: bool = True
    token_level_ok: bool = False

    def __init__(self, options: Any):
        self.options = options

    def check(self, field: str) -> None:  # noqa: B027 - an optional hook
        """Raise ConfigError when a resource the member needs (a package, a model folder) is
        missing or of the wrong kind. Called once before training, not per example.

        Args:
            field: the op's config path (``tasks.sst2.augment.ops.0``), named in messages.
        """

    def fit(self, examples: list[Example]) -> None:  # noqa: B027 - an optional hook
        """See the (original) training examples once per call, before any ``augment``: members
        that draw replacements from the training data (mentions, characters) collect them here."""

    @abstractmethod
    def augment_text(self, text: str, rng: random.Random) -> str:
        """One edited copy of a sequence text; all randomness from ``rng``."""

    def augment_tokens(
        self, words: list[str], tags: list[str] | None, rng: random.Random
    ) -> tuple[list[str], list[str] | None]:
        """One edited copy of a tagged word list, with its tags still aligned (None stays None)."""
        raise NotImplementedError(f"{self.registry_name} does not edit tagged words")

    def augment(self, example: Example, rng: random.Random, sides: tuple[str, ...] = ("text", "text_pair")) -> Example:
        """A copy of ``example`` with this op applied to the chosen ``sides``; label unchanged for
        sequence texts, re-aligned tags for word lists.

        Args:
            example: the example (not modified).
            rng: the source of every random choice.
            sides: which texts of a pair to edit (``text``, ``text_pair``).
        """
        if isinstance(example.text, list):
            tags = example.label if isinstance(example.label, list) else None
            words, new_tags = self.augment_tokens(list(example.text), list(tags) if tags is not None else None, rng)
            return replace(example, text=words, label=new_tags if tags is not None else example.label,
                           meta=dict(example.meta))
        changes: dict[str, Any] = {}
        for side in sides:
            value = getattr(example, side)
            if isinstance(value, str) and value:
                changes[side] = self.augment_text(value, rng)
        return replace(example, meta=dict(example.meta), **changes)


def op_name(cls: type) -> str:
    """The registry name of a member, or its class name for one given by import path."""
    return getattr(cls, "registry_name", cls.__name__)


def for_token_tasks() -> list[str]:
    """Names of the members that keep token tags aligned."""
    return [n for n in AUGMENTERS.names() if AUGMENTERS.get(n).token_level_ok]


def check_fits_task(cls: type[Augmenter], token_level: bool, field: str) -> None:
    """ConfigError when a member cannot serve this kind of task (e.g. a swap on NER tags)."""
    name = op_name(cls)
    if token_level and not cls.token_level_ok:
        raise ConfigError(
            f"augmentation op {name!r} does not keep token tags aligned (it moves, removes or "
            f"rewrites words a tag belongs to); for token classification use: {', '.join(for_token_tasks())}",
            field=field,
        )
    if not token_level and not cls.sequence_ok:
        raise ConfigError(f"augmentation op {name!r} works only on token classification tasks", field=field)
