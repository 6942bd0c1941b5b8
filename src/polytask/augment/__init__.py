"""Data augmentation for small training sets (``tasks[].augment``).

Importing this package imports every member module, so each registers itself in ``AUGMENTERS``;
a third-party op is named by import path (``my_pkg.aug:MyOp``) in ``ops[].type``.
See docs/augmentation.md for each op, its paper and options.
"""

from __future__ import annotations

from polytask.augment import (  # noqa: F401
    back_translation,
    char_deletion,
    char_insertion,
    char_swap,
    contextual,
    mention_replacement,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from polytask.augment.base import AUGMENTERS, Augmenter
from polytask.augment.pipeline import (
    AugmentPipeline,
    Preview,
    augment_examples,
    build_pipeline,
    check_spec,
    preview,
    resolve_paths,
)

__all__ = [
    "AUGMENTERS",
    "AugmentPipeline",
    "Augmenter",
    "Preview",
    "augment_examples",
    "build_pipeline",
    "check_spec",
    "preview",
    "resolve_paths",
]
