"""Shared by the character-level members: edit the non-space characters of a string in place."""

from __future__ import annotations

from dataclasses import dataclass

from polytask.augment.base import check_rate


@dataclass
class CharacterOptions:
    """Options of the character-level members.

    Args:
        alpha: the fraction of characters edited (deletion: each character's probability).
    """

    alpha: float = 0.1

    def __post_init__(self) -> None:
        check_rate("alpha", self.alpha)


def characters(text: str) -> tuple[list[str], list[int]]:
    """(the characters of ``text``, positions of those that are not whitespace)."""
    chars = list(text)
    return chars, [i for i, c in enumerate(chars) if not c.isspace()]
