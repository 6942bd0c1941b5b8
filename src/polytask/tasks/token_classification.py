"""``token_classification``: one tag per word (named entities, chunks, part-of-speech).

Predicts a tag distribution for every subword from the encoder's token states; trained with
cross-entropy on the first subword of each word (the BERT recipe for CoNLL-2003 NER, Devlin et
al., NAACL 2019, https://arxiv.org/abs/1810.04805), the other subwords and special tokens being
ignored (label -100). A word's predicted tag is the prediction at its first subword.

Entity-level precision, recall and F1 come from seqeval (Nakayama 2018,
https://github.com/chakki-works/seqeval) in its default mode, which is compatible with the
CoNLL-2000 ``conlleval`` script; token accuracy is reported beside them.

Truncation: words that fall beyond ``max_length`` subwords get no prediction from the model;
``decode`` tags them ``"O"`` so every example still gets one tag per word, and the metrics count
any entity among them as missed (an honest score for the configured length).
"""

from __future__ import annotations

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
    collate_inputs,
    drop_unseen,
    missing_label_error,
    pad_sequences,
    sort_labels,
    unknown_label_error,
)

IGNORE_INDEX = -100  # label of subwords and special tokens the loss skips (torch's default)
OUTSIDE = "O"  # tag given to words the model never saw (truncated) or that have no subword


@dataclass
class TokenClassificationTaskConfig:
    """Options of ``token_classification``.

    Args:
        label_all_subwords: train on every subword of a word, not only the first; later subwords
            of a ``B-X`` word get ``I-X`` (which joins the label set when absent). Decoding still
            reads the first subword.
    """

    label_all_subwords: bool = False


def words_of(example: Example) -> list[str]:
    """The example's words: its list, or its string split on whitespace."""
    text = example.text
    return text.split() if isinstance(text, str) else [str(w) for w in text]


def tags_of(example: Example) -> list[str]:
    """The example's tags: its list, or its string split on whitespace."""
    label = example.label
    return label.split() if isinstance(label, str) else [str(t) for t in label]


def inside_of(tag: str) -> str:
    """``B-X`` -> ``I-X`` (also ``B_X``); any other tag unchanged."""
    if len(tag) > 2 and tag[0] == "B" and tag[1] in "-_":
        return "I" + tag[1:]
    return tag


def paired(tag: str) -> str:
    """The other tag of an IOB pair: ``B-X`` <-> ``I-X`` (also with ``_``); others unchanged."""
    if len(tag) > 2 and tag[1] in "-_" and tag[0] in "BI":
        return ("I" if tag[0] == "B" else "B") + tag[1:]
    return tag


def _split_tag(tag: str) -> tuple[str, str]:
    """``B-X`` -> (B, X), ``I-X`` -> (I, X), anything else (``O``) -> (I, tag), as the transformers
    pipeline reads tags."""
    if tag[:2] in ("B-", "I-"):
        return tag[0], tag[2:]
    return "I", tag


def word_offsets(text: str | list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text spans are measured in, and each word's (start, end) in it: a string as given
    (words are its whitespace-separated pieces), a word list joined by single spaces."""
    if isinstance(text, str):
        source, words = text, text.split()
    else:
        words = [str(w) for w in text]
        source = " ".join(words)
    spans, cursor = [], 0
    for w in words:
        start = source.index(w, cursor)
        cursor = start + len(w)
        spans.append((start, cursor))
    return source, spans


def entity_spans(text: str | list[str], tags: list[str], scores: list[float]) -> list[dict[str, Any]]:
    """Word tags grouped into entities, like transformers' ``aggregation_strategy="simple"``
    grouping: a ``B-X`` word starts an entity, an ``I-X`` word continues one of type X and
    starts one otherwise; ``O`` words belong to none.

    Args:
        text: the input (a string or its word list).
        tags: one tag per word.
        scores: one probability per word (of its tag).
    Returns:
        ``[{"entity", "start", "end", "text", "score"}]`` in text order.
    """
    source, offsets = word_offsets(text)
    groups: list[tuple[str, list[int]]] = []
    for i, tag in enumerate(tags):
        bi, kind = _split_tag(tag)
        if groups and groups[-1][0] == kind and bi != "B":
            groups[-1][1].append(i)
        else:
            groups.append((kind, [i]))
    out = []
    for kind, words in groups:
        if kind == OUTSIDE:
            continue
        start, end = offsets[words[0]][0], offsets[words[-1]][1]
        out.append({
            "entity": kind, "start": start, "end": end, "text": source[start:end],
            "score": sum(scores[w] for w in words) / len(words),
        })
    return out


@TASKS.register("token_classification")
class TokenClassificationTask(Task):
    """Tagging of a word list, one tag per word (IOB2/BIO tags for entities, or any tag set).

    Needs a tokenizer that maps subwords back to words (a Hugging Face fast tokenizer's
    ``word_ids()`` with ``is_split_into_words=True``). Tags that are not valid IOB are not
    rejected: seqeval reads them as conlleval does.

    Args:
        config: the task's config block; option ``label_all_subwords``.
        max_length: subword tokens per example after truncation (see the module docstring).

    Predicts ``{"tags": [one tag per word]}``; metrics are entity F1 (the default), entity
    precision and recall, and token accuracy.
    """

    token_level = True
    default_metric = "f1"
    greater_is_better = True

    options_class = TokenClassificationTaskConfig

    # ---- labels and data checks -------------------------------------------------------------
    def fit_labels(self, train: list[Example]) -> None:
        """Config labels when given, else every training tag in natural order.

        Fitted labels hold both tags of each IOB pair (``B-X`` and ``I-X``) when either is seen,
        so a small training sample does not make the other one "unknown" in dev. With
        ``label_all_subwords``, config labels must hold the ``I-X`` of each ``B-X``.
        """
        if self.config.labels:
            self.labels = list(self.config.labels)
            if self.options.label_all_subwords:
                missing = sorted({inside_of(t) for t in self.labels} - set(self.labels))
                if missing:
                    raise ConfigError(
                        f"label_all_subwords needs the inside tag of every B- tag; add "
                        f"{', '.join(missing)} to the labels",
                        field=f"tasks.{self.name}.labels",
                    )
            return
        tags = [t for ex in train if ex.label is not None for t in tags_of(ex)]
        # IOB tags come in pairs: a small training sample may hold B-MISC but never I-MISC (every
        # MISC entity one word long), and the dev set's I-MISC must not then be "unknown".
        tags += [paired(t) for t in tags]
        self.labels = sort_labels(tags)
        if not self.labels:
            raise DataError(f"task {self.name!r}: no tags in train; label the training data")


    @classmethod
    def example_inputs(cls) -> list[Example]:
        return [Example(["Alice", "visited", "unbelievably", "Zaphod"], label=["B-PER", "O", "O", "B-PER"]),
                Example(["Paris"], label=["B-LOC"]), Example(["is", "big"], label=["O", "O"])]

    def check(self, examples: list[Example], split: str) -> None:
        """Reject empty or paired inputs, tag-count mismatches, unknown tags and (outside
        prediction) missing tags."""
        known = set(self.labels or [])
        drop_unseen(self, examples, split,
                    lambda ex: next((t for t in tags_of(ex) if t not in known), None))
        for ex in examples:
            check_text(ex)
            if ex.text_pair is not None:
                raise DataError(
                    f"{at(ex)}token classification takes one word list; this example has a "
                    "text_pair (pairs are for sequence-level tasks)"
                )
            if ex.label is None:
                if split not in UNLABELLED_SPLITS:
                    raise missing_label_error(ex, split)
                continue
            words, tags = words_of(ex), tags_of(ex)
            if len(words) != len(tags):
                raise DataError(f"{at(ex)}{len(words)} tokens but {len(tags)} tags")
            for i, tag in enumerate(tags):
                if tag not in known:
                    raise unknown_label_error(ex, tag, split, self, noun="tag", where=token_where(ex, i))

    # ---- features ---------------------------------------------------------------------------
    def encode(self, example: Example, tokenizer: Any) -> Features:
        """Subword inputs plus ``word_ids`` (None for special tokens), ``n_words`` and, when the
        example is tagged, ``labels`` aligned to subwords (-100 where the loss should not look)."""
        words = words_of(example)
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        try:
            word_ids = list(enc.word_ids())
        except (AttributeError, ValueError) as exc:
            raise ConfigError(
                "token_classification needs a fast tokenizer that reports word_ids(); "
                f"this encoder's tokenizer does not ({exc})",
                field="encoder.name_or_path",
            ) from None
        feats: Features = {
            k: list(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        feats["word_ids"] = word_ids
        feats["n_words"] = len(words)
        if example.label is not None:
            feats["labels"] = self._align(example, word_ids)
        return feats

    def encode_batch(self, examples: list[Example], tokenizer: Any) -> list[Features]:
        """``encode`` of many examples with one tokenizer call."""
        if type(self).encode is not TokenClassificationTask.encode or not examples:
            return super().encode_batch(examples, tokenizer)
        words = [words_of(e) for e in examples]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        out: list[Features] = []
        for i, ex in enumerate(examples):
            feats: Features = {k: list(enc[k][i]) for k in keys}
            feats["word_ids"] = list(enc.word_ids(i))
            feats["n_words"] = len(words[i])
            if ex.label is not None:
                feats["labels"] = self._align(ex, feats["word_ids"])
            out.append(feats)
        return out

    def _align(self, example: Example, word_ids: list[int | None]) -> list[int]:
        labels = self.labels or []
        index = {t: i for i, t in enumerate(labels)}
        tags = tags_of(example)
        n_words = len(words_of(example))
        if len(tags) != n_words:
            raise DataError(f"{at(example)}{n_words} tokens but {len(tags)} tags")
        out: list[int] = []
        previous: int | None = None
        for w in word_ids:
            if w is None:
                out.append(IGNORE_INDEX)
            elif w != previous:
                out.append(self._tag_id(example, tags, w, index))
            elif self.options.label_all_subwords:
                out.append(index.get(inside_of(tags[w]), self._tag_id(example, tags, w, index)))
            else:
                out.append(IGNORE_INDEX)
            previous = w
        return out

    @staticmethod
    def _tag_id(example: Example, tags: list[str], w: int, index: dict[str, int]) -> int:
        if tags[w] not in index:
            raise DataError(f"{at(example)}tag '{tags[w]}' is not one of: {', '.join(index)}")
        return index[tags[w]]

    def collate(self, features: list[Features], pad_token_id: int) -> Batch:
        batch = collate_inputs(features, pad_token_id)
        if all("labels" in f for f in features):
            batch["labels"] = pad_sequences([f["labels"] for f in features], IGNORE_INDEX)  # (B, T)
        # Kept as Python lists: decode maps subword predictions back to words with them.
        batch["word_ids"] = [f["word_ids"] for f in features]
        batch["n_words"] = [f["n_words"] for f in features]
        return batch

    # ---- model ------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        if not self.labels:
            raise RuntimeError(f"task {self.name!r}: call fit_labels or load_state before build_head")
        return Head(hidden_size, len(self.labels), dropout, token_level=True)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy over labelled subwords. logits (B, T, C), labels (B, T) with -100."""
        labels = batch["labels"]
        if not bool((labels != IGNORE_INDEX).any()):
            # Every position ignored (all words truncated away): the mean would be 0/0 = NaN.
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )  # (B*T, C) vs (B*T,)

    def decode(self, logits: torch.Tensor, batch: Batch) -> list[dict[str, Any]]:
        labels = self.labels or []
        best = logits.detach().argmax(-1).cpu().tolist()  # (B, T)
        out = []
        for row, word_ids, n_words in zip(best, batch["word_ids"], batch["n_words"], strict=True):
            tags = [OUTSIDE] * n_words  # truncated words (and words with no subword) stay "O"
            seen: set[int] = set()
            for pos, w in enumerate(word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    tags[w] = labels[row[pos]]
            out.append({"tags": tags})
        return out

    def predict_output(
        self, logits: torch.Tensor, batch: Batch, examples: list[Example]
    ) -> list[dict[str, Any]]:
        """``decode``'s tags plus ``entities``: spans as the transformers token-classification
        pipeline gives them (``aggregation_strategy="first"``, which reads a word's first
        subword as polytask does): ``entity``, ``start``, ``end`` (characters in the input
        string, or in the words joined by single spaces), ``text`` and ``score`` (the mean over
        the span's words of the probability of their tag)."""
        preds = self.decode(logits, batch)
        probs = logits.detach().float().softmax(-1).cpu()  # (B, T, C)
        best = probs.max(-1).values.tolist()  # (B, T) probability of each subword's best tag
        for pred, row, word_ids, ex in zip(preds, best, batch["word_ids"], examples, strict=True):
            scores = [1.0] * len(pred["tags"])  # truncated words: "O" by rule
            seen: set[int] = set()
            for pos, w in enumerate(word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    scores[w] = float(row[pos])
            pred["entities"] = entity_spans(ex.text, pred["tags"], scores)
        return preds

    def metrics(self, predictions: list[dict[str, Any]], examples: list[Example]) -> dict[str, float]:
        gold = [tags_of(ex) for ex in examples]
        pred = [p["tags"] for p in predictions]
        scores = M.entity_scores(gold, pred)
        scores["token_accuracy"] = M.token_accuracy(gold, pred)
        return scores

    # ---- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "options": asdict(self.options)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = state.get("labels")
        if "options" in state:
            self.check_options(state["options"])


def token_where(example: Example, i: int) -> str | None:
    """``file:line`` of the example's ``i``-th token when the reader recorded token lines (CoNLL
    files do), else None (the example's own ``where`` is named)."""
    lines = example.meta.get("token_lines") if example.meta else None
    if not lines or i >= len(lines) or not example.where:
        return None
    path = example.where.rsplit(":", 1)[0]
    return f"{path}:{lines[i]}"
