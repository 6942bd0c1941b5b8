"""Prediction from a saved run: batched, length-sorted, every task from one encoder pass.

Where inference time goes on a CPU, and what this module does about it:

- tokenising: the whole input list goes through the fast (Rust) tokenizer in one call;
- padding: inputs are sorted by token count and batched in that order, so each batch is padded
  only to its own longest input (real sentences are far shorter than ``max_length``), then the
  outputs are put back in input order;
- autograd: forward passes run under ``torch.inference_mode()``;
- multi-task: the sequence-level tasks of a run share one encoder pass per batch (token-level
  tasks take word lists, so they get their own pass).

``BasePredictor`` holds all of that; a backend only says how to turn a padded batch into logits
(``Predictor``: PyTorch; ``polytask.serving.onnx_backend.OnnxPredictor``: ONNX Runtime).
Dimension letters: B batch, T tokens, C classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from polytask import precision as precisions
from polytask.data.example import Example
from polytask.errors import ConfigError, DataError
from polytask.runs import LoadedRun, load_run
from polytask.tasks.base import Features, Task

PREDICTION_KEY = "prediction"

BACKENDS = ("auto", "torch", "onnx")


class BasePredictor(ABC):
    """Inputs to predictions, whatever runs the model.

    Args:
        tasks: the run's tasks by name (their label sets loaded).
        tokenizer: the encoder's fast tokenizer.
        batch_size: inputs per forward pass (the public ``batch_size`` attribute).
    """

    def __init__(self, tasks: dict[str, Task], tokenizer: Any, batch_size: int = 64):
        self.tasks = tasks
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id or 0
        self.batch_size = batch_size

    @abstractmethod
    def _logits(self, batch: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        """Logits of each task in ``names`` for one padded batch (one encoder pass)."""

    @property
    def labels(self) -> dict[str, list[str] | None]:
        return {n: t.labels for n, t in self.tasks.items()}

    def predict(
        self,
        texts: list[str] | list[list[str]] | list[tuple[str, str]],
        task: str | list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict raw inputs.

        Args:
            texts: strings, ``(text, text_pair)`` tuples for pair tasks, or word lists for token
                classification (a plain string is split on whitespace there).
            task: one task, several, or None for every task of the run.
        Returns:
            one dict per input, in input order; a single-task run returns that task's prediction
            dict (e.g. ``{"label": "pos", "probs": {...}}``), a multi-task run ``{task: prediction}``.
        """
        names = self.task_names(task)
        examples = [self._example(t, i) for i, t in enumerate(texts)]
        out = self.predict_examples(examples, names)
        if isinstance(task, str) or (task is None and len(names) == 1):
            return [row[names[0]] for row in out]
        return out

    def predict_examples(self, examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
        """Predictions per example as ``{task: prediction}``, in input order.

        Tasks are grouped by what they read (words or text) and their ``max_length``; each
        group is tokenised once and answered with one encoder pass per batch.
        """
        out: list[dict[str, Any]] = [{} for _ in examples]
        if not examples:
            return out
        groups: dict[tuple[bool, int, str | None], list[str]] = {}
        for n in names:
            t = self.tasks[n]
            groups.setdefault((t.token_level, t.max_length, None if t.shares_features else n), []).append(n)
        for (token_level, _, _), group in groups.items():
            exs = [_as_words(e) if token_level else _as_text(e) for e in examples]
            feats = self._features(self.tasks[group[0]], exs)
            preds = self._predict_features(group, feats, examples)
            for n in group:
                for row, p in zip(out, preds[n], strict=True):
                    row[n] = p
        return out

    def task_names(self, task: str | list[str] | None) -> list[str]:
        """The tasks to answer: all for None; an unknown name is a DataError listing the run's."""
        names = list(self.tasks) if task is None else ([task] if isinstance(task, str) else list(task))
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise DataError(f"unknown task {unknown[0]!r}; this run has: {', '.join(self.tasks)}")
        return names

    # ---- internals ------------------------------------------------------------------------------
    def _features(self, task: Task, examples: list[Example]) -> list[Features]:
        """Encoder inputs of ``examples`` as ``task`` reads them (its ``encode_batch``: one
        tokenizer call for the built-in tasks)."""
        return task.encode_batch([_unlabelled(e) for e in examples], self.tokenizer)

    def _predict_features(
        self, names: list[str], features: list[Features], examples: list[Example]
    ) -> dict[str, list[dict[str, Any]]]:
        """Length-sorted batches (longest first), one forward pass each, outputs in input order.

        ``examples`` are the inputs as given (each task's ``predict_output`` may read them)."""
        order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
        collate = self.tasks[names[0]].collate
        out: dict[str, list[Any]] = {n: [None] * len(features) for n in names}
        size = max(1, int(self.batch_size))
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            batch = collate([features[i] for i in idx], self.pad_id)
            logits = self._logits(batch, names)
            for n in names:
                preds = self.tasks[n].predict_output(logits[n], batch, [examples[i] for i in idx])
                for i, pred in zip(idx, preds, strict=True):
                    out[n][i] = pred
        return out

    @staticmethod
    def _example(item: Any, i: int) -> Example:
        if isinstance(item, str) and not item.strip() or isinstance(item, list) and not item:
            raise DataError(f"input {i} is empty; every input needs some text")
        if isinstance(item, tuple):
            if len(item) != 2:
                raise DataError(f"a pair input must be (text, text_pair); got {len(item)} items")
            return Example(text=item[0], text_pair=item[1])
        if isinstance(item, list):
            return Example(text=[str(w) for w in item])
        if not isinstance(item, str):
            raise DataError(f"inputs must be strings, (text, pair) tuples or word lists; got {type(item).__name__}")
        return Example(text=item)


class Predictor(BasePredictor):
    """A loaded run that answers texts with PyTorch.

    Args:
        run: the loaded model, tasks and config.
        device: where to run (the GPU when present, by default).
        batch_size: examples per forward pass.
        num_threads: ``torch.set_num_threads`` for this process (None leaves torch's default;
            the setting is process-wide, as in torch).
        precision: ``auto`` (bf16 autocast where the device computes bf16 natively, fp32
            elsewhere; see ``polytask.precision``), ``no`` (fp32), ``bf16`` or ``fp16``. The
            weights stay fp32; the resolved choice is the ``precision`` attribute.
    """

    def __init__(
        self, run: LoadedRun, device: str | None = None, batch_size: int = 64, num_threads: int | None = None,
        precision: str = "auto",
    ):
        super().__init__(run.tasks, run.model.encoder.tokenizer, batch_size)
        self.run = run
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = run.model.to(self.device).eval()
        if precision not in precisions.CHOICES:
            raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(precisions.CHOICES)}",
                              field="precision")
        self.precision = precisions.resolve(precision, self.device.type)
        if num_threads is not None:
            if num_threads < 1:
                raise ConfigError(f"num_threads must be 1 or more, got {num_threads}", field="num_threads")
            torch.set_num_threads(num_threads)

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        checkpoint: str = "best",
        device: str | None = None,
        batch_size: int = 64,
        num_threads: int | None = None,
        precision: str = "auto",
    ) -> BasePredictor:
        """The PyTorch predictor of a run, or the ONNX one when ``run_dir`` is an ONNX export."""
        from polytask.serving.onnx_backend import is_onnx_export

        if is_onnx_export(run_dir):
            return load_predictor(run_dir, checkpoint, device, "onnx", batch_size, num_threads)
        return cls(load_run(run_dir, checkpoint), device=device, batch_size=batch_size, num_threads=num_threads,
                   precision=precision)

    def _logits(self, batch: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            moved = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with precisions.autocast(self.precision, self.device.type):
                return self.model.forward_all(moved, names)  # {task: (B, C) or (B, T, C)}; heads in fp32


def load_predictor(
    path: str | Path,
    checkpoint: str = "best",
    device: str | None = None,
    backend: str = "auto",
    batch_size: int = 64,
    num_threads: int | None = None,
    precision: str = "auto",
) -> BasePredictor:
    """A predictor for a run directory or an ONNX export folder.

    Args:
        path: a run directory, a checkpoint folder, or a folder written by ``export_onnx``.
        checkpoint: ``best`` (falls back to ``last``) or ``last``, for run directories.
        device: ``cpu``, ``cuda``...; the GPU when one is present otherwise.
        backend: ``torch``; ``onnx`` (ONNX Runtime; a run directory is exported once into
            ``<run>/onnx-<checkpoint>`` and reused); ``auto``: ``onnx`` for an ONNX export folder,
            ``torch`` otherwise.
        batch_size: inputs per forward pass.
        num_threads: CPU threads (torch's ``set_num_threads``, or ONNX Runtime's intra-op threads);
            None keeps the library default.
        precision: the torch backend's ``auto``/``no``/``bf16``/``fp16`` (see ``Predictor``); the
            ONNX backend runs its exported fp32 (or int8) graph whatever this says.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}", field="backend")
    from polytask.serving.onnx_backend import OnnxPredictor, is_onnx_export

    if backend == "auto":
        backend = "onnx" if is_onnx_export(path) else "torch"
    if backend == "torch":
        if is_onnx_export(path):
            raise ConfigError(
                f"{path} is an ONNX export; load it with backend='onnx' (or 'auto'), or give the "
                "run directory it was exported from for the torch backend",
                field="backend",
            )
        return Predictor(load_run(path, checkpoint), device=device, batch_size=batch_size, num_threads=num_threads,
                         precision=precision)
    return OnnxPredictor.from_path(path, checkpoint, device=device, batch_size=batch_size, num_threads=num_threads)


def prediction_records(
    records: list[dict[str, Any]], rows: list[dict[str, Any]], key: str = PREDICTION_KEY
) -> list[dict[str, Any]]:
    """Output records of ``polytask predict``: each input record unchanged, plus ``key`` holding
    ``{task: prediction}`` (the same shape for one task or many).

    Args:
        records: the input records as read (``read_input_records``).
        rows: ``predict_examples``' output, one ``{task: prediction}`` per record.
        key: the field the predictions go in; DataError when an input record already has it
            (input fields are never overwritten).
    """
    check_prediction_key(records, key)
    return [{**rec, key: row} for rec, row in zip(records, rows, strict=True)]


def check_prediction_key(records: list[dict[str, Any]], key: str) -> None:
    """DataError when an input record already has the field ``key`` (naming the first record)."""
    for i, rec in enumerate(records, 1):
        if key in rec:
            raise DataError(
                f"input record {i} already has a field {key!r}; predictions never overwrite "
                f"input fields: choose another with --key (e.g. --key {key}_polytask)"
            )


def _as_words(e: Example) -> Example:
    if isinstance(e.text, str):
        return Example(text=e.text.split(), where=e.where, meta=e.meta)
    return e


def _as_text(e: Example) -> Example:
    if isinstance(e.text, list):
        return Example(text=" ".join(e.text), text_pair=e.text_pair, where=e.where, meta=e.meta)
    return e


def _unlabelled(e: Example) -> Example:
    return Example(text=e.text, text_pair=e.text_pair, where=e.where, meta=e.meta)
