"""Checkpoints: safetensors + JSON, atomic replacement, no pickle, exact optimizer/RNG restore."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from polytask.errors import CheckpointError
from polytask.training import checkpoint as ckpt


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_round_trip_weights_meta_optimizer_and_rng(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    final = tmp_path / "last"
    random.seed(3)
    torch.manual_seed(7)
    ckpt.save_checkpoint(final, model.state_dict(), {"step": 1, "tasks": {}}, optimizer=opt,
                         trainer_state={"loop": {"step": 1}})
    expected_torch = torch.rand(3)
    expected_py = random.random()

    assert sorted(p.name for p in final.iterdir()) == [
        "meta.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer_state.json"]
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))
    meta = ckpt.load_meta(final)
    assert meta["step"] == 1 and meta["format_version"] == ckpt.FORMAT_VERSION and "torch" in meta["versions"]
    state = ckpt.load_model_state(final)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)

    fresh = _model()
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    torch.manual_seed(99)
    random.seed(99)
    trainer = ckpt.load_training_state(final, opt2)
    assert trainer["loop"] == {"step": 1}
    assert torch.equal(torch.rand(3), expected_torch) and random.random() == expected_py
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(s1["state"][pid][key]), torch.as_tensor(s2["state"][pid][key]))


def test_replacing_keeps_only_the_new_version(tmp_path: Path) -> None:
    final = tmp_path / "best"
    ckpt.save_checkpoint(final, _model().state_dict(), {"step": 1})
    ckpt.save_checkpoint(final, _model().state_dict(), {"step": 2})
    assert ckpt.load_meta(final)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_crash_mid_write_leaves_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "last"
    ckpt.save_checkpoint(final, _model().state_dict(), {"step": 1})

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(final, _model().state_dict(), {"step": 2})
    assert ckpt.load_meta(ckpt.resolve_dir(final))["step"] == 1


def test_crash_between_renames_falls_back_to_previous(tmp_path: Path) -> None:
    final = tmp_path / "last"
    ckpt.save_checkpoint(final, _model().state_dict(), {"step": 1})
    final.rename(tmp_path / ".old-last")  # the moment after the old one moved aside
    found = ckpt.resolve_dir(final)
    assert found == tmp_path / ".old-last" and ckpt.load_meta(found)["step"] == 1


def test_pickle_files_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "ckpt"
    d.mkdir()
    torch.save(_model().state_dict(), d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"no model.safetensors \(found pytorch_model.bin: pickle files are never loaded\)"):
        ckpt.load_model_state(d)


def test_meta_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a polytask checkpoint"):
        ckpt.load_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="checkpoint format 99 is not supported"):
        ckpt.load_meta(tmp_path)


# ---- a damaged file is one clear line, never a library traceback ------------------------------
def _saved(tmp_path: Path) -> tuple[Path, torch.optim.Optimizer]:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    final = tmp_path / "checkpoints" / "last"
    ckpt.save_checkpoint(final, model.state_dict(), {"step": 1, "tasks": {}}, optimizer=opt,
                         trainer_state={"loop": {"step": 1}})
    return final, torch.optim.AdamW(_model().parameters(), lr=0.1)


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("keep", [0, 5, 60, -40])
def test_a_truncated_weights_file_names_the_file_and_the_fix(tmp_path: Path, keep: int) -> None:
    final, _ = _saved(tmp_path)
    path = final / ckpt.MODEL_FILE
    size = path.stat().st_size
    _truncate(path, keep if keep >= 0 else size + keep)
    with pytest.raises(CheckpointError) as err:
        ckpt.load_model_state(final)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read the weights: the file is truncated or corrupt (")
    assert message.endswith("restore it from a copy, or train the run again (the run's 'best' checkpoint may "
                            "still be whole: --checkpoint best)")
    assert "\n" not in message


def test_a_truncated_optimizer_state_stops_resume_with_the_fix(tmp_path: Path) -> None:
    final, fresh = _saved(tmp_path)
    _truncate(final / ckpt.OPTIM_FILE, 30)
    with pytest.raises(CheckpointError) as err:
        ckpt.load_training_state(final, fresh)
    assert str(err.value).startswith(f"{final / ckpt.OPTIM_FILE}: cannot read the optimizer state: the file is "
                                     "truncated or corrupt (30 bytes; ")
    assert str(err.value).endswith("this checkpoint cannot be resumed: restore the file, or start the run again "
                                   "with --overwrite (the weights alone can still be loaded, evaluated or used as "
                                   "init_from)")
    (final / ckpt.OPTIM_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors: missing \(the optimizer state\); this "
                                              "checkpoint cannot be resumed"):
        ckpt.load_training_state(final, fresh)
    final, fresh = _saved(tmp_path / "b")
    (final / ckpt.STATE_FILE).write_text('{"loop": ')
    with pytest.raises(CheckpointError, match=r"trainer_state.json: corrupt trainer state \(JSONDecodeError"):
        ckpt.load_training_state(final, fresh)
    final, fresh = _saved(tmp_path / "c")
    _truncate(final / "rng.safetensors", 10)
    with pytest.raises(CheckpointError, match="rng.safetensors: cannot read the random-number state"):
        ckpt.load_training_state(final, fresh)


def test_truncated_metadata_names_the_fix(tmp_path: Path) -> None:
    final, _ = _saved(tmp_path)
    _truncate(final / ckpt.META_FILE, 20)
    with pytest.raises(CheckpointError, match=r"meta.json: corrupt metadata \(.*\); the file is truncated or "
                                              "damaged: restore it from a copy, or train the run again"):
        ckpt.load_meta(final)
    (final / ckpt.META_FILE).write_bytes(b"\xff\xfe[")
    with pytest.raises(CheckpointError, match="corrupt metadata"):
        ckpt.load_meta(final)


def test_an_optimizer_state_of_another_model_names_the_fix(tmp_path: Path) -> None:
    final, _ = _saved(tmp_path)
    other = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=0.1)  # fewer parameter tensors
    with pytest.raises(CheckpointError) as err:
        ckpt.load_training_state(final, other)
    assert str(err.value).startswith(f"{final / ckpt.OPTIM_FILE}: the optimizer state does not fit this model's "
                                     "optimizer (")
    assert "this checkpoint cannot be resumed" in str(err.value)
