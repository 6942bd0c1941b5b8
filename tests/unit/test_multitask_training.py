"""Two tasks of different kinds in one model: sampler-driven epochs, training, prediction."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import polytask
from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.multitask.samplers import build_sampler
from polytask.training.loop import train
from polytask.training.schedule import epoch_batches
from polytask.training.setup import prepare_tasks
from tests.unit.toy import toy_config, write_toy_jsonl, write_toy_ner


def two_tasks(tmp_path: Path, encoder: Path, sampler: dict | None, **train_kw) -> dict:  # noqa: ANN003
    sent = write_toy_jsonl(tmp_path / "sent")
    ner = write_toy_ner(tmp_path / "ner")
    raw = toy_config(encoder, sent, tmp_path / "run", **train_kw)
    raw["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
    if sampler is not None:
        raw["multitask"] = {"sampler": sampler}
    return raw


def _feats(cfg, tokenizer) -> dict:  # noqa: ANN001
    data = prepare_tasks(cfg)
    return {n: {s: [td.task.encode(e, tokenizer) for e in exs] for s, exs in td.splits.items()} for n, td in data.items()}




def test_epochs_follow_the_sampler(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from transformers import AutoTokenizer

    cfg = parse_config(two_tasks(tmp_path, tiny_encoder_dir, None))
    feats = _feats(cfg, AutoTokenizer.from_pretrained(tiny_encoder_dir))
    tc = cfg.train  # batch 8: sent 64 examples = 8 batches, ner 48 sentences = 6 batches
    plain = epoch_batches(feats, tc, 0)
    assert Counter(n for n, _ in plain) == {"sent": 8, "ner": 6}
    assert sorted(i for n, b in plain if n == "sent" for i in b) == list(range(64))  # each once

    only_sent = build_sampler("explicit", {"sent": 8, "ner": 6}, {"weights": {"sent": 1.0}})
    epoch = epoch_batches(feats, tc, 0, sampler=only_sent)
    assert [n for n, _ in epoch] == ["sent"] * 14  # same epoch length, cycling through sent
    assert Counter(i for _, b in epoch[:8] for i in b) == Counter(range(64))
    assert epoch[:8] != epoch[8:14] and all(len(b) == 8 for _, b in epoch)

    uniform = build_sampler("uniform", {"sent": 8, "ner": 6})
    counts = Counter(n for e in range(20) for n, _ in epoch_batches(feats, tc, e, sampler=uniform))
    assert abs(counts["sent"] / (20 * 14) - 0.5) < 0.06
    again = epoch_batches(feats, tc, 3, sampler=uniform)
    assert again == epoch_batches(feats, tc, 3, sampler=uniform)  # seeded: resume sees the same


def test_two_task_run_trains_and_predicts_every_task(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"type": "temperature", "options": {"temperature": 2.0}}, epochs=3)
    result = train(parse_config(raw))
    assert result.metric == "average"
    assert {"sent/accuracy", "ner/f1", "average"} <= set(result.dev)
    assert result.dev["average"] == pytest.approx((result.dev["sent/accuracy"] + result.dev["ner/f1"]) / 2)
    assert result.dev["sent/accuracy"] > 0.8 and result.dev["ner/f1"] > 0.5, result.dev
    predictor = polytask.load(str(tmp_path / "run"))
    rows = predictor.predict(["great fun movie with Alice"])
    assert set(rows[0]) == {"sent", "ner"}
    assert rows[0]["sent"]["label"] in ("pos", "neg") and len(rows[0]["ner"]["tags"]) == 5
    assert set(predictor.predict(["dull film"], task="sent")[0]) == {"label", "probs"}


def test_sampler_errors_come_before_training(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"type": "explicit", "options": {"weights": {"cola": 1.0}}})
    with pytest.raises(ConfigError, match="sampler weight for unknown task 'cola'; tasks: sent, ner"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "checkpoints").exists()
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"type": "softmax"})
    with pytest.raises(ConfigError, match="unknown task sampler 'softmax'"):
        train(parse_config(raw))


def test_multitask_checkpoint_reproduces_every_task(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from polytask.evaluation.run_eval import evaluate_run
    from polytask.training import checkpoint as ckpt

    train(parse_config(two_tasks(tmp_path, tiny_encoder_dir, None, epochs=1)))
    meta = ckpt.load_meta(tmp_path / "run/checkpoints/best")
    results, _ = evaluate_run(tmp_path / "run")  # reloaded from disk, each task on its dev split
    assert set(results) == {"sent", "ner"}
    for task, metric in (("sent", "accuracy"), ("ner", "f1"), ("ner", "token_accuracy")):
        assert results[task][metric] == meta["metrics"][f"{task}/{metric}"]
    for task in ("sent", "ner"):
        assert results[task]["loss"] == pytest.approx(meta["metrics"][f"{task}/loss"], abs=1e-6)


def test_uncertainty_weights_learn_and_are_saved(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from polytask.training import checkpoint as ckpt
    from polytask.training.loop import read_metrics

    raw = two_tasks(tmp_path, tiny_encoder_dir, None, epochs=2, log_every=1)
    raw["multitask"] = {"weighting": {"type": "uncertainty"}}
    train(parse_config(raw))
    state = ckpt.load_model_state(tmp_path / "run/checkpoints/last")
    log_vars = [v for k, v in state.items() if k.startswith("weighting.")]
    assert log_vars and all((v != 0).all() for v in log_vars)  # moved away from their start at 0
    logged = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert {"weight/sent", "weight/ner"} <= set(logged[-1]) and logged[-1]["weight/sent"] != 1.0
    assert polytask.load(str(tmp_path / "run")).predict(["fun film"])  # reloads with its weighting


def test_dwa_resume_mid_epoch_equals_uninterrupted(
    tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import torch

    from polytask.training import checkpoint as ckpt
    from polytask.training import logging as tlog

    def cfg(run: str):  # noqa: ANN202
        raw = two_tasks(tmp_path / run, tiny_encoder_dir, None, epochs=3)
        raw["multitask"] = {"weighting": {"type": "dwa"}}
        return parse_config(raw)

    train(cfg("a"))
    a = ckpt.load_model_state(tmp_path / "a/run/checkpoints/last")
    dwa_weights = [v for k, v in a.items() if k.startswith("weighting.") and "weight" in k]
    assert dwa_weights and not torch.allclose(dwa_weights[0].double(), torch.ones_like(dwa_weights[0]).double())

    original = tlog.Progress.update

    def interrupt(self, step, **kw):  # noqa: ANN001, ANN003, ANN202
        original(self, step, **kw)
        if step == 33:  # 14 steps an epoch: in the middle of the third, after DWA's first update
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(tlog.Progress, "update", interrupt)
    assert train(cfg("b")).interrupted
    monkeypatch.setattr(tlog.Progress, "update", original)
    train(cfg("b"), resume=True)
    b = ckpt.load_model_state(tmp_path / "b/run/checkpoints/last")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_task_data_is_refused_before_training(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from polytask.errors import DataError

    # An empty task among two: the error names the file, and nothing is written.
    raw = two_tasks(tmp_path, tiny_encoder_dir, None)
    empty = tmp_path / "empty.conll"
    empty.write_text("")
    raw["tasks"][1]["data"]["train"] = str(empty)
    with pytest.raises(DataError, match=r"empty.conll: no examples in this train file"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "checkpoints").exists()

    # Two tasks under one name whose heads would need different label sets.
    raw = two_tasks(tmp_path, tiny_encoder_dir, None)
    raw["tasks"][1] = {**raw["tasks"][0], "labels": ["a", "b", "c"]}
    with pytest.raises(ConfigError, match="task name 'sent' is used twice"):
        train(parse_config(raw))

    # A dev label the task's head does not have: named with its file and line.
    raw = two_tasks(tmp_path, tiny_encoder_dir, None)
    dev = Path(raw["tasks"][0]["data"]["dev"])
    lines = dev.read_text().splitlines()
    lines[2] = lines[2].replace('"label": "pos"', '"label": "neutral"').replace('"label": "neg"', '"label": "neutral"')
    dev.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"dev.jsonl:3: .*neutral"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "checkpoints").exists()
