"""Transfer strategies: freezing, gradual unfreezing, layer-wise learning rates, L2-SP; each
checked on its maths and through a real (tiny) training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polytask.config import TransferConfig, parse_config
from polytask.config.schema import EncoderConfig, TaskConfig, TrainConfig
from polytask.encoders import build_encoder
from polytask.errors import ConfigError
from polytask.multitask.model import PolytaskModel
from polytask.tasks import build_task
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from polytask.transfer import STRATEGIES, build_strategies
from polytask.transfer.gradual_unfreeze import unfrozen_groups
from tests.unit.toy import toy_config, write_toy_jsonl


@pytest.fixture()
def model(tiny_encoder_dir: Path) -> PolytaskModel:
    enc = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    task = build_task(TaskConfig(name="t", type="classification", data={"train": "x"}, labels=["a", "b"]), 32)
    return PolytaskModel(enc, {"t": task})


def strategies(name: str | list[str], **options: dict):  # noqa: ANN003, ANN201
    return build_strategies(TransferConfig(strategy=name, options=options))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown transfer strategy 'frozen' \(field transfer.strategy\); known: contrastive_few_shot, discriminative_lr, drop_layers, freeze, full, gradual_unfreeze, l2_sp, lora"):
        strategies("frozen")
    with pytest.raises(ConfigError, match=r"options given for l2_sp, which is not among the chosen strategies \(freeze\)"):
        strategies("freeze", l2_sp={"alpha": 1.0})
    with pytest.raises(ConfigError, match=r"transfer.options.discriminative_lr: decay must be in \(0, 1\]; got 1.5"):
        strategies("discriminative_lr", discriminative_lr={"decay": 1.5})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) rate for transfer strategy 'l2_sp'; allowed: alpha, beta"):
        strategies("l2_sp", l2_sp={"rate": 1.0})
    with pytest.raises(ConfigError, match="discriminative_lr and l2_sp both set the optimiser's groups"):
        strategies(["discriminative_lr", "l2_sp"])


def test_every_strategy_builds_with_defaults(model: PolytaskModel) -> None:
    cfg = TrainConfig()
    anchor = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    for name in STRATEGIES.names():
        s = strategies(name)
        s.setup(model, anchor)
        s.on_step(model, 0, 10)
        groups = s.param_groups(model, cfg)
        if groups is not None:  # every parameter in exactly one group
            ids = [id(p) for g in groups for p in g["params"]]
            assert sorted(ids) == sorted(id(p) for p in model.parameters())
        for p in model.parameters():
            p.requires_grad_(True)


def test_gradual_unfreeze_schedule(model: PolytaskModel) -> None:
    assert [unfrozen_groups(s, 10, 3) for s in (0, 9, 10, 25, 30, 99)] == [0, 0, 1, 2, 3, 3]
    s = strategies("gradual_unfreeze", gradual_unfreeze={"every": 5})
    s.setup(model)
    groups = model.encoder.layer_groups()  # embeddings, layer 0, layer 1
    trains = lambda: [all(p.requires_grad for p in g) for g in groups]  # noqa: E731
    assert trains() == [False, False, False] and all(p.requires_grad for p in model.heads.parameters())
    s.on_step(model, 5, 100)
    assert trains() == [False, False, True]
    s.on_step(model, 12, 100)
    assert trains() == [False, True, True]
    s.on_step(model, 40, 100)
    assert trains() == [True, True, True]


def test_discriminative_lr_decays_geometrically(model: PolytaskModel) -> None:
    cfg = TrainConfig(lr=1e-3, head_lr=5e-3)
    groups = strategies("discriminative_lr", discriminative_lr={"decay": 0.5}).param_groups(model, cfg)
    enc_groups = model.encoder.layer_groups()
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    per_group = [{lr_of[id(p)] for p in g} for g in enc_groups]
    assert per_group == [{2.5e-4}, {5e-4}, {1e-3}]  # embeddings, layer 0, layer 1 (top)
    assert {lr_of[id(p)] for p in model.heads.parameters()} == {5e-3}
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim == 1 for p in g["params"]))


def test_l2_sp_penalty_is_zero_at_the_anchor_and_pulls_back(model: PolytaskModel) -> None:
    for p in model.heads.parameters():
        torch.nn.init.zeros_(p)
    anchor = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    s = strategies("l2_sp", l2_sp={"alpha": 2.0, "beta": 1.0})
    s.setup(model, anchor)
    assert float(s.penalty(model).detach()) == 0.0
    w = next(model.encoder.parameters())
    with torch.no_grad():
        w.add_(0.1)
    expected = 2.0 / 2 * (0.1**2) * w.numel()
    assert float(s.penalty(model).detach()) == pytest.approx(expected, rel=1e-4)
    # One gradient step on the penalty alone moves the weight back toward its anchor.
    w0 = anchor[next(n for n, _ in model.encoder.named_parameters())]
    before = float((w - w0).detach().norm())
    s.penalty(model).backward()
    with torch.no_grad():
        w.sub_(0.1 * w.grad)
    assert float((w - w0).detach().norm()) < before
    groups = s.param_groups(model, TrainConfig(weight_decay=0.1))
    assert all(g["weight_decay"] == 0.0 for g in groups)  # decay toward 0 would fight the anchor


def _run(tmp_path: Path, enc: Path, name: str, transfer: dict, **train_kw) -> Path:  # noqa: ANN003
    data = write_toy_jsonl(tmp_path / "data")
    raw = toy_config(enc, data, tmp_path / name, epochs=2, **train_kw)
    raw["transfer"] = transfer
    train(parse_config(raw))
    return tmp_path / name


def _encoder_changed(run: Path, initial: dict[str, torch.Tensor]) -> dict[str, bool]:
    final = ckpt.load_model_state(run / "checkpoints/last")
    return {k: not torch.equal(final["encoder." + k], v) for k, v in initial.items()}


def test_freeze_trains_heads_only(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    initial = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir))).state_dict()
    run = _run(tmp_path, tiny_encoder_dir, "frozen", {"strategy": "freeze"})
    assert not any(_encoder_changed(run, initial).values())


def test_gradual_unfreeze_run_leaves_the_bottom_for_last(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    initial = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir))).state_dict()
    # 16 steps, one more group every 6: the top layer trains from step 6, layer 0 from 12, the
    # embeddings (a third group) never within the run.
    run = _run(tmp_path, tiny_encoder_dir, "gu", {"strategy": "gradual_unfreeze", "options": {"gradual_unfreeze": {"every": 6}}})
    changed = _encoder_changed(run, initial)
    assert not any(v for k, v in changed.items() if "embeddings" in k)
    assert all(v for k, v in changed.items() if ".layer.1." in k and "weight" in k)
    assert all(v for k, v in changed.items() if ".layer.0." in k and "weight" in k)


def test_l2_sp_run_stays_closer_to_the_pretrained_weights(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    initial = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir))).state_dict()

    def distance(run: Path) -> float:
        final = ckpt.load_model_state(run / "checkpoints/last")
        return float(sum(((final["encoder." + k] - v) ** 2).sum() for k, v in initial.items()))

    plain = _run(tmp_path, tiny_encoder_dir, "plain", {"strategy": "full"}, weight_decay=0.0)
    sp = _run(tmp_path, tiny_encoder_dir, "sp", {"strategy": "l2_sp", "options": {"l2_sp": {"alpha": 10.0}}})
    assert distance(sp) < 0.5 * distance(plain)
