"""Candidate sources: from a ``--sources`` spelling to a frozen encoder (and a head, for runs).

Spellings (see docs/transferability.md):

- ``default``: the packaged all-MiniLM-L6-v2; any Hugging Face encoder folder or hub id.
- ``scratch:<folder or id>``: that transformer's architecture and tokenizer, random weights
  (the "no pretraining" baseline).
- ``bilstm`` / ``cnn``: a word encoder with random embeddings; ``bilstm:glove-6b-50d`` (or
  ``bilstm:<vectors file>``) starts its embeddings from static vectors. The network's weights
  are random; the vocabulary comes from the target's training texts, as training would build it.
- ``<file>.yaml``: an ``encoder:`` block (or a bare one) as in an experiment file.
- a finished polytask run folder (or one of its checkpoint folders): its trained encoder, and
  its classifier heads for LEEP.

This is the one module that imports ``load_run``: it may move with the run-folder code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.config.schema import EncoderConfig
from polytask.encoders import Encoder, build_encoder
from polytask.encoders._word_common import TextsFn
from polytask.errors import ConfigError, PolytaskError

WORD_SPEC = re.compile(r"^(bilstm|cnn)(?::(.+))?$")


@dataclass
class Source:
    """A loaded candidate source.

    Args:
        spec: the spelling it was given as.
        description: what was loaded, for tables (``transformer <path>``, ``run <dir>``...).
        encoder: the frozen encoder (eval mode).
        model: for a run, its PolytaskModel (heads included); None otherwise.
        head_types: for a run, task name -> task type of each head.
    """

    spec: str
    description: str
    encoder: Encoder
    model: Any = None
    head_types: dict[str, str] | None = None

    def head_for(self, token_level: bool) -> str | None:
        """The first head that gives class probabilities at the target's level (for LEEP)."""
        wanted = "token_classification" if token_level else "classification"
        for name, kind in (self.head_types or {}).items():
            if kind == wanted:
                return name
        return None


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's message on one line, shortened: load errors can be pages long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_source(spec: str, texts: TextsFn, base: Path | None = None, seed: int = 0) -> Source:
    """Load the source ``spec`` names (see the module docstring), frozen and in eval mode.

    Args:
        spec: the source's spelling.
        texts: the target's training texts (for word encoders' vocabularies).
        base: folder relative paths are resolved against when they do not exist as given (the
            experiment file's folder).
        seed: seeds random weights (scratch transformers, word encoders' networks).

    Raises:
        ConfigError: ``source '<spec>' cannot be loaded: <why>``, one line.
    """
    import torch

    torch.manual_seed(seed)
    try:
        source = _load(spec, texts, base)
    except ConfigError as exc:
        raise ConfigError(f"source {spec!r} cannot be loaded: {one_line(exc)}") from exc
    except (PolytaskError, OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ConfigError(f"source {spec!r} cannot be loaded: {type(exc).__name__}: {one_line(exc)}") from exc
    source.encoder.eval()
    for p in source.encoder.parameters():
        p.requires_grad_(False)
    return source


def _local(spec: str, base: Path | None) -> Path | None:
    p = Path(spec).expanduser()
    if p.exists():
        return p
    if base is not None and not p.is_absolute() and (base / p).exists():
        return base / p
    return None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith((".yaml", ".yml"))


def _load(spec: str, texts: TextsFn, base: Path | None) -> Source:
    if spec.startswith("scratch:"):
        from polytask.encoders.transformer import TransformerEncoder, resolve_source

        name = spec.split(":", 1)[1]
        where = _local(name, base)
        encoder = TransformerEncoder.from_files(Path(str(where or resolve_source(name))))
        return Source(spec, f"transformer {name}, random weights", encoder)
    word = WORD_SPEC.match(spec)
    if word and _local(spec, base) is None:
        vectors = word.group(2)
        options = {} if vectors in (None, "random") else {"vectors": vectors}
        cfg = EncoderConfig(type=word.group(1), options=options)
        what = f"vectors {vectors}" if options else "random embeddings"
        return Source(spec, f"{word.group(1)} over {what}, random network", build_encoder(cfg, texts=texts))
    path = _local(spec, base)
    if path is None:
        if _looks_like_path(spec):
            raise ConfigError("no such file or folder")
        cfg = EncoderConfig(name_or_path=spec)  # "default" or a hub id
        return Source(spec, f"transformer {spec}", build_encoder(cfg))
    if path.is_file():
        return _from_yaml(spec, path, texts)
    if (path / "config.json").is_file() and not (path / "checkpoints").is_dir():
        return Source(spec, f"transformer {path}", build_encoder(EncoderConfig(name_or_path=str(path))))
    return _from_run(spec, path)


def _from_yaml(spec: str, path: Path, texts: TextsFn) -> Source:
    from pydantic import ValidationError

    from polytask.config.loader import format_validation_error, read_yaml_mapping

    raw = read_yaml_mapping(path, "encoder file")
    block = raw.get("encoder", raw)
    try:
        cfg = EncoderConfig(**block)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from exc
    except TypeError as exc:
        raise ConfigError(f"{path}: the encoder block must be a mapping") from exc
    return Source(spec, f"{cfg.type} from {path.name}", build_encoder(cfg, texts=texts))


def _from_run(spec: str, path: Path) -> Source:
    from polytask.runs import load_run

    run = load_run(path)
    heads = {name: task.registry_name for name, task in run.tasks.items()}
    return Source(spec, f"run {path} ({run.config.encoder.type})", run.model.encoder, run.model, heads)
