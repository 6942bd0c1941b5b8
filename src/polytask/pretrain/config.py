"""The ``polytask pretrain`` config: a small strict model, loaded from YAML with dotted overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from polytask.config.loader import apply_overrides, read_yaml_mapping
from polytask.config.schema import Strict
from polytask.errors import ConfigError


class PretrainConfig(Strict):
    """Continued masked-language-model pretraining on unlabelled text (DAPT / TAPT).

    Args:
        encoder: ``default`` (the packaged all-MiniLM-L6-v2), a local transformers folder, or a hub
            id (needs a network).
        text: a ``.txt`` file (one text per line), a folder of ``.txt`` files, or a ``.jsonl`` /
            ``.csv`` / ``.tsv`` file with a text column. Relative to the config file.
        text_column: the column or JSON key holding the text (default ``text``, or a reader's
            usual defaults).
        encoding: the files' encoding (``utf-8,latin-1`` tries both in turn).
        output_dir: where ``model/``, ``pretrain.json`` and ``metrics.jsonl`` go (relative to the
            working directory).
        max_length: tokens per training sequence, special tokens included; longer texts are cut
            into several sequences, so no text is lost.
        mlm_probability: share of tokens chosen for prediction (BERT's 15%; of those 80% become
            ``[MASK]``, 10% a random token, 10% stay).
        eval_fraction: share of texts held out to measure perplexity before and after.
        limit: read at most this many texts (the first ones).
        stream: read the corpus lazily through ``datasets`` (``load_dataset(..., streaming=True)``)
            and tokenise it on the fly, for corpora too large for memory. Needs ``max_steps`` (a
            stream has no known length); the held-out set is then the first ``eval_texts`` texts,
            and ``eval_fraction`` and ``epochs`` are unused.
        shuffle_buffer: with ``stream``, sequences are shuffled through a buffer of this many
            (``IterableDataset.shuffle``); 0 keeps the corpus order.
        eval_texts: with ``stream``, the first this many texts are held out for perplexity and
            skipped for training.
    """

    encoder: str = "default"
    text: str
    text_column: str | None = None
    encoding: str = "utf-8"
    output_dir: str = "runs/pretrain"
    max_length: int = Field(128, gt=8)
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)
    eval_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    lr: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 42
    limit: int | None = Field(None, gt=0)
    log_every: int = Field(10, gt=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    cpu: bool = False
    progress: bool = True
    stream: bool = False
    shuffle_buffer: int = Field(10000, ge=0)
    eval_texts: int = Field(200, gt=0)


def parse_pretrain_config(
    raw: dict[str, Any], source: str | None = None, base_dir: str | os.PathLike | None = None
) -> PretrainConfig:
    """Validate a mapping; resolve ``text`` (and a local ``encoder`` folder) against ``base_dir``.

    Args:
        raw: the config as a mapping.
        source: the YAML file, named in errors.
        base_dir: the folder relative paths are resolved against (the YAML file's folder).
    """
    try:
        cfg = PretrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc), source=source) from None
    if base_dir is not None:
        base = Path(base_dir)
        if not os.path.isabs(cfg.text):
            cfg.text = str((base / cfg.text).resolve())
        enc = cfg.encoder
        if enc.startswith((".", "/")) or (base / enc).is_dir():
            cfg.encoder = str((base / enc).resolve())
    return cfg


def load_pretrain_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PretrainConfig:
    """Read a pretrain YAML file, apply ``key=value`` overrides (``max_steps=100``) and validate."""
    path = Path(path)
    raw = read_yaml_mapping(path, "pretrain config file")
    return parse_pretrain_config(apply_overrides(raw, overrides or []), source=str(path), base_dir=path.parent)


def _format(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'; allowed keys: {', '.join(PretrainConfig.model_fields)}")
        elif err["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            lines.append(f"'{key}': {err['msg'].removeprefix('Value error, ')}{got_text}")
    return "invalid pretrain config:\n  " + "\n  ".join(lines)
