"""Tasks on the same inputs share the pass: one stream, one encoder call per batch, every head.

When several tasks label the same sentences (an intent and its slots; POS, chunks and entities
of one CoNLL file), training them as separate datasets encodes every sentence once per task and
never adds their losses on one example. A *stream* joins them, as joint models do (JointBERT,
Chen et al. 2019, https://arxiv.org/abs/1902.10909): its rows are the distinct examples of the
group; each training batch of the stream is encoded once, and every task's head and loss run on
the rows it labels (a row a task does not label is masked out of that task's loss, not dropped).

Which tasks share (``multitask.shared_inputs``): ``auto`` (the default) joins tasks whose
training data is the same file read with the same text columns; a list of task names, or a list
of such lists, names the groups; ``off`` joins none.

Rows are matched by their words (and pair text): the k-th occurrence of a text in one task is
the k-th occurrence of it in another. A row's encoder input is the features of its first task in
the group with token-level tasks first (token tasks need their own subword alignment; a sequence
task only pools the states).

Dimension letters: B batch, T tokens, H hidden size.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from polytask.encoders.base import EncoderOutput
from polytask.errors import ConfigError
from polytask.tasks.base import collate_inputs

SEPARATOR = "+"  # stream name: the task names joined; task names never hold it (schema pattern)


@dataclass
class Stream:
    """One stream of shared-input tasks.

    Attributes:
        name: the tasks' names joined by ``+`` (the name the schedule knows it by).
        tasks: the group's tasks, token-level tasks first.
        rows: per row, task -> index of its training feature in that task's split.
        inputs: per row, the encoder-input features (what the schedule batches by length).
    """

    name: str
    tasks: list[str]
    rows: list[dict[str, int]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)


def _data_key(tcfg: Any) -> tuple | None:
    d = tcfg.data
    if d.train is None:
        return None
    c = d.columns
    return (d.train, d.format, d.delimiter, d.header, c.text, c.text_pair, c.tokens, d.limit, d.docstart)


def find_groups(cfg: Any) -> list[list[str]]:
    """The groups of task names that share their inputs (each of two or more tasks).

    Raises:
        ConfigError: an unknown task, a task in two groups, or a group of one.
    """
    setting = cfg.multitask.shared_inputs
    names = [t.name for t in cfg.tasks]
    field_name = "multitask.shared_inputs"
    if setting == "off":
        return []
    if setting == "auto":
        by_key: dict[tuple, list[str]] = {}
        for tcfg in cfg.tasks:
            key = _data_key(tcfg)
            if key is not None:
                by_key.setdefault(key, []).append(tcfg.name)
        return [g for g in by_key.values() if len(g) > 1]
    groups = [list(setting)] if setting and isinstance(setting[0], str) else [list(g) for g in setting]
    seen: set[str] = set()
    for g in groups:
        if len(g) < 2:
            raise ConfigError(f"a shared_inputs group needs two or more tasks; got {g}", field=field_name)
        for t in g:
            if t not in names:
                raise ConfigError(f"shared_inputs names task {t!r}, which is not one of: {', '.join(names)}",
                                  field=field_name)
            if t in seen:
                raise ConfigError(f"task {t!r} is in two shared_inputs groups", field=field_name)
            seen.add(t)
    return groups


def _row_key(example: Any) -> tuple:
    text = example.text
    words = tuple(text.split()) if isinstance(text, str) else tuple(str(w) for w in text)
    return words, example.text_pair


def build_streams(cfg: Any, data: dict[str, Any], feats: dict[str, dict[str, list[dict]]]) -> dict[str, Stream]:
    """Every stream of ``cfg`` over the tasks' training examples and features.

    Args:
        cfg: the experiment (``multitask.shared_inputs``, the tasks' augment/unlabeled blocks).
        data: task -> TaskData (its training examples).
        feats: task -> split -> features.

    Raises:
        ConfigError: a shared task with ``augment`` or ``unlabeled`` (its inputs change per
            epoch or carry their own pass), or two token tasks that tokenise a row differently.
    """
    streams: dict[str, Stream] = {}
    by_name = {t.name: t for t in cfg.tasks}
    explicit = cfg.multitask.shared_inputs != "auto"
    for group in find_groups(cfg):
        lone = [t for t in group if not data[t].task.shares_inputs]
        if lone and explicit:
            raise ConfigError(f"task {lone[0]!r} (type {by_name[lone[0]].type}) cannot share an encoder pass with "
                              "other tasks; take it out of multitask.shared_inputs", field="multitask.shared_inputs")
        group = [t for t in group if t not in lone]  # auto: such tasks keep their own batches
        if len(group) < 2:
            continue
        for t in group:
            if by_name[t].augment is not None or by_name[t].unlabeled is not None:
                raise ConfigError(f"task {t!r} shares its inputs with {', '.join(g for g in group if g != t)} and "
                                  "sets augment or unlabeled; shared-input tasks train on the same examples, so "
                                  "leave those out or set multitask.shared_inputs: off",
                                  field=f"tasks.{t}")
        ordered = sorted(group, key=lambda t: not data[t].task.token_level)  # token tasks first, stable
        stream = Stream(SEPARATOR.join(group), ordered)
        index: dict[tuple, list[int]] = {}  # row key -> its rows, in order of occurrence
        for t in ordered:
            seen: Counter = Counter()
            for i, ex in enumerate(data[t].splits["train"]):
                key = _row_key(ex)
                k = seen[key]
                seen[key] += 1
                rows = index.setdefault(key, [])
                if k < len(rows):
                    stream.rows[rows[k]][t] = i
                else:
                    rows.append(len(stream.rows))
                    stream.rows.append({t: i})
        for r, row in enumerate(stream.rows):
            lead = next(t for t in ordered if t in row)
            inputs = feats[lead]["train"][row[lead]]
            for t in ordered:
                if t in row and t != lead and data[t].task.token_level \
                        and feats[t]["train"][row[t]]["input_ids"] != inputs["input_ids"]:
                    raise ConfigError(
                        f"tasks {lead!r} and {t!r} tokenise the training example at "
                        f"{data[t].splits['train'][row[t]].where or f'row {r}'} differently (max_length?); "
                        "token tasks that share a pass need the same subwords: give them the same max_length, "
                        "or set multitask.shared_inputs: off", field="multitask.shared_inputs")
            stream.inputs.append(inputs)
        streams[stream.name] = stream
    return streams


def schedule_feats(feats: dict[str, dict[str, list[dict]]], streams: dict[str, Stream]) -> dict[str, dict]:
    """What the schedule batches: every task outside a stream (its own dict, so new augmented
    copies show), and each stream as one entry of its rows' inputs."""
    shared = {t for s in streams.values() for t in s.tasks}
    out: dict[str, dict] = {n: f for n, f in feats.items() if n not in shared}
    for s in streams.values():
        out[s.name] = {"train": s.inputs}
    return out


def collate_stream(stream: Stream, idx: list[int], tasks: dict[str, Any], feats: dict[str, dict[str, list[dict]]],
                   pad_id: int, device: torch.device | None = None) -> dict[str, Any]:
    """A stream batch: the encoder inputs of rows ``idx`` and, under ``"tasks"``, each task's
    ``(rows, batch, width)``: the batch positions it labels (a (B_t,) long tensor), its own
    collated batch of them, and for a token task that batch's token width (its subwords are the
    stream's, so its logits are the stream's states cut to it; None for sequence tasks). A task
    that labels none of the rows is absent."""
    batch = collate_inputs([stream.inputs[r] for r in idx], pad_id)
    per_task = {}
    for t in stream.tasks:
        pos = [j for j, r in enumerate(idx) if t in stream.rows[r]]
        if pos:
            sub = tasks[t].collate([feats[t]["train"][stream.rows[idx[j]][t]] for j in pos], pad_id)
            if device is not None:
                sub = {k: v.to(device) if torch.is_tensor(v) else v for k, v in sub.items()}
            width = sub["input_ids"].shape[1] if tasks[t].token_level else None
            per_task[t] = (torch.tensor(pos, dtype=torch.long, device=device), sub, width)
    if device is not None:
        batch = {k: v.to(device) for k, v in batch.items()}
    batch["tasks"] = per_task
    return batch


def select_rows(enc: EncoderOutput, rows: torch.Tensor, width: int | None = None) -> EncoderOutput:
    """The encoder output of batch positions ``rows`` (B_t,), token axis cut to ``width``."""
    end = width if width is not None else enc.mask.shape[1]
    layers = None if enc.layers is None else [h[rows, :end] for h in enc.layers]
    return EncoderOutput(token_states=enc.token_states[rows, :end], mask=enc.mask[rows, :end],
                         pooled=enc.pooled[rows], layers=layers)
