"""``seq2seq``: text in, text out (translation, summarisation, headline generation).

The shared encoder reads the source; this task's head is a transformer decoder with
cross-attention over the encoder's token states, trained with teacher forcing and
label-smoothed cross-entropy (Szegedy et al., CVPR 2016; Vaswani et al., NeurIPS 2017), and
evaluated by generating (beam search with a length penalty, KV cache, batches sorted by length).

By default the decoder is warm-started from the encoder's own weights, the BERT2BERT recipe of
Rothe, Narayan and Severyn, "Leveraging Pre-trained Checkpoints for Sequence Generation Tasks",
TACL 2020 (https://arxiv.org/abs/1907.12461): the decoder has the encoder's architecture with
``is_decoder`` (causal self-attention) and ``add_cross_attention``; everything but the
cross-attention and the LM head's transform is copied from the encoder, whose tokenizer serves
source and target alike. ``decoder_init: random`` gives the same architecture from random weights
(with ``encoder.name_or_path: scratch:default``, the from-scratch baseline). Because the
encoder is the shared polytask encoder, a multi-task model trains it with classification and
tagging tasks, and ``transfer.init_from`` carries a trained encoder into a seq2seq task.

Dimension letters: B batch, S source tokens, L target tokens, H hidden size, V vocabulary.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from polytask.data.example import Example
from polytask.encoders.base import EncoderOutput
from polytask.errors import ConfigError, DataError
from polytask.evaluation import metrics as M
from polytask.tasks.base import (
    TASKS,
    UNLABELLED_SPLITS,
    Batch,
    Features,
    Task,
    at,
    check_text,
    collate_inputs,
    missing_label_error,
    pad_sequences,
    tokenize,
)

logger = logging.getLogger("polytask.data")
IGNORE = -100  # label id cross-entropy skips (padding)
METRICS = {"translation": ("bleu", "chrf"), "summarization": ("rouge1", "rouge2", "rougeL")}


@dataclass
class Seq2SeqTaskConfig:
    """Options of ``seq2seq``.

    Args:
        max_source_length: source tokens after truncation (default: the task's ``max_length``).
        max_target_length: target tokens (with the start and end tokens) in training; longer
            targets are truncated, with one warning counting them.
        label_smoothing: the share of probability spread over the vocabulary (0 turns it off).
        num_beams: beam width of generation (1: greedy).
        length_penalty: beam scores are divided by length ** this (>1 favours longer outputs).
        max_new_tokens: the most tokens generated (default: ``max_target_length``).
        metrics: ``translation`` (sacreBLEU and chrF) or ``summarization`` (ROUGE-1/2/L).
        lowercase: BLEU and chrF compare lower-cased text (for an uncased vocabulary).
        decoder_init: ``encoder`` (warm start: BERT2BERT) or ``random``.
    """

    max_source_length: int | None = None
    max_target_length: int = 64
    label_smoothing: float = 0.1
    num_beams: int = 4
    length_penalty: float = 1.0
    max_new_tokens: int | None = None
    metrics: Literal["translation", "summarization"] = "translation"
    lowercase: bool = False
    decoder_init: Literal["encoder", "random"] = "encoder"

    def __post_init__(self) -> None:
        if self.max_target_length < 3:
            raise ValueError("max_target_length must be at least 3 (start, one token, end)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.num_beams < 1:
            raise ValueError("num_beams must be at least 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.max_source_length is not None and self.max_source_length < 2:
            raise ValueError("max_source_length must be at least 2")


class Seq2SeqOutput:
    """What the seq2seq head returns: teacher-forced ``logits`` (B, L, V) when the batch holds
    targets, and ``texts()``, the generated outputs, computed on first use (a loss-only pass
    never pays for a beam search)."""

    def __init__(self, logits: torch.Tensor | None, generate: Callable[[], list[str]]):
        self.logits = logits
        self._generate = generate
        self._texts: list[str] | None = None

    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = self._generate()
        return self._texts


class Seq2SeqHead(nn.Module):
    """A transformer decoder with cross-attention over the encoder's token states.

    Args:
        decoder: a ``transformers`` causal LM built with ``is_decoder`` and ``add_cross_attention``.
        tokenizer: the encoder's tokenizer (targets share its vocabulary).
        options: the task's options (generation settings).
    """

    reads_batch = True  # PolytaskModel hands this head the batch (the target tokens)

    def __init__(self, decoder: nn.Module, tokenizer: Any, options: Seq2SeqTaskConfig):
        super().__init__()
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.options = options
        self.start_id, self.end_id, self.pad_id = special_ids(tokenizer)

    def forward(self, enc: EncoderOutput, batch: Batch) -> Seq2SeqOutput:
        states, mask = enc.token_states, enc.mask  # (B, S, H), (B, S)
        logits = None
        if "decoder_input_ids" in batch:
            logits = self.decoder(
                input_ids=batch["decoder_input_ids"],  # (B, L)
                attention_mask=batch["decoder_attention_mask"],
                encoder_hidden_states=states,
                encoder_attention_mask=mask,
                use_cache=False,
            ).logits  # (B, L, V)
        return Seq2SeqOutput(logits, lambda: self.generate_texts(states, mask))

    def generation_kwargs(self) -> dict[str, Any]:
        """The generation settings, as ``transformers``' ``generate`` takes them."""
        o = self.options
        return {
            "num_beams": o.num_beams, "length_penalty": o.length_penalty, "do_sample": False,
            "max_new_tokens": o.max_new_tokens or o.max_target_length, "early_stopping": o.num_beams > 1,
            "eos_token_id": self.end_id, "pad_token_id": self.pad_id, "bos_token_id": self.start_id,
            "decoder_start_token_id": self.start_id, "use_cache": True,
        }

    @torch.no_grad()
    def generate_ids(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Generated token ids (B, N), the start token first. states (B, S, H), mask (B, S)."""
        from transformers import DynamicCache, EncoderDecoderCache

        start = torch.full((states.shape[0], 1), self.start_id, dtype=torch.long, device=states.device)
        # A decoder with cross-attention keeps two caches (its own keys, the encoder's projected
        # states); generate() on a decoder alone would make one plain cache.
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        return self.decoder.generate(
            input_ids=start, attention_mask=torch.ones_like(start), encoder_hidden_states=states,
            encoder_attention_mask=mask, cache=cache, **self.generation_kwargs(),
        )

    def generate_texts(self, states: torch.Tensor, mask: torch.Tensor) -> list[str]:
        ids = self.generate_ids(states, mask)[:, 1:]
        return [t.strip() for t in self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]


def special_ids(tokenizer: Any) -> tuple[int, int, int]:
    """(start, end, pad) ids: [CLS]/[SEP] for BERT-style vocabularies, <s>/</s> otherwise."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    if start is None or end is None:
        raise ConfigError("seq2seq needs a tokenizer with start and end tokens ([CLS]/[SEP] or <s>/</s>)",
                          field="encoder.name_or_path")
    return int(start), int(end), int(pad)


def build_decoder(encoder: Any, warm: bool) -> nn.Module:
    """A decoder of ``encoder``'s architecture; with ``warm``, its weights copied in.

    Args:
        encoder: a polytask transformer encoder (its ``model`` is a ``transformers`` base model).
        warm: copy the encoder's weights (all but the new cross-attention and LM-head transform).
    """
    from transformers import AutoModelForCausalLM

    base = getattr(encoder, "model", None)
    if base is None or not hasattr(base, "config"):
        raise ConfigError(
            f"seq2seq builds its decoder from a transformer encoder's architecture; encoder type "
            f"{getattr(encoder, 'registry_name', type(encoder).__name__)!r} has none. Use encoder.type: transformer",
            field="encoder.type",
        )
    config = copy.deepcopy(base.config)
    config.is_decoder, config.add_cross_attention = True, True
    try:
        decoder = AutoModelForCausalLM.from_config(config)
    except ValueError as exc:
        raise ConfigError(f"model type {config.model_type!r} has no decoder (causal LM) class in transformers: "
                          f"{exc}", field="encoder.name_or_path") from None
    if warm:
        missing, unexpected = decoder.base_model.load_state_dict(base.state_dict(), strict=False)
        if unexpected or any("crossattention" not in k for k in missing):
            raise ConfigError(f"cannot warm-start the decoder from this encoder: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}; set tasks.<name>.options.decoder_init: random",
                              field="encoder.name_or_path")
        decoder.tie_weights()
    return decoder


@TASKS.register("seq2seq")
class Seq2SeqTask(Task):
    """Text-to-text generation with a decoder head over the shared encoder.

    ``Example.text`` is the source, ``Example.label`` the target text. Predicts ``{"text": str}``;
    metrics are sacreBLEU and chrF (``metrics: translation``, the default; ``bleu`` is the primary
    metric) or ROUGE-1/2/L F-measures (``metrics: summarization``; ``rougeL``), all 0-100.

    Args:
        config: the task's config block (options: ``Seq2SeqTaskConfig``).
        max_length: the experiment's ``train.max_length`` (the source length unless set).
    """
    shares_inputs = False  # never joins a shared-input stream (see Task.shares_inputs)

    options_class = Seq2SeqTaskConfig
    default_metric = "bleu"
    greater_is_better = True

    def __init__(self, config: Any, max_length: int = 128):
        self._truncated: list[str] = []  # where of targets cut to max_target_length, not yet reported
        super().__init__(config, max_length)

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        self.default_metric = "bleu" if self.options.metrics == "translation" else "rougeL"
        self.max_source_length = self.options.max_source_length or self.max_length

    @classmethod
    def example_inputs(cls) -> list[Example]:
        return [Example("ein hund läuft", label="a dog runs"), Example("eine katze", label="a cat"),
                Example("ein mann", label="a man")]

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """No label set: targets are free text. Checks the metric name is one this task computes."""
        self.labels = None
        self.pairs = False
        known = METRICS[self.options.metrics]
        if self.config.metric is not None and self.config.metric not in (*known, "loss"):
            raise ConfigError(f"metric {self.config.metric!r} is not computed with metrics: {self.options.metrics}; "
                              f"choose one of {', '.join(known)} or loss", field=f"tasks.{self.name}.metric")

    def check(self, examples: list[Example], split: str) -> None:
        """Reject empty sources and targets, text pairs, and (outside prediction) missing targets."""
        for ex in examples:
            check_text(ex)
            if ex.text_pair is not None:
                raise DataError(f"{at(ex)}seq2seq reads one source text; this example has a text_pair")
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            if not isinstance(ex.label, str) or not ex.label.strip():
                raise DataError(f"{at(ex)}empty target text in {split}; every {split} example needs a target")

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        feats: Features = tokenize(Example(example.text), tokenizer, self.max_source_length)
        if example.label is not None:
            self._add_target(feats, example, tokenizer)
        return feats

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many sources with one tokenizer call (what prediction uses)."""
        if not examples:
            return []
        enc = tokenizer([str(e.text) for e in examples], truncation=True, max_length=self.max_source_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        feats = [{k: list(enc[k][i]) for k in keys} for i in range(len(examples))]
        for f, ex in zip(feats, examples, strict=True):
            if ex.label is not None:
                self._add_target(f, ex, tokenizer)
        return feats

    def _add_target(self, feats: Features, example: Example, tokenizer: Any) -> None:
        limit = self.options.max_target_length
        ids = list(tokenizer(str(example.label), truncation=False)["input_ids"])  # [start] ... [end]
        if len(ids) > limit:
            self._truncated.append(example.where or "?")
            ids = ids[: limit - 1] + ids[-1:]  # keep the end token: the model learns to stop
        feats["decoder_input_ids"] = ids[:-1]
        feats["labels"] = ids[1:]

    def report_truncated(self) -> None:
        """One warning counting the targets cut to ``max_target_length`` since the last report."""
        if not self._truncated:
            return
        first = ", ".join(self._truncated[:5])
        logger.warning(
            "task %s: %d target(s) longer than max_target_length=%d tokens were truncated (first: %s); "
            "raise tasks.%s.options.max_target_length to keep them whole",
            self.name, len(self._truncated), self.options.max_target_length, first, self.name,
        )
        self._truncated = []

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        self.report_truncated()
        batch = collate_inputs(features, pad_token_id)
        if all("labels" in f for f in features):
            dec = [f["decoder_input_ids"] for f in features]
            batch["decoder_input_ids"] = pad_sequences(dec, pad_token_id)  # (B, L)
            batch["decoder_attention_mask"] = pad_sequences([[1] * len(d) for d in dec], 0)  # (B, L)
            batch["labels"] = pad_sequences([f["labels"] for f in features], IGNORE)  # (B, L)
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        raise ConfigError("seq2seq builds its decoder from the encoder: use build_head_for(encoder, dropout)")

    def build_head_for(self, encoder: Any, dropout: float) -> nn.Module:
        decoder = build_decoder(encoder, warm=self.options.decoder_init == "encoder")
        return Seq2SeqHead(decoder, encoder.tokenizer, self.options)

    def loss(self, logits: Any, batch: Batch) -> torch.Tensor:
        """Label-smoothed cross-entropy over target tokens. logits (B, L, V), labels (B, L)."""
        out = logits.logits
        return F.cross_entropy(out.float().flatten(0, 1), batch["labels"].flatten(),
                               ignore_index=IGNORE, label_smoothing=self.options.label_smoothing)

    def decode(self, logits: Any, batch: Batch) -> list[dict[str, Any]]:
        return [{"text": t} for t in logits.texts()]

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        refs = [str(ex.label) for ex in examples]
        hyps = [p["text"] for p in predictions]
        if self.options.metrics == "translation":
            return M.bleu_chrf(refs, hyps, lowercase=self.options.lowercase)
        return M.rouge(refs, hyps)

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": None, "options": asdict(self.options)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = None
        self.pairs = False
        if "options" in state:
            self.check_options(state["options"])
