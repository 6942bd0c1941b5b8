"""``extractive_qa``: the answer to a question as a span of its context (SQuAD-style reading).

A start/end head (one linear layer giving two logits per token) on the encoder's token states,
as in BERT's SQuAD model (Devlin et al., NAACL 2019, https://arxiv.org/abs/1810.04805, section
4.2). The question and the context are one sequence with two segments. A context longer than
``max_length`` is read in overlapping windows (``doc_stride`` tokens shared by neighbours); the
fast tokenizer's offset mapping takes the best span back to characters of the context. With
``allow_unanswerable`` (SQuAD v2.0, Rajpurkar, Jia and Liang, ACL 2018) the first token ([CLS])
stands for "no answer": an unanswerable question is trained to point there, and the answer is
empty when that score beats every span's.

An Example here: ``text`` the question, ``text_pair`` the context, ``label`` the answers
(``[{"text", "answer_start"}]`` in characters, an empty list for an unanswerable question; a
dict of lists ``{"text": [...], "answer_start": [...]}`` as Hugging Face datasets hold them, or
either as a JSON string from a CSV cell, is read too).

One Example gives one feature holding all its windows (their tokens laid end to end, so the
length used for batching is the tokens the example costs); ``collate`` stacks the windows of a
batch as rows, and ``decode`` gives one answer per example. Dimension letters: W windows,
T tokens, H hidden size.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.data.example import Example
from polytask.errors import ConfigError, DataError
from polytask.evaluation import metrics as M
from polytask.tasks.base import (
    TASKS,
    UNLABELLED_SPLITS,
    Batch,
    Features,
    Head,
    Task,
    at,
    check_text,
    missing_label_error,
    pad_sequences,
)

logger = logging.getLogger("polytask.data")
NO_SPAN = 0  # windows without the answer (and unanswerable questions) point at the first token
MASKED = -1e4  # logit given to positions that can hold no answer token (question, padding)


@dataclass
class ExtractiveQATaskConfig:
    """Options of ``extractive_qa``.

    Args:
        doc_stride: tokens that consecutive windows of a long context share (Hugging Face's
            ``stride``); at most half of a window's context tokens are used.
        max_answer_length: the longest answer predicted, in tokens.
        max_question_length: questions are cut to this many tokens.
        allow_unanswerable: questions may have no answer (SQuAD v2.0); without it such a
            question is a data error.
        null_threshold: with ``allow_unanswerable``, answer "no answer" when its score exceeds
            the best span's by more than this (log-probability; 0 compares them plainly).
    """

    doc_stride: int = 128
    max_answer_length: int = 30
    max_question_length: int = 64
    allow_unanswerable: bool = False
    null_threshold: float = 0.0


def answers_of(example: Example) -> list[dict[str, Any]]:
    """The example's answers as ``[{"text", "answer_start"}]`` (see the module docstring)."""
    label = example.label
    if isinstance(label, str):
        try:
            label = json.loads(label) if label.strip() else []
        except json.JSONDecodeError:
            raise DataError(
                f"{at(example)}the answers are not JSON: give a list of "
                '{"text", "answer_start"} objects (or {"text": [...], "answer_start": [...]})'
            ) from None
    if isinstance(label, dict):
        texts, starts = label.get("text", []), label.get("answer_start", [])
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        if len(texts) != len(starts):
            raise DataError(f"{at(example)}{len(texts)} answer texts but {len(starts)} answer_start values")
        label = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if not isinstance(label, list) or not all(isinstance(a, dict) for a in label):
        raise DataError(f"{at(example)}answers must be a list of {{\"text\", \"answer_start\"}} objects")
    out = []
    for a in label:
        try:
            out.append({"text": str(a["text"]), "answer_start": int(a["answer_start"])})
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{at(example)}each answer needs a text and an integer answer_start; got {a}") from None
    return out


def question_id(example: Example) -> str:
    """`` (question ID)`` for messages, when the example has an id not already in ``where``."""
    qid = example.meta.get("id") if example.meta else None
    return "" if qid is None or str(qid) in example.where else f"question {qid}: "


@TASKS.register("extractive_qa")
class ExtractiveQATask(Task):
    """Extractive question answering over a context of any length (see the module docstring).

    Args:
        config: the task's config block; options in ``ExtractiveQATaskConfig``.
        max_length: tokens per window (question, context part and special tokens).

    Predicts ``{"answer", "start", "end", "score"}``: the answer text, its character offsets in
    the context (``context[start:end] == answer``; None for "no answer") and its probability
    (the start probability times the end probability within its window). Metrics are exact
    match and F1 (the default) with the official SQuAD normalisation, in percent.
    """
    shares_inputs = False  # never joins a shared-input stream (see Task.shares_inputs)

    default_metric = "f1"
    greater_is_better = True
    shares_features = False  # its features (windows) are its own: never shared with other tasks
    options_class = ExtractiveQATaskConfig

    @classmethod
    def example_inputs(cls) -> list[Example]:
        ctx = "Marie Curie won the Nobel Prize in 1903. She was born in Warsaw."
        return [
            Example("Who won the prize?", ctx, label=[{"text": "Marie Curie", "answer_start": 0}]),
            Example("Where was she born?", ctx, label=[{"text": "Warsaw", "answer_start": 57}]),
            Example("When?", ctx, label=[{"text": "1903", "answer_start": 35}]),
        ]

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """No label set: a span is predicted. Records that the task reads pairs."""
        self.pairs = True
        self.labels = None

    def check(self, examples: list[Example], split: str) -> None:
        """Reject a missing question or context, answers not found at their ``answer_start``,
        and unanswerable questions unless ``allow_unanswerable`` (each naming file and question)."""
        for ex in examples:
            check_text(ex)
            if not isinstance(ex.text, str):
                raise DataError(f"{at(ex)}{question_id(ex)}the question must be a string")
            if not isinstance(ex.text_pair, str) or not ex.text_pair.strip():
                raise DataError(
                    f"{at(ex)}{question_id(ex)}no context: extractive_qa reads a question (text) "
                    "and the context holding its answer (text_pair)"
                )
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            answers = answers_of(ex)
            if not answers and not self.options.allow_unanswerable:
                raise DataError(
                    f"{at(ex)}{question_id(ex)}unanswerable question (no answers), but task "
                    f"{self.name!r} is not configured for them; set tasks.{self.name}.options."
                    "allow_unanswerable: true (SQuAD v2.0 data), or remove the question"
                )
            for a in answers:
                s, text = a["answer_start"], a["text"]
                found = ex.text_pair[s : s + len(text)] if s >= 0 else ""
                if not text or found != text:
                    elsewhere = ex.text_pair.find(text) if text else -1
                    hint = f" (it occurs at {elsewhere})" if elsewhere >= 0 else " (it is nowhere in the context)"
                    raise DataError(
                        f"{at(ex)}{question_id(ex)}answer {text!r} is not at its answer_start {s}: "
                        f"the context holds {found!r} there{hint}; fix answer_start (characters, "
                        "0-based) or the answer text"
                    )

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        """All windows of one question: inputs laid end to end, ``window_sizes``, each window's
        character ``offsets`` (None for tokens outside the context) and, when labelled, each
        window's (start, end) token of the first answer (``NO_SPAN`` when it is not inside)."""
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("extractive_qa needs a fast tokenizer (offset mapping); this encoder's is not",
                              field="encoder.name_or_path")
        question, context = str(example.text), str(example.text_pair)
        question = self._cut_question(question, tokenizer)
        n_question = len(tokenizer(question, add_special_tokens=False)["input_ids"])
        room = self.max_length - n_question - tokenizer.num_special_tokens_to_add(pair=True)
        if room < 2:
            raise ConfigError(
                f"task {self.name!r}: max_length {self.max_length} leaves no room for the context "
                f"after a {n_question}-token question; raise max_length or lower max_question_length",
                field=f"tasks.{self.name}.max_length",
            )
        stride = max(0, min(self.options.doc_stride, room // 2))
        enc = tokenizer(question, context, truncation="only_second", max_length=self.max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        feats: Features = {k: [] for k in keys}
        feats.update(window_sizes=[], offsets=[], context=context)
        for w in range(len(enc["input_ids"])):
            seq = enc.sequence_ids(w)
            for k in keys:
                feats[k].extend(enc[k][w])
            feats["window_sizes"].append(len(enc["input_ids"][w]))
            feats["offsets"].append([tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][w], seq, strict=True)])
        if example.label is not None:
            feats["labels"] = self._targets(example, feats["offsets"], stride, room)
        return feats

    def _cut_question(self, question: str, tokenizer: Any) -> str:
        enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        limit = self.options.max_question_length
        if len(enc["input_ids"]) <= limit:
            return question
        return question[: enc["offset_mapping"][limit - 1][1]]

    def _targets(self, example: Example, offsets: list[list[Any]], stride: int, room: int) -> list[list[int]]:
        answers = answers_of(example)
        if not answers:
            return [[NO_SPAN, NO_SPAN] for _ in offsets]
        a = answers[0]
        first, last = a["answer_start"], a["answer_start"] + len(a["text"])
        out, inside = [], False
        for window in offsets:
            span = [i for i, o in enumerate(window) if o is not None and o[0] < last and o[1] > first]
            chars = [window[i] for i in span]
            covered = bool(span) and min(c[0] for c in chars) <= first and max(c[1] for c in chars) >= last
            if covered:
                out.append([span[0], span[-1]])
                inside = True
                self._warn_long(example, span[-1] - span[0] + 1)
            else:
                out.append([NO_SPAN, NO_SPAN])
        if not inside:
            raise DataError(
                f"{at(example)}{question_id(example)}answer {a['text'][:60]!r} ({len(a['text'])} "
                f"characters) fits in no context window ({room} context tokens, {stride} shared by "
                f"neighbours, max_length {self.max_length}); raise tasks.{self.name}.max_length or "
                "options.doc_stride, or remove the question"
            )
        return out

    def _warn_long(self, example: Example, n_tokens: int) -> None:
        """One warning per task for the first answer longer than ``max_answer_length``: decoding
        never predicts it whole, so a data set full of them wants a larger limit."""
        if n_tokens <= self.options.max_answer_length or getattr(self, "_warned_long", False):
            return
        self._warned_long = True
        logger.warning(
            "%s%sanswer of %d tokens is longer than tasks.%s.options.max_answer_length (%d): it is "
            "never predicted whole (further ones are not reported)",
            at(example), question_id(example), n_tokens, self.name, self.options.max_answer_length,
        )

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        """Every window of every feature as one row: (W, T) inputs, ``labels`` (W, 2)."""
        rows: dict[str, list[list[int]]] = {k: [] for k in ("input_ids", "attention_mask", "token_type_ids")}
        for f in features:
            start = 0
            for size in f["window_sizes"]:
                for k in rows:
                    if k in f:
                        rows[k].append(f[k][start : start + size])
                start += size
        batch: Batch = {
            "input_ids": pad_sequences(rows["input_ids"], pad_token_id),  # (W, T)
            "attention_mask": pad_sequences(rows["attention_mask"], 0),  # (W, T)
        }
        if all("token_type_ids" in f for f in features):
            batch["token_type_ids"] = pad_sequences(rows["token_type_ids"], 0)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([w for f in features for w in f["labels"]], dtype=torch.long)  # (W, 2)
        # Python lists, read by decode to take windows back to their examples and characters.
        batch["window_counts"] = [len(f["window_sizes"]) for f in features]
        batch["offsets"] = [w for f in features for w in f["offsets"]]
        batch["contexts"] = [f["context"] for f in features]
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        """Dropout + linear to (start, end) logits per token: transformers' ``qa_outputs``."""
        return Head(hidden_size, 2, dropout, token_level=True)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean of the start and end cross-entropies over each window's real tokens.
        logits (W, T, 2), labels (W, 2)."""
        pad = batch["attention_mask"].to(logits.device) == 0  # (W, T)
        masked = logits.float().masked_fill(pad.unsqueeze(-1), MASKED)  # (W, T, 2)
        labels = batch["labels"].to(logits.device)
        start = F.cross_entropy(masked[..., 0], labels[:, 0])
        end = F.cross_entropy(masked[..., 1], labels[:, 1])
        return (start + end) / 2

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        """The best span of each example over its windows (see ``best_span``)."""
        logits = logits.detach().float().cpu()  # (W, T, 2)
        out, row = [], 0
        for count, context in zip(batch["window_counts"], batch["contexts"], strict=True):
            windows = [(logits[row + w], batch["offsets"][row + w]) for w in range(count)]
            out.append(self.best_span(windows, context))
            row += count
        return out

    def best_span(self, windows: list[tuple[torch.Tensor, list[Any]]], context: str) -> dict[str, Any]:
        """The answer of one question from its windows' logits.

        In each window the start and end logits are turned into probabilities over the context
        tokens (plus the first token with ``allow_unanswerable``); a span's score is
        log p(start) + log p(end), with end >= start and at most ``max_answer_length`` tokens.
        The best span over all windows wins; with ``allow_unanswerable`` "no answer" wins when
        the lowest no-answer score of the windows exceeds it by more than ``null_threshold``.

        Args:
            windows: per window, its logits (T, 2) and its character offsets (None outside the context).
            context: the context the offsets point into.
        """
        best: tuple[float, int, int] | None = None
        null: float | None = None
        allow = self.options.allow_unanswerable
        for lg, offsets in windows:
            n = len(offsets)
            valid = torch.tensor([o is not None for o in offsets])  # (T,)
            keep = valid.clone()
            if allow:
                keep[NO_SPAN] = True
            lp = lg[:n].masked_fill(~keep.unsqueeze(-1), float("-inf")).log_softmax(0)  # (T, 2)
            if allow:
                score = float(lp[NO_SPAN, 0] + lp[NO_SPAN, 1])
                null = score if null is None else min(null, score)
            pair = lp[:, 0].unsqueeze(1) + lp[:, 1].unsqueeze(0)  # (T, T): start x end
            ok = valid.unsqueeze(1) & valid.unsqueeze(0)
            ok = torch.triu(ok) & ~torch.triu(torch.ones(n, n, dtype=torch.bool), self.options.max_answer_length)
            pair = pair.masked_fill(~ok, float("-inf"))
            flat = int(pair.argmax())
            score = float(pair.flatten()[flat])
            if score > float("-inf") and (best is None or score > best[0]):
                s, e = divmod(flat, n)
                best = (score, offsets[s][0], offsets[e][1])
        if best is None or (null is not None and null - best[0] > self.options.null_threshold):
            return {"answer": "", "start": None, "end": None, "score": float(torch.tensor(null or 0.0).exp())}
        score, start, end = best
        return {"answer": context[start:end], "start": int(start), "end": int(end), "score": float(torch.tensor(score).exp())}

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        golds = [[a["text"] for a in answers_of(ex)] or [""] for ex in examples]
        return M.squad_scores(golds, [p["answer"] for p in predictions])

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": None, "options": asdict(self.options), "pairs": True}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = None
        self.pairs = True
        if "options" in state:
            self.check_options(state["options"])
