"""Encoder family. Importing this package registers every member.

Members: ``transformer`` (any Hugging Face encoder), ``bilstm`` and ``cnn`` (word encoders that
learn their vocabulary from the training texts, optionally starting from static word vectors).
"""

from __future__ import annotations

from polytask.config.schema import EncoderConfig
from polytask.encoders._word_common import TextsFn
from polytask.encoders.base import ENCODERS, Encoder, EncoderOutput
from polytask.errors import ConfigError
from polytask.registry import import_members

import_members(__name__, __path__, shared=("base", "vocab", "vectors"))


def build_encoder(config: EncoderConfig, texts: TextsFn | None = None) -> Encoder:
    """Build the encoder a config names.

    Args:
        config: the ``encoder`` section.
        texts: a zero-argument callable returning the training texts of every task (strings, or
            lists of words for token tasks). Word encoders (``bilstm``, ``cnn``) build their
            vocabulary from it and need it; pretrained transformers ignore it.

    Raises:
        ConfigError: an unknown type, options given to a type that takes none, or what the type
            itself rejects.
    """
    cls = ENCODERS.get(config.type, field="encoder.type")
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        return from_config(config, texts=texts)
    if config.options:
        raise ConfigError(
            f"encoder type {config.type!r} takes no options; got {', '.join(sorted(config.options))} "
            "(options are for the bilstm and cnn encoders)",
            field="encoder.options",
        )
    return cls.from_pretrained(config.name_or_path, pooling=config.pooling)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder"]
