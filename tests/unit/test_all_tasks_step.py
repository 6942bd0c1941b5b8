"""``multitask.step: all_tasks``: every step sees every task; GradNorm, PCGrad and CAGrad in the
loop; cached features for a frozen encoder; private task layers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.training import checkpoint as ckpt
from polytask.training import schedule
from polytask.training.loop import read_metrics, train
from polytask.training.setup import prepare_tasks
from tests.unit.toy import toy_config, write_toy_jsonl, write_toy_ner


def two_tasks(tmp_path: Path, encoder: Path, multitask: dict | None = None, **train_kw) -> dict:  # noqa: ANN003
    sent = write_toy_jsonl(tmp_path / "sent")
    ner = write_toy_ner(tmp_path / "ner")
    raw = toy_config(encoder, sent, tmp_path / "run", **train_kw)
    raw["tasks"].append({"name": "ner", "type": "token_classification", "data": {"train": ner["train"], "dev": ner["dev"]}})
    if multitask is not None:
        raw["multitask"] = multitask
    return raw


def _feats(cfg, encoder_dir: Path) -> dict:  # noqa: ANN001
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder_dir)
    data = prepare_tasks(cfg)
    return {n: {s: [td.task.encode(e, tok) for e in exs] for s, exs in td.splits.items()} for n, td in data.items()}


def test_all_tasks_epochs_hold_every_task_in_every_step(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    cfg = parse_config(two_tasks(tmp_path, tiny_encoder_dir, {"step": "all_tasks"}))
    feats = _feats(cfg, tiny_encoder_dir)  # batch 8: sent 8 batches, ner 6
    tc = cfg.train
    epoch = schedule.epoch_batches(feats, tc, 0, mode="all_tasks")
    assert [n for n, _ in epoch] == ["sent", "ner"] * 8  # rounds of every task, as long as the largest
    assert Counter(i for n, b in epoch if n == "sent" for i in b) == Counter(range(64))
    ner_ids = [i for n, b in epoch if n == "ner" for i in b]
    assert set(ner_ids) == set(range(48)) and len(ner_ids) == 64  # cycled: 6 batches then 2 more
    # Two processes split the rounds: rank r takes rounds r, r+2, ...; together they are the
    # rounds one process sees, so 2 processes x 1 step = 1 process x 2 accumulated rounds.
    r0 = schedule.epoch_batches(feats, tc, 0, world=2, rank=0, mode="all_tasks")
    r1 = schedule.epoch_batches(feats, tc, 0, world=2, rank=1, mode="all_tasks")
    assert r0 == [x for k in range(0, 16, 4) for x in epoch[k:k + 2]]
    assert r1 == [x for k in range(2, 16, 4) for x in epoch[k:k + 2]]
    assert schedule.group_size(2, SimpleNamespace(grad_accum_steps=3), "all_tasks") == 6


def test_step_mode_errors_name_the_fix(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"step": "one_task", "surgery": {"type": "pcgrad"}})
    with pytest.raises(ConfigError, match="surgery pcgrad needs every task's loss in the same step; set step: all_tasks"):
        parse_config(raw)
    # A weighting declares that it needs every task (no member name in the schema): the check
    # runs when the run is built, before any data or model loads.
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"step": "one_task", "weighting": {"type": "gradnorm"}})
    with pytest.raises(ConfigError, match="gradnorm needs every task's loss in the same step; set step: all_tasks"):
        train(parse_config(raw))
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"weighting": {"type": "gradnorm"}, "sampler": {"type": "uniform"}})
    with pytest.raises(ConfigError, match="a sampler chooses one task per batch, but gradnorm takes every task"):
        train(parse_config(raw))
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"surgery": {"type": "pcgrad"}, "sampler": {"type": "uniform"}})
    with pytest.raises(ConfigError, match="a sampler chooses one task per batch, but step: all_tasks"):
        parse_config(raw)
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"surgery": {"type": "mgda"}})
    with pytest.raises(ConfigError, match="unknown gradient surgery 'mgda'"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("surgery", ["pcgrad", "cagrad"])
def test_surgery_runs_in_the_loop_on_every_step(
    tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch, surgery: str
) -> None:
    from polytask.training.gradients import TaskGradients

    seen: list[tuple[int, int]] = []
    original = TaskGradients.combine

    def spy(self, surgery_obj, generator=None):  # noqa: ANN001, ANN202
        seen.append(tuple(self.matrix.shape))
        rows = self.matrix.clone()
        # The same random projection order as the loop's call (PCGrad draws one per step).
        twin = torch.Generator()
        twin.set_state(generator.get_state())
        expected = surgery_obj.combine(rows.float() * 2, generator=twin)
        original(self, surgery_obj, generator)
        combined = torch.cat([p.grad.reshape(-1) for p in self.shared])
        # The written gradient is exactly the surgery's combination of the K-scaled task rows.
        assert torch.allclose(combined, expected, atol=1e-6)
        return None

    monkeypatch.setattr(TaskGradients, "combine", spy)
    result = train(parse_config(two_tasks(tmp_path, tiny_encoder_dir, {"surgery": {"type": surgery}}, epochs=3)))
    from polytask.encoders.transformer import TransformerEncoder

    n_shared = sum(p.numel() for p in TransformerEncoder.from_pretrained(str(tiny_encoder_dir)).parameters())
    assert len(seen) == result.steps == 24  # 8 rounds an epoch, 3 epochs
    assert set(seen) == {(2, n_shared)}  # one row per task, every shared weight
    assert result.dev["sent/accuracy"] > 0.8 and result.dev["ner/f1"] > 0.5, result.dev


def test_gradnorm_weights_move_sum_to_k_and_are_saved(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = two_tasks(tmp_path, tiny_encoder_dir, {"weighting": {"type": "gradnorm", "options": {"alpha": 1.5}}},
                    epochs=2, log_every=1)
    result = train(parse_config(raw))
    state = ckpt.load_model_state(tmp_path / "run/checkpoints/last")
    w = state["weighting.task_weights"]
    assert w.sum().item() == pytest.approx(2.0, abs=1e-4)  # renormalised to K after every step
    assert not torch.allclose(w, torch.ones(2))  # learned away from the start
    logged = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len({round(r["weight/sent"], 6) for r in logged}) > 3  # moved over the run
    assert result.dev["sent/accuracy"] > 0.7, result.dev


def test_cached_features_train_exactly_like_the_frozen_encoder(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    def run(name: str, cache: bool):  # noqa: ANN202
        raw = two_tasks(tmp_path / name, tiny_encoder_dir, epochs=2)
        raw["transfer"] = {"strategy": "freeze", "options": {"freeze": {"cache_features": cache}}}
        return train(parse_config(raw)), ckpt.load_model_state(tmp_path / name / "run/checkpoints/last")

    (r_cached, cached), (r_plain, plain) = run("cached", True), run("plain", False)
    assert cached.keys() == plain.keys()
    for k in cached:
        assert torch.allclose(cached[k], plain[k], atol=1e-5), k
    assert r_cached.dev["sent/accuracy"] == r_plain.dev["sent/accuracy"]


def test_task_layers_are_private_saved_and_reloaded(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    raw = two_tasks(tmp_path, tiny_encoder_dir, epochs=2)
    raw["tasks"][1]["task_layers"] = 1
    result = train(parse_config(raw))
    state = ckpt.load_model_state(tmp_path / "run/checkpoints/best")
    assert any(k.startswith("towers.ner.layers.0.") for k in state)
    assert not any(k.startswith("towers.sent") for k in state)
    from polytask.evaluation.run_eval import evaluate_run

    results, _ = evaluate_run(tmp_path / "run")
    assert results["ner"]["f1"] == pytest.approx(ckpt.load_meta(tmp_path / "run/checkpoints/best")["metrics"]["ner/f1"])
    assert result.best_metric is not None
