"""Prediction from a saved run: batched, length-sorted, every task from one encoder pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polytask.data.example import Example
from polytask.errors import DataError
from polytask.evaluation.evaluate import predict_features
from polytask.export.save_load import LoadedRun, load_run


class Predictor:
    """A loaded run that answers texts.

    Args:
        run: the loaded model, tasks and config.
        device: where to run (the GPU when present, by default).
        batch_size: examples per forward pass.
    """

    def __init__(self, run: LoadedRun, device: str | None = None, batch_size: int = 64):
        self.run = run
        self.tasks = run.tasks
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = run.model.to(self.device).eval()
        self.tokenizer = run.model.encoder.tokenizer
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best", device: str | None = None) -> Predictor:
        return cls(load_run(run_dir, checkpoint), device=device)

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
            one dict per input; a single-task run returns that task's prediction dict (e.g.
            ``{"label": "pos", "probs": {...}}``), a multi-task run ``{task: prediction}``.
        """
        names = self.task_names(task)
        examples = [self._example(t, i) for i, t in enumerate(texts)]
        out = self.predict_examples(examples, names)
        if isinstance(task, str) or (task is None and len(names) == 1):
            return [row[names[0]] for row in out]
        return out

    def predict_examples(self, examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
        """Predictions per example as ``{task: prediction}``; token and sequence tasks are
        encoded separately (their inputs differ), sequence tasks share one encoder pass."""
        out: list[dict[str, Any]] = [{} for _ in examples]
        groups: dict[bool, list[str]] = {}
        for n in names:
            groups.setdefault(self.tasks[n].token_level, []).append(n)
        for token_level, group in groups.items():
            first = self.tasks[group[0]]
            exs = [_as_words(e) if token_level else _as_text(e) for e in examples]
            feats = [first.encode(_unlabelled(e), self.tokenizer) for e in exs]
            preds, _ = predict_features(
                self.model, {n: self.tasks[n] for n in group}, feats, self.pad_id, self.batch_size, self.device
            )
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
