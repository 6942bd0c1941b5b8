"""train.mixed_precision: auto: what it resolves to per device capability, and that bf16 really
runs the encoder in bf16 (training and inference) while the weights and optimizer state stay fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import polytask
from polytask import precision
from polytask.config import parse_config
from polytask.errors import ConfigError
from polytask.training import checkpoint as ckpt
from polytask.training.loop import train
from tests.unit.toy import toy_config


@pytest.fixture()
def no_override(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Without the test suite's POLYTASK_PRECISION=fp32 (set in tests/conftest.py)."""
    monkeypatch.delenv(precision.ENV, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("flags", "capability", "expected"), [
    ({"avx512f", "amx_bf16", "amx_tile"}, "AVX512", "bf16"),
    ({"avx512f", "avx512_bf16"}, "AVX512", "bf16"),
    ({"avx512f"}, "AVX512", "no"),  # AVX512 without BF16: emulated bf16 is slower than fp32
    ({"avx2"}, "AVX2", "no"),
    (set(), "DEFAULT", "no"),  # no /proc/cpuinfo (macOS, Windows) and nothing from torch
])
def test_auto_on_a_cpu_follows_its_bf16_flags(no_override: pytest.MonkeyPatch, flags: set[str], capability: str,
                                              expected: str) -> None:
    no_override.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    no_override.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert precision.resolve("auto", "cpu") == expected
    for explicit in ("no", "bf16", "fp16"):  # an explicit choice is kept whatever the CPU
        assert precision.resolve(explicit, "cpu") == explicit


def test_auto_on_cuda_asks_the_device_and_fp32_elsewhere(no_override: pytest.MonkeyPatch) -> None:
    no_override.setattr(precision, "cuda_has_bf16", lambda: True)
    assert precision.resolve("auto", "cuda") == "bf16"
    no_override.setattr(precision, "cuda_has_bf16", lambda: False)
    assert precision.resolve("auto", "cuda") == "no"
    assert precision.resolve("auto", "mps") == "no"


def test_the_environment_decides_auto(no_override: pytest.MonkeyPatch) -> None:
    no_override.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    no_override.setenv(precision.ENV, "fp32")
    assert precision.resolve("auto", "cpu") == "no"
    assert precision.resolve("bf16", "cpu") == "bf16"
    no_override.setattr(precision, "cpu_flags", lambda: frozenset())
    no_override.setenv(precision.ENV, "bf16")
    assert precision.resolve("auto", "cpu") == "bf16"
    no_override.setenv(precision.ENV, "half")
    with pytest.raises(ConfigError, match="POLYTASK_PRECISION='half': use fp32 or bf16"):
        precision.resolve("auto", "cpu")


def test_auto_is_the_default_and_a_bad_value_names_the_choices() -> None:
    cfg = parse_config({"tasks": [{"name": "a", "type": "classification", "data": {"train": "x.jsonl"}}]})
    assert cfg.train.mixed_precision == "auto"
    with pytest.raises(ConfigError, match="'auto', 'no', 'fp16' or 'bf16'"):
        parse_config({"tasks": [{"name": "a", "type": "classification", "data": {"train": "x.jsonl"}}],
                      "train": {"mixed_precision": "fp8"}})


def _dtype_probe(model: torch.nn.Module) -> tuple[list[torch.dtype], list[torch.dtype]]:
    """Output dtypes of the encoder's first linear layer and of every head, as they run."""
    enc: list[torch.dtype] = []
    heads: list[torch.dtype] = []
    first = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda _m, _i, out: enc.append(out.dtype))
    for head in model.heads.values():
        head.register_forward_hook(lambda _m, _i, out: heads.append(out.dtype))
    return enc, heads


def test_bf16_training_runs_the_encoder_in_bf16_and_keeps_fp32_weights(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str], no_override: pytest.MonkeyPatch, capsys: Any,
) -> None:
    from polytask.training.loop import _train
    from polytask.training.run import build_run

    no_override.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))  # auto -> bf16 on any CPU
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=2, cpu=True))
    assert cfg.train.mixed_precision == "auto"
    run = build_run(cfg)
    enc, heads = _dtype_probe(run.unwrapped)
    result = _train(run, resume=False)
    assert result.precision == "bf16"
    assert enc and set(enc) == {torch.bfloat16}, "the encoder's matmuls did not run in bf16"
    assert heads and set(heads) == {torch.float32}, "the heads should run in fp32"
    # Master weights and the optimizer's moments stay fp32.
    assert {p.dtype for p in run.unwrapped.parameters()} == {torch.float32}
    moments = [t for s in run.engine.optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim()]
    assert moments and {t.dtype for t in moments} == {torch.float32}
    # What was chosen is saved in the run and in its checkpoints.
    assert json.loads((tmp_path / "run/results.json").read_text())["precision"] == "bf16"
    assert ckpt.load_meta(tmp_path / "run/checkpoints/last")["precision"] == "bf16"
    assert {t.dtype for t in ckpt.load_model_state(tmp_path / "run/checkpoints/last").values()
            if t.is_floating_point()} == {torch.float32}


def test_auto_under_the_test_override_trains_in_fp32_and_says_so(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polytask.training.loop import _train, startup_summary
    from polytask.training.run import build_run

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))  # the env var wins
    run = build_run(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=1, cpu=True)))
    assert "precision fp32 (train.mixed_precision: auto)" in startup_summary(run)
    enc, _ = _dtype_probe(run.unwrapped)
    assert _train(run, resume=False).precision == "no"
    assert set(enc) == {torch.float32}


def test_the_predictor_runs_in_the_precision_asked(
    tmp_path: Path, tiny_encoder_dir: Path, toy: dict[str, str], no_override: pytest.MonkeyPatch,
) -> None:
    no_override.setenv(precision.ENV, "fp32")
    train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=1, cpu=True)))
    texts = ["a great film", "a dull and boring film"]
    fp32 = polytask.load(str(tmp_path / "run"), device="cpu", precision="no")
    assert fp32.precision == "no"
    enc, heads = _dtype_probe(fp32.model)
    expected = fp32.predict(texts)
    assert set(enc) == {torch.float32}
    no_override.delenv(precision.ENV)
    no_override.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    bf16 = polytask.load(str(tmp_path / "run"), device="cpu")  # precision="auto"
    assert bf16.precision == "bf16"
    enc, heads = _dtype_probe(bf16.model)
    got = bf16.predict(texts)
    assert set(enc) == {torch.bfloat16} and set(heads) == {torch.float32}
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected, strict=True):  # bf16 keeps about 3 significant digits
        assert max(abs(g["probs"][k] - e["probs"][k]) for k in e["probs"]) < 0.05
    with pytest.raises(ConfigError, match="unknown precision 'fp64'"):
        polytask.load(str(tmp_path / "run"), device="cpu", precision="fp64")


def test_pretraining_resolves_auto_too(tmp_path: Path, tiny_encoder_dir: Path, no_override: pytest.MonkeyPatch) -> None:
    from polytask.pretrain import pretrain_mlm

    no_override.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(f"the cat sat on mat number {i} ." for i in range(40)) + "\n")
    result = pretrain_mlm({"encoder": str(tiny_encoder_dir), "text": str(text), "output_dir": str(tmp_path / "out"),
                           "batch_size": 8, "max_length": 16, "max_steps": 2, "progress": False, "cpu": True})
    assert result.precision == "bf16"
    assert "precision bf16 autocast (mixed_precision: auto)" in result.notes
    saved = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert saved["precision"] == "bf16"
