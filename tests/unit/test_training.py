"""The training loop on a tiny model: learning, run layout, save/load identity, exact resume,
Ctrl-C, early stopping, and the errors a user can hit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

import polytask
from polytask.config import parse_config
from polytask.errors import CheckpointError, ConfigError, DataError
from polytask.runs import load_run
from polytask.training import checkpoint as ckpt
from polytask.training import logging as tlog
from polytask.training.loop import read_metrics, train
from tests.unit.toy import toy_config, toy_texts, write_toy_ner


def test_learns_and_writes_a_complete_run(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run"))
    result = train(cfg)
    assert result.metric == "sent/accuracy"
    assert result.best_metric >= 0.9, result.dev
    assert result.steps == 3 * 8  # 64 examples / batch 8, 3 epochs
    run = tmp_path / "run"
    for rel in ("config.yaml", "metrics.jsonl", "results.json", "encoder/tokenizer.json",
                "checkpoints/best/model.safetensors", "checkpoints/last/optimizer.safetensors",
                "checkpoints/last/encoder/config.json"):
        assert (run / rel).exists(), rel
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    records = read_metrics(run)
    dev = [r for r in records if r["split"] == "dev"]
    assert [r["step"] for r in dev] == [8, 16, 24]
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0]


def test_saved_model_reproduces_the_metrics_measured_in_training(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]
) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=1))
    train(cfg)
    from polytask.evaluation.run_eval import evaluate_run

    meta = ckpt.load_meta(tmp_path / "run/checkpoints/best")
    results, _ = evaluate_run(tmp_path / "run")  # reloads from disk, scores the dev split
    assert results["sent"]["accuracy"] == meta["metrics"]["sent/accuracy"]
    assert results["sent"]["loss"] == pytest.approx(meta["metrics"]["sent/loss"], abs=1e-6)

    predictor = polytask.load(str(tmp_path / "run"))
    texts = [t for t, _ in toy_texts(6, seed=9)]
    a, b = predictor.predict(texts), polytask.load(str(tmp_path / "run")).predict(texts)
    assert a == b and set(a[0]) == {"label", "probs"} and set(a[0]["probs"]) == {"neg", "pos"}
    one_by_one = [predictor.predict([t])[0] for t in texts]  # padding must not change outputs
    for x, y in zip(a, one_by_one, strict=True):
        assert x["label"] == y["label"]
        assert x["probs"]["pos"] == pytest.approx(y["probs"]["pos"], abs=1e-5)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_model_state(run / "checkpoints/last")


@pytest.mark.parametrize("stop_at", [5, 8])  # mid-epoch, and exactly at an epoch end
def test_resume_after_ctrl_c_equals_uninterrupted(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str], monkeypatch: pytest.MonkeyPatch, stop_at: int
) -> None:
    train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "a", epochs=2)))
    expected = _final_weights(tmp_path / "a")

    original = tlog.Progress.update

    def interrupt(self, step, **kw):  # noqa: ANN001, ANN003, ANN202
        original(self, step, **kw)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    monkeypatch.setattr(tlog.Progress, "update", interrupt)
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "b", epochs=2))
    first = train(cfg)
    assert first.interrupted and first.steps == stop_at
    saved = json.loads((tmp_path / "b/checkpoints/last/trainer_state.json").read_text())
    assert saved["loop"]["step"] == stop_at
    monkeypatch.setattr(tlog.Progress, "update", original)

    second = train(cfg, resume=True)
    assert not second.interrupted and second.steps == 16
    got = _final_weights(tmp_path / "b")
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    a_dev = [r for r in read_metrics(tmp_path / "a") if r["split"] == "dev"][-1]
    b_dev = [r for r in read_metrics(tmp_path / "b") if r["split"] == "dev"][-1]
    assert a_dev["sent/loss"] == b_dev["sent/loss"]


def test_early_stopping(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    # A learning rate this small leaves the dev loss flat: no evaluation improves on the first.
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=5, lr=1e-12,
                                  eval_every=2, early_stopping_patience=2, metric="accuracy"))
    result = train(cfg)
    assert result.stopped_early and result.steps == 6 and result.best_step == 2


def test_max_steps_ending_mid_epoch_scores_the_final_weights(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]
) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=12))  # 8 steps an epoch
    result = train(cfg)
    assert [r["step"] for r in read_metrics(tmp_path / "run") if r["split"] == "dev"] == [8, 12]
    assert result.steps == 12 and ckpt.load_meta(tmp_path / "run/checkpoints/last")["step"] == 12


def test_gradient_accumulation_counts_optimizer_steps(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=1, grad_accum_steps=3))
    assert train(cfg).steps == 3  # 8 batches in groups of 3, 3, 2


def test_token_classification_and_max_steps(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    paths = write_toy_ner(tmp_path / "ner")
    raw = toy_config(tiny_encoder_dir, paths, tmp_path / "run", max_steps=30, eval_every=15)
    raw["tasks"] = [{"name": "ner", "type": "token_classification", "data": {"train": paths["train"], "dev": paths["dev"]}}]
    result = train(parse_config(raw))
    assert result.steps == 30 and result.metric == "ner/f1"
    assert result.best_metric > 0.5, result.dev
    preds = polytask.load(str(tmp_path / "run")).predict(["the Alice movie"])
    assert len(preds[0]["tags"]) == 3


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=2))
    train(cfg)
    with pytest.raises(CheckpointError, match="already holds a run; use --resume to continue it, --overwrite"):
        train(cfg)
    assert train(cfg, overwrite=True).steps == 2


def test_resume_errors(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    raw = toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=2)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(parse_config(raw), resume=True)
    train(parse_config(raw))
    raw["tasks"][0]["name"] = "renamed"
    with pytest.raises(ConfigError, match="the 'tasks' section differs from the run's saved config"):
        train(parse_config(raw), resume=True)


def test_unknown_metric_fails_before_training(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", metric="acc"))
    with pytest.raises(ConfigError, match=r"metric 'sent/acc' is not produced by evaluation; choose one of: average, sent/accuracy"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unseen_dev_label_fails_before_training(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    with open(toy["dev"], "a") as fh:
        fh.write(json.dumps({"text": "meh movie", "label": "neutral"}) + "\n")
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run"))
    with pytest.raises(DataError, match=r"dev.jsonl:33.*'neutral'.*never seen in training"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_loading_a_non_run_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_run(tmp_path)
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_run(tmp_path / "missing")


def test_second_run_in_one_process_with_other_precision(tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str]) -> None:
    # Accelerate's process-wide state refuses a changed mixed_precision (or cpu) unless rebuilt.
    first = train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "a", max_steps=1)))
    result = train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "b", max_steps=1, mixed_precision="bf16")))
    assert first.steps == result.steps == 1
    # The second run really trained under its own settings: it wrote its checkpoint and its
    # weights moved from the first run's (same seed, same data; only the precision differs).
    from accelerate.state import AcceleratorState

    assert AcceleratorState().mixed_precision == "bf16"
    a, b = (ckpt.load_model_state(tmp_path / r / "checkpoints/last") for r in ("a", "b"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
