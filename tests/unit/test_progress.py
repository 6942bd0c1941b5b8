"""What a user sees while training: a start-up summary, a loss from the first step, the right epoch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from polytask.config import parse_config
from polytask.training import logging as tlog
from polytask.training.loop import train
from tests.unit.toy import toy_config


def test_startup_summary_and_a_loss_from_the_first_step(
    tmp_path: Path, tiny_encoder_dir: Path, toy, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    notes: list[str] = []
    updates: list[dict] = []
    monkeypatch.setattr(tlog.Progress, "note", lambda self, text: notes.append(text))
    original = tlog.Progress.update

    def spy(self, step, **kw):  # noqa: ANN001, ANN003, ANN202
        updates.append({"step": step, **kw})
        original(self, step, **kw)

    monkeypatch.setattr(tlog.Progress, "update", spy)
    train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=2, progress=True)))  # log_every 10; a drawn bar
    summary = notes[0]
    assert "task sent (classification): 64 train, 32 dev examples, 2 labels (neg, pos)" in summary
    assert "16 steps (8 per epoch, one task), device cpu, precision fp32 (train.mixed_precision: auto), 1 process(es)" in summary
    first = updates[0]
    assert first["step"] == 1 and math.isfinite(first["loss"]) and first["epoch"] == 1  # not nan, not epoch 0
    assert updates[8]["epoch"] == 2
