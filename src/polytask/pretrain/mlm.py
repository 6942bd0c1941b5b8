"""Domain-adaptive pretraining: continue masked-LM training of an encoder on unlabelled text.

Gururangan et al. 2020, "Don't Stop Pretraining: Adapt Language Models to Domains and Tasks",
ACL, https://arxiv.org/abs/2004.10964: a second phase of the original masked-LM objective on
in-domain text (DAPT) or on the task's own unlabelled text (TAPT) helps later fine-tuning. The
objective is BERT's (Devlin et al. 2019, https://arxiv.org/abs/1810.04805): 15% of the tokens are
predicted, of which 80% are replaced by ``[MASK]``, 10% by a random token and 10% left as they are.

The result, ``output_dir/model``, is a standard transformers folder (config, safetensors weights,
tokenizer; the masked-LM head is kept so pretraining can continue from it) and a source like any
other: ``encoder.name_or_path: runs/dapt/model``. Perplexity (exp of the mean loss over masked
tokens) is measured on a held-out slice of the texts before and after, with the same masks both
times, and written to ``output_dir/pretrain.json``.

With ``stream: true`` the corpus is never held in memory: it is read through ``datasets`` as an
``IterableDataset``, the first ``eval_texts`` texts are held out, and the rest are tokenised as
they are needed, shuffled through a buffer and batched by length within a window.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import nn

from polytask.data.batching import bucket_batches
from polytask.errors import ConfigError, DataError
from polytask.evaluation.evaluate import move
from polytask.io import write_dir, write_json
from polytask.precision import label as precision_label
from polytask.pretrain.config import PretrainConfig, load_pretrain_config, parse_pretrain_config
from polytask.pretrain.corpus import corpus_errors, iter_texts, read_corpus, stream_corpus
from polytask.runs import CHECKPOINTS_DIR, METRICS_FILE, RESULTS_FILE
from polytask.training.engine import StepEngine
from polytask.training.logging import MetricsLogger, Progress
from polytask.training.optim import adamw, decay_groups

if TYPE_CHECKING:
    from datasets import IterableDataset

MODEL_DIR = "model"
RESULT_FILE = "pretrain.json"
STREAM_TOKENIZE_BATCH = 256  # texts tokenised per call when streaming
ONE_TEXT = "the corpus holds one text; pretraining needs at least 2 (some are held out to measure perplexity)"


@dataclass
class PretrainResult:
    """What a pretraining run did (also written to ``output_dir/pretrain.json``).

    Args:
        perplexity_before: held-out masked-LM perplexity of the starting encoder.
        perplexity_after: the same, with the same masks, after pretraining.
        train_texts: texts trained on; None when streamed (the stream's length is unknown).
        train_sequences: sequences of the training texts; when streamed, the sequences trained on.
        stream: whether the corpus was streamed (``stream: true``).
        notes: log lines (e.g. that the masked-LM head was newly initialised).
    """

    output_dir: Path
    model_dir: Path
    perplexity_before: float | None
    perplexity_after: float | None
    steps: int
    train_texts: int | None
    eval_texts: int
    train_sequences: int
    seconds: float = 0.0
    examples_per_second: float = 0.0
    stream: bool = False
    notes: list[str] = field(default_factory=list)
    precision: str = "no"  # what the steps ran in: no (fp32), bf16 or fp16 (mixed_precision resolved)


def pretrain_mlm(config: PretrainConfig | dict[str, Any] | str | os.PathLike, overwrite: bool = False,
                 overrides: list[str] | None = None) -> PretrainResult:
    """Continue masked-LM pretraining of ``config.encoder`` on ``config.text``.

    Args:
        config: a PretrainConfig, a mapping of its fields, or the path of a YAML file.
        overwrite: replace an existing ``output_dir/model``.
        overrides: ``key=value`` overrides, when ``config`` is a YAML path.

    Raises:
        ConfigError: a bad config, an encoder that is not a transformers masked-LM folder, or an
            existing output without ``overwrite``.
        DataError: a missing or empty corpus.
    """
    from transformers import get_linear_schedule_with_warmup

    from polytask.training.run import make_accelerator

    cfg = _as_config(config, overrides)
    out, model_dir = _check_output(cfg, overwrite)
    corpus = _StreamedCorpus(cfg) if cfg.stream else _TextCorpus(cfg)  # bad data fails here
    accelerator = make_accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    model, tokenizer, notes = load_masked_lm(cfg.encoder)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_length > limit:
        raise ConfigError(f"max_length {cfg.max_length} is more than the encoder's {limit} positions; "
                          f"set max_length <= {limit}", field="max_length")
    corpus.tokenize(tokenizer)
    # The held-out batches are masked once, so "before" and "after" score the very same tokens.
    eval_seqs = to_sequences(corpus.eval_texts, tokenizer, cfg.max_length)
    eval_collator = _collator(tokenizer, cfg.mlm_probability, cfg.seed + 1)
    eval_batches = [eval_collator([{"input_ids": eval_seqs[i]} for i in idx])
                    for idx in bucket_batches([len(s) for s in eval_seqs], cfg.eval_batch_size, shuffle=False)]
    eval_batches = eval_batches[accelerator.process_index :: accelerator.num_processes]
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * corpus.steps_per_epoch(accelerator.num_processes)))

    optimizer = adamw(decay_groups([p for p in model.parameters() if p.requires_grad], cfg.weight_decay), cfg.lr,
                      accelerator.device)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    engine = StepEngine(accelerator, model, optimizer, scheduler, cfg.max_grad_norm)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).unlink(missing_ok=True)  # a replaced result's log would mix in
    logger = MetricsLogger(out, enabled=accelerator.is_main_process)
    progress = Progress(total_steps, enabled=accelerator.is_main_process and cfg.progress)
    notes.append(corpus.note(total_steps))
    notes.append(f"precision {precision_label(accelerator.mixed_precision)} (mixed_precision: {cfg.mixed_precision})")
    for line in notes:
        progress.note(line)

    ppl_before = _perplexity(masked_lm_loss(model, eval_batches, accelerator))
    progress.note(f"held-out perplexity before: {ppl_before:.2f}" if ppl_before else "held-out: no masked tokens")
    logger.log("eval", 0, 0, {"perplexity": _nan(ppl_before)})
    collator = _collator(tokenizer, cfg.mlm_probability, cfg.seed)
    step, epoch, seen, seconds = _train(engine, corpus, collator, cfg, total_steps, logger, progress)
    ppl_after = _perplexity(masked_lm_loss(model, eval_batches, accelerator))
    logger.log("eval", step, epoch, {"perplexity": _nan(ppl_after)})
    logger.close()
    if ppl_after is not None:
        progress.note(f"held-out perplexity after {step} steps: {ppl_after:.2f}")
    result = PretrainResult(
        output_dir=out, model_dir=model_dir, perplexity_before=ppl_before, perplexity_after=ppl_after,
        steps=step, train_texts=corpus.train_texts, eval_texts=len(corpus.eval_texts),
        train_sequences=corpus.train_sequences(seen), seconds=seconds,
        examples_per_second=seen / max(seconds, 1e-9), stream=cfg.stream, notes=notes,
        precision=accelerator.mixed_precision,
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_model_atomically(accelerator.unwrap_model(model), tokenizer, model_dir)
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
        write_json(out / RESULT_FILE, {**summary, "config": cfg.model_dump(mode="json")})
    accelerator.wait_for_everyone()
    return result


def _check_output(cfg: PretrainConfig, overwrite: bool) -> tuple[Path, Path]:
    if cfg.stream and cfg.max_steps is None:
        raise ConfigError("stream: true needs max_steps: a streamed corpus has no known length, so "
                          "epochs cannot be counted; set max_steps (e.g. --set max_steps=10000)",
                          field="max_steps")
    out = Path(cfg.output_dir)
    model_dir = out / MODEL_DIR
    if model_dir.exists() and not overwrite:
        raise ConfigError(
            f"{model_dir} already exists; pass overwrite=True (--overwrite) to replace it, or set "
            "output_dir", field="output_dir",
        )
    return out, model_dir


def _train(engine: StepEngine, corpus: Any, collator: Any, cfg: PretrainConfig, total_steps: int,
           logger: MetricsLogger, progress: Progress) -> tuple[int, int, int, float]:
    """The masked-LM steps; returns (steps, epochs started, sequences seen, seconds)."""
    accelerator = engine.accelerator
    step, epoch, seen, shown = 0, 0, 0, float("nan")
    t0 = time.perf_counter()
    engine.model.train()
    with progress:
        while step < total_steps:
            taken = 0
            for seqs in corpus.batches(epoch, accelerator.process_index, accelerator.num_processes):
                taken += 1
                batch = move(collator([{"input_ids": ids} for ids in seqs]), accelerator.device)
                with accelerator.autocast():
                    loss = engine.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                        labels=batch["labels"]).loss
                if not torch.isfinite(loss.detach()):
                    # A batch of very short texts can draw no token to predict (loss 0/0): skip it.
                    engine.discard()
                    continue
                engine.backward(loss)
                engine.step()
                step += 1
                seen += len(seqs) * accelerator.num_processes
                engine.record(loss)
                speed = seen / max(time.perf_counter() - t0, 1e-9)
                if step % cfg.log_every == 0 or step == total_steps:
                    shown = engine.mean_loss()
                    logger.log("train", step, epoch, {"loss": shown, "lr": engine.lr, "examples_per_second": speed})
                progress.update(step, loss=shown, speed=speed, epoch=epoch + 1)
                if step >= total_steps:
                    break
            if not taken:  # a stream too short to give this process a batch would loop forever
                raise DataError(f"the training stream gave process {accelerator.process_index} no batch; "
                                "give more text or lower eval_texts", path=cfg.text)
            epoch += 1
    return step, epoch, seen, time.perf_counter() - t0


class _TextCorpus:
    """A corpus read into memory: a seeded held-out slice, the rest tokenised once."""

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.texts = read_corpus(cfg.text, cfg.text_column, cfg.encoding, cfg.limit)
        if len(self.texts) < 2:
            raise DataError(ONE_TEXT, path=cfg.text)
        self.eval_texts: list[str] = []

    def tokenize(self, tokenizer: Any) -> None:
        train, self.eval_texts = split_texts(self.texts, self.cfg.eval_fraction, self.cfg.seed)
        self.train_texts = len(train)
        self.seqs = to_sequences(train, tokenizer, self.cfg.max_length)  # lists of token ids
        self.lengths = [len(s) for s in self.seqs]

    def steps_per_epoch(self, world: int) -> int:
        return max(1, len(bucket_batches(self.lengths, self.cfg.batch_size, True)) // world)

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[list[list[int]]]:
        """This process's batches (lists of token-id sequences) of one pass over the corpus."""
        batches = bucket_batches(self.lengths, self.cfg.batch_size, True, seed=self.cfg.seed + epoch)
        # Every process gets the same number of batches, so DDP's all-reduces pair up.
        usable = len(batches) - len(batches) % world or len(batches)
        for idx in batches[rank:usable:world]:
            yield [self.seqs[i] for i in idx]

    def train_sequences(self, seen: int) -> int:
        return len(self.seqs)

    def note(self, total_steps: int) -> str:
        return (f"{self.train_texts} texts ({len(self.seqs)} sequences of <= {self.cfg.max_length} tokens) "
                f"for training, {len(self.eval_texts)} held out")


class _StreamedCorpus:
    """A corpus read lazily: the first ``eval_texts`` texts held out, the rest tokenised as read."""

    train_texts = None  # a stream's length is unknown

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        stream = stream_corpus(cfg.text, cfg.text_column, cfg.encoding, cfg.limit)
        # The first texts are the held-out set; training skips them (nothing else is read yet).
        self.eval_texts = list(iter_texts(stream.take(cfg.eval_texts), cfg.text, cfg.encoding))
        self.train_stream = stream.skip(len(self.eval_texts))
        if next(iter_texts(self.train_stream.take(1), cfg.text, cfg.encoding), None) is None:
            if len(self.eval_texts) < 2:
                raise DataError(ONE_TEXT, path=cfg.text)
            raise DataError(f"the corpus holds {len(self.eval_texts)} texts, all held out by eval_texts "
                            f"({cfg.eval_texts}), so none is left to train on; lower eval_texts, or "
                            "set stream: false for a small corpus", path=cfg.text)

    def tokenize(self, tokenizer: Any) -> None:
        c = self.cfg
        self.seq_stream = stream_sequences(self.train_stream, tokenizer, c.max_length, c.shuffle_buffer, c.seed)

    def steps_per_epoch(self, world: int) -> int:  # never asked: a stream needs max_steps
        raise AssertionError("a streamed corpus has no epoch length")

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[list[list[int]]]:
        self.seq_stream.set_epoch(epoch)  # a new shuffle order each pass
        ids = (row["input_ids"] for row in self.seq_stream)
        # Every process reads the same stream and takes every n-th batch; all run total_steps.
        for k, seqs in enumerate(stream_batches(self._guarded(ids), self.cfg.batch_size, self.cfg.seed + epoch)):
            if k % world == rank:
                yield seqs

    def _guarded(self, ids: Iterable[list[int]]) -> Iterator[list[int]]:
        # Decoding and parse errors deep in a streamed file surface here, as DataErrors.
        with corpus_errors(self.cfg.text, self.cfg.encoding):
            yield from ids

    def train_sequences(self, seen: int) -> int:
        return seen

    def note(self, total_steps: int) -> str:
        c = self.cfg
        return (f"streaming {c.text}: the first {len(self.eval_texts)} texts held out, the rest tokenised "
                f"on the fly into sequences of <= {c.max_length} tokens (shuffle buffer {c.shuffle_buffer}) "
                f"for {total_steps} steps")


def load_masked_lm(encoder: str) -> tuple[nn.Module, Any, list[str]]:
    """A transformers masked-LM model and its fast tokenizer, plus notes on what was new.

    Args:
        encoder: ``default``, a local transformers folder, or a hub id.

    Raises:
        ConfigError: the folder is missing, is not a transformers model folder (a polytask run,
            a file), or its architecture has no masked-LM form.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from polytask.encoders.transformer import DEFAULT, _quiet_transformers, resolve_source

    source = resolve_source(encoder)
    how = ("give a transformers model folder (config.json, weights, tokenizer), 'default' for the "
           "packaged all-MiniLM-L6-v2, or a hub id (needs a network)")
    path = Path(source)
    if encoder == DEFAULT or os.path.isabs(source) or source.startswith(".") or path.exists():
        if not path.exists():
            raise ConfigError(f"encoder folder not found: {source}; {how}", field="encoder")
        if not path.is_dir():
            raise ConfigError(f"encoder {source} is a file, not a folder; {how}", field="encoder")
        if not (path / "config.json").is_file():
            if (path / CHECKPOINTS_DIR).is_dir() or (path / RESULTS_FILE).is_file():
                raise ConfigError(
                    f"{source} is a polytask run, not a transformers folder: export its encoder with "
                    f"'polytask export-hf {source} OUT' and pretrain from OUT", field="encoder",
                )
            raise ConfigError(f"{source} has no config.json, so it is not a transformers model folder; {how}",
                              field="encoder")
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except ValueError as exc:  # an architecture without a masked-LM class (GPT-2, T5, ...)
        raise ConfigError(
            f"cannot load {source} as a masked language model ({str(exc).splitlines()[0]}); pretrain "
            "needs a BERT-style encoder (BERT, RoBERTa, DistilBERT, MiniLM, ...)", field="encoder",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot load encoder {encoder!r}: {str(exc).splitlines()[0]}; {how}",
                          field="encoder") from None
    if tokenizer.mask_token is None:
        raise ConfigError(f"the tokenizer of {source} has no mask token, so it cannot do masked-LM "
                          "pretraining", field="encoder")
    notes = []
    prefix = getattr(model, "base_model_prefix", "")
    missing = sorted(info.get("missing_keys", []))
    head = [k for k in missing if not k.startswith(f"{prefix}.")]
    body = [k for k in missing if k.startswith(f"{prefix}.")]
    if head:
        tied = _tied(model)
        notes.append(
            f"{source} ships no masked-LM head: {len(head)} head tensors ({head[0]}, ...) are newly "
            "initialised" + (" (the output layer is tied to the word embeddings)" if tied else "")
        )
    if body:
        notes.append(f"warning: {len(body)} encoder tensors are not in {source} and start random "
                     f"({body[0]}, ...); check that the folder holds the weights you mean")
    return model, tokenizer, notes


def _tied(model: nn.Module) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


def split_texts(texts: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded held-out slice (at least one text) and the rest, each in corpus order."""
    n_eval = min(len(texts) - 1, max(1, round(len(texts) * eval_fraction)))
    held = set(random.Random(seed).sample(range(len(texts)), n_eval))
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def to_sequences(texts: list[str], tokenizer: Any, max_length: int) -> list[list[int]]:
    """Token ids with special tokens; a text longer than ``max_length`` becomes several sequences."""
    # A fast tokenizer returns the overflow of a long text as extra sequences, each with its own
    # special tokens ([CLS] ... [SEP]).
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_overflowing_tokens=True)
    return [list(ids) for ids in enc["input_ids"]]


def stream_sequences(texts: IterableDataset, tokenizer: Any, max_length: int, shuffle_buffer: int = 0,
                     seed: int = 0) -> IterableDataset:
    """A lazy ``IterableDataset`` of ``{"input_ids": [...]}``: :func:`to_sequences` applied as read.

    Args:
        texts: an ``IterableDataset`` of ``{"text": str}`` rows (:func:`stream_corpus`).
        tokenizer: a fast tokenizer.
        max_length: tokens per sequence, special tokens included.
        shuffle_buffer: shuffle the sequences through a buffer of this many (0: keep the order).
        seed: the shuffle seed (``set_epoch`` varies it per pass).
    """
    # A batched map may return more rows than it was given: a long text's overflow sequences.
    seqs = texts.map(lambda rows: {"input_ids": to_sequences(rows["text"], tokenizer, max_length)},
                     batched=True, batch_size=STREAM_TOKENIZE_BATCH, remove_columns=["text"])
    return seqs.shuffle(seed=seed, buffer_size=shuffle_buffer) if shuffle_buffer else seqs


def stream_batches(seqs: Iterable[list[int]], batch_size: int, seed: int,
                   window_batches: int = 50) -> Iterator[list[list[int]]]:
    """Batches of similar-length sequences from a stream, as ``bucket_batches`` makes for a list.

    A window of ``batch_size * window_batches`` sequences is read, bucketed by length and its
    batches shuffled, so padding stays tight while only the window is held in memory.
    """
    window: list[list[int]] = []
    for k, ids in enumerate(seqs):
        window.append(ids)
        if len(window) == batch_size * window_batches:
            yield from ([window[i] for i in idx] for idx in
                        bucket_batches([len(s) for s in window], batch_size, True, seed=seed + k))
            window = []
    if window:
        yield from ([window[i] for i in idx] for idx in
                    bucket_batches([len(s) for s in window], batch_size, True, seed=seed))


def masked_lm_loss(model: nn.Module, batches: list[dict[str, torch.Tensor]], accelerator: Any) -> float | None:
    """Mean cross-entropy over every masked token of ``batches`` (all processes); None if none."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    count = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    with torch.no_grad():
        for batch in batches:
            batch = move(batch, accelerator.device)
            with accelerator.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
            labels = batch["labels"]  # (B, T), -100 where nothing is predicted
            total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                     reduction="sum").double()
            count += (labels != -100).sum()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    model.train(was_training)
    return float(total / count) if count > 0 else None


def save_model_atomically(model: nn.Module, tokenizer: Any, model_dir: Path) -> None:
    """Write the model folder beside its place, then swap it in (replacing an older one)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    write_dir(model_dir, write)


def _collator(tokenizer: Any, probability: float, seed: int) -> Any:
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, seed=seed)


def _perplexity(loss: float | None) -> float | None:
    return None if loss is None else float(math.exp(min(loss, 700.0)))


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _as_config(config: Any, overrides: list[str] | None) -> PretrainConfig:
    if isinstance(config, PretrainConfig):
        return config
    if isinstance(config, dict):
        return parse_pretrain_config(config)
    return load_pretrain_config(config, overrides)
