"""Stored-loss regression: tiny seeded runs whose per-step losses and final dev metrics are kept in
``stored_losses.json``, so a change to the training core that moves any number shows up here.

Every procedure that trains is covered: one task; two tasks one-task-per-step; all-tasks with
PCGrad and with GradNorm; uncertainty weighting; l2_sp; gradual_unfreeze; lora; freeze with
cached features; the BiLSTM encoder; contrastive few-shot; masked-LM pretraining. For every
procedure that resumes, a run stopped by Ctrl-C mid-way and resumed ends with the very weights of
the uninterrupted run (torchtune's "resume equals uninterrupted" test).

To re-record after an intended change (say why in the commit):
``POLYTASK_STORE_LOSSES=1 pytest tests/unit/test_stored_losses.py``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from polytask.config import parse_config
from polytask.training import checkpoint as ckpt
from polytask.training.loop import read_metrics, train
from tests.conftest import ctrl_c_at
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl, write_toy_ner

STORE = Path(__file__).with_name("stored_losses.json")
RECORD = os.environ.get("POLYTASK_STORE_LOSSES") == "1"
TOL = 1e-6


def _two_tasks(raw: dict[str, Any], ner: dict[str, str]) -> dict[str, Any]:
    raw["tasks"].append({"name": "ner", "type": "token_classification",
                         "data": {"train": ner["train"], "dev": ner["dev"], "format": "conll"}})
    return raw


def _scenario(name: str, raw: dict[str, Any], ner: dict[str, str]) -> dict[str, Any]:
    """The experiment of scenario ``name``, from the one-task toy config ``raw``."""
    raw = copy.deepcopy(raw)
    if name == "two_tasks_one_task":
        _two_tasks(raw, ner)
    elif name == "all_tasks_pcgrad":
        _two_tasks(raw, ner)["multitask"] = {"surgery": {"type": "pcgrad"}}
    elif name == "all_tasks_gradnorm":
        _two_tasks(raw, ner)["multitask"] = {"weighting": {"type": "gradnorm"}}
    elif name == "uncertainty":
        _two_tasks(raw, ner)["multitask"] = {"weighting": {"type": "uncertainty"}}
    elif name == "l2_sp":
        raw["transfer"] = {"strategy": "l2_sp", "options": {"l2_sp": {"alpha": 0.1}}}
    elif name == "gradual_unfreeze":
        raw["transfer"] = {"strategy": "gradual_unfreeze"}
    elif name == "lora":
        raw["transfer"] = {"strategy": "lora", "options": {"lora": {"r": 4}}}
    elif name == "freeze_cached":
        raw["transfer"] = {"strategy": "freeze"}
    elif name == "bilstm":
        raw["encoder"] = {"type": "bilstm", "options": {"embedding_dim": 16, "hidden_size": 16}}
    elif name == "contrastive":
        raw["transfer"] = {"strategy": ["contrastive_few_shot", "full"],
                           "options": {"contrastive_few_shot": {"num_iterations": 2, "batch_size": 8}}}
    elif name != "one_task":
        raise KeyError(name)
    return raw


TRAIN_SCENARIOS = ["one_task", "two_tasks_one_task", "all_tasks_pcgrad", "all_tasks_gradnorm", "uncertainty",
                   "l2_sp", "gradual_unfreeze", "lora", "freeze_cached", "bilstm", "contrastive"]
STOP_AT = 5  # mid-epoch (8 steps per epoch one-task; all-tasks epochs are as long)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("stored_data")
    return {"toy": write_toy_jsonl(root / "toy"), "ner": write_toy_ner(root / "ner")}


def _raw(name: str, data: dict[str, dict[str, str]], encoder_dir: Path, out: Path) -> dict[str, Any]:
    base = toy_config(encoder_dir, data["toy"], out, epochs=2, log_every=1)
    return _scenario(name, base, data["ner"])


def _trace(run: Path) -> dict[str, Any]:
    """Per-step training losses (and task weights), per-evaluation dev metrics."""
    records = read_metrics(run)
    steps = [{k: v for k, v in r.items() if k == "loss" or k.startswith("weight/")}
             for r in records if r["split"] == "train"]
    dev = [{k: v for k, v in r.items() if k not in ("split", "epoch", "time")} for r in records if r["split"] == "dev"]
    return {"train": steps, "dev": dev}


def _stored() -> dict[str, Any]:
    return json.loads(STORE.read_text(encoding="utf-8")) if STORE.is_file() else {}


def _check_or_record(name: str, got: dict[str, Any]) -> None:
    if RECORD:
        stored = _stored()
        stored[name] = got
        STORE.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    expected = _stored().get(name)
    assert expected is not None, f"no stored values for {name}; record them with POLYTASK_STORE_LOSSES=1"
    _assert_close(got, expected, name)


def _assert_close(got: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for k in expected:
            _assert_close(got[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{where}: {len(got)} entries, stored {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _assert_close(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=TOL, rel=0), f"{where}: {got!r} != stored {expected!r}"
    else:
        assert got == expected, f"{where}: {got!r} != stored {expected!r}"


@pytest.mark.parametrize("name", TRAIN_SCENARIOS)
def test_stored_losses_and_resume(
    name: str, data: dict[str, dict[str, str]], tiny_encoder_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = _raw(name, data, tiny_encoder_dir, tmp_path / "a")
    result = train(parse_config(raw))
    trace = _trace(tmp_path / "a")
    trace["final_dev"] = {k: v for k, v in result.dev.items()}
    trace["steps"] = result.steps
    _check_or_record(name, trace)
    expected = ckpt.load_model_state(tmp_path / "a/checkpoints/last")

    # Stopped by Ctrl-C at step STOP_AT, then resumed: the very same final weights and dev metrics.
    ctrl_c_at(monkeypatch, STOP_AT, total=result.steps)  # the loop's bar, not a phase's
    raw_b = {**raw, "output_dir": str(tmp_path / "b")}
    first = train(parse_config(raw_b))
    assert first.interrupted and first.steps == STOP_AT
    monkeypatch.undo()
    second = train(parse_config(raw_b), resume=True)
    assert not second.interrupted and second.steps == result.steps
    got = ckpt.load_model_state(tmp_path / "b/checkpoints/last")
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), f"{name}: {k} differs after resume"
    assert second.dev == result.dev


def test_stored_pretraining_losses(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from polytask.pretrain.mlm import pretrain_mlm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in toy_texts(80, seed=5)) + "\n", encoding="utf-8")
    result = pretrain_mlm({"encoder": str(tiny_encoder_dir), "text": str(corpus), "output_dir": str(tmp_path / "p"),
                           "epochs": 2, "batch_size": 8, "lr": 1e-3, "log_every": 1, "seed": 3, "progress": False})
    records = read_metrics(tmp_path / "p")
    trace = {"train": [{"loss": r["loss"]} for r in records if r["split"] == "train"],
             "perplexity": [r["perplexity"] for r in records if r["split"] == "eval"],
             "steps": result.steps}
    _check_or_record("mlm_pretraining", trace)
