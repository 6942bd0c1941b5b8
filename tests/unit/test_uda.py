"""UDA consistency training (Xie et al. 2020): the loss, its mask, training-signal annealing, and
the loop: it trains, resumes exactly, and refuses what it cannot do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.training import checkpoint as ckpt
from polytask.training.consistency import consistency_loss, tsa_loss, tsa_threshold
from polytask.training.loop import read_metrics, train
from tests.conftest import ctrl_c_at
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl


def test_consistency_loss_is_zero_when_the_predictions_agree() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    assert consistency_loss(logits, logits.clone(), temperature=1.0, threshold=0.0).item() == pytest.approx(0, abs=1e-7)
    other = torch.tensor([[-1.0, 2.0], [0.3, 0.5]])
    assert consistency_loss(logits, other, 1.0, 0.0).item() > 0.1


def test_confidence_mask_and_gradient_through_the_copy_only() -> None:
    orig = torch.tensor([[3.0, 0.0], [0.1, 0.0]], requires_grad=True)  # confident, unsure (p 0.52)
    aug = torch.tensor([[0.0, 3.0], [0.0, 3.0]], requires_grad=True)
    loss = consistency_loss(orig, aug, temperature=0.4, threshold=0.8)
    # Only the first original counts: KL(sharpened p(orig_0) || p(aug_0)) / 2.
    p = torch.softmax(orig[0].detach() / 0.4, -1)
    expected = (p * (p.log() - torch.log_softmax(aug[0].detach(), -1))).sum() / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert orig.grad is None and aug.grad[1].abs().sum() == 0 and aug.grad[0].abs().sum() > 0


def test_training_signal_annealing() -> None:
    assert tsa_threshold("linear", 0.0, 4) == pytest.approx(0.25) and tsa_threshold("linear", 1.0, 4) == 1.0
    assert tsa_threshold("exp", 0.0, 2) == pytest.approx(0.5 + 0.5 * math.exp(-5))
    assert tsa_threshold("log", 0.5, 2) == pytest.approx(0.5 + 0.5 * (1 - math.exp(-2.5)))
    assert tsa_threshold("none", 0.0, 2) == 1.0
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.1]])  # p(correct=0): 0.98, 0.475
    labels = torch.tensor([0, 0])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert tsa_loss(logits, labels, 0.9).item() == pytest.approx(ce[1].item())  # the learnt one is left out
    assert tsa_loss(logits, labels, 1.0).item() == pytest.approx(ce.mean().item())


def _raw(tmp_path: Path, encoder: Path, out: str, uda: dict | None = None) -> dict:
    data = write_toy_jsonl(tmp_path / "data")
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(t for t, _ in toy_texts(40, seed=11)) + "\n")
    raw = toy_config(encoder, data, tmp_path / out, epochs=2, log_every=1)
    raw["tasks"][0]["augment"] = {"copies": 0, "p": 1.0, "ops": [{"type": "random_swap", "alpha": 0.3}]}
    raw["tasks"][0]["unlabeled"] = {"path": str(pool), "uda": uda or {"ratio": 2, "threshold": 0.0}}
    return raw


def test_uda_trains_and_resumes_exactly(tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw(tmp_path, tiny_encoder_dir, "a")
    result = train(parse_config(raw))
    assert result.steps == 16
    plain = {**raw, "output_dir": str(tmp_path / "plain"), "tasks": [{**raw["tasks"][0], "unlabeled": None}]}
    train(parse_config(plain))
    with_uda = [r["loss"] for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    without = [r["loss"] for r in read_metrics(tmp_path / "plain") if r["split"] == "train"]
    assert with_uda[0] != pytest.approx(without[0])  # TSA drops confident examples; UDA moves the weights
    expected = ckpt.load_model_state(tmp_path / "a/checkpoints/last")

    ctrl_c_at(monkeypatch, 5)
    raw_b = {**raw, "output_dir": str(tmp_path / "b")}
    assert train(parse_config(raw_b)).interrupted
    monkeypatch.undo()
    train(parse_config(raw_b), resume=True)
    got = ckpt.load_model_state(tmp_path / "b/checkpoints/last")
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def test_uda_bad_input(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = _raw(tmp_path, tiny_encoder_dir, "r")
    raw["tasks"][0]["augment"] = None
    with pytest.raises(ConfigError, match="tasks.sent.unlabeled.uda needs tasks.sent.augment: consistency training"):
        train(parse_config(raw))
    raw = _raw(tmp_path, tiny_encoder_dir, "r2")
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"text": t, "label": str(i % 5)}) + "\n" for i, (t, _) in enumerate(toy_texts(20, 3))))
    raw["tasks"][0].update(type="regression", data={"train": str(scores), "dev": str(scores)}, augment=None)
    with pytest.raises(ConfigError):
        train(parse_config(raw))
