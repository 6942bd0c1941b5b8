"""Encoder family. Importing this package registers every member."""

from polytask.config.schema import EncoderConfig
from polytask.encoders import transformer  # noqa: F401  (registers "transformer")
from polytask.encoders.base import ENCODERS, Encoder, EncoderOutput


def build_encoder(config: EncoderConfig) -> Encoder:
    """Build the pretrained encoder a config names."""
    cls = ENCODERS.get(config.type, field="encoder.type")
    return cls.from_pretrained(config.name_or_path, pooling=config.pooling)


__all__ = ["ENCODERS", "Encoder", "EncoderOutput", "build_encoder"]
