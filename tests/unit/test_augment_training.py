"""Augmentation in the training loop: new copies every epoch, the same after a resume, never in dev."""

from __future__ import annotations

from pathlib import Path

import torch

from polytask.config import parse_config
from polytask.training import checkpoint as ckpt
from polytask.training.loop import read_metrics, train
from polytask.training.run import build_run, epoch_features
from tests.conftest import ctrl_c_at
from tests.unit.toy import toy_config, write_toy_jsonl

AUGMENT = {"copies": 1, "p": 1.0, "ops": [{"type": "random_swap", "alpha": 0.3}]}


def _raw(tmp_path: Path, encoder: Path, out: str) -> dict:
    raw = toy_config(encoder, write_toy_jsonl(tmp_path / "data"), tmp_path / out, epochs=2)
    raw["tasks"][0]["augment"] = AUGMENT
    return raw


def test_each_epoch_trains_on_the_originals_and_new_copies(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    run = build_run(parse_config(_raw(tmp_path, tiny_encoder_dir, "run")))
    first = [f["input_ids"] for f in run.feats["sent"]["train"]]
    assert len(first) == 128 and run.plan.steps_per_epoch == 16  # 64 originals + 64 copies, batch 8
    assert len(run.feats["sent"]["dev"]) == 32  # dev is never augmented
    epoch_features(run, 1)
    second = [f["input_ids"] for f in run.feats["sent"]["train"]]
    assert first[:64] == second[:64]  # the originals stay
    assert first[64:] != second[64:]  # new copies


def test_augmented_run_resumes_exactly(tmp_path: Path, tiny_encoder_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    result = train(parse_config(_raw(tmp_path, tiny_encoder_dir, "a")))
    assert result.steps == 32
    expected = ckpt.load_model_state(tmp_path / "a/checkpoints/last")
    ctrl_c_at(monkeypatch, 20)
    raw = _raw(tmp_path, tiny_encoder_dir, "b")
    assert train(parse_config(raw)).interrupted
    monkeypatch.undo()
    train(parse_config(raw), resume=True)
    got = ckpt.load_model_state(tmp_path / "b/checkpoints/last")
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    losses = [r["loss"] for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    assert len(losses) == 4  # logged every 10 steps and at the end
