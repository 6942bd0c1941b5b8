"""Fault injection: ``kill -9`` a real ``polytask train`` at seeded points, resume, and get exactly the
weights and log of the run that was never interrupted, with nothing left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from polytask.training import checkpoint as ckpt
from tests.unit.toy import toy_config, write_toy_jsonl

pytestmark = pytest.mark.system  # starts other programs

RUNS = 10
STEPS = 48  # 6 epochs of 8 steps; a checkpoint every 3 steps, so kills also land mid-write
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _experiment(tmp: Path, encoder: Path, name: str) -> Path:
    data = write_toy_jsonl(tmp / "data")
    raw = toy_config(encoder, data, tmp / name, epochs=6, eval_every=3, log_every=1)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(exp: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "polytask.cli", "train", str(exp), *extra], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _logged_step(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def test_kill_minus_9_then_resume_equals_the_uninterrupted_run(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    reference = _train(_experiment(tmp_path, tiny_encoder_dir, "reference"))
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected = ckpt.load_model_state(tmp_path / "reference/checkpoints/last")
    expected_log = [(r["split"], r["step"]) for r in map(json.loads, (tmp_path / "reference/metrics.jsonl").open())]

    rng = random.Random(2026)
    killed_at = []
    for i in range(RUNS):
        exp = _experiment(tmp_path, tiny_encoder_dir, f"run{i}")
        run = tmp_path / f"run{i}"
        target = rng.randint(1, STEPS - 2)
        proc = _train(exp)
        deadline = time.monotonic() + 300
        while _logged_step(run) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_logged_step(run))
        resume = ["--resume"] if (run / "checkpoints/last").exists() else []
        again = _train(exp, *resume)
        assert again.wait(timeout=600) == 0, again.stderr.read()
        got = ckpt.load_model_state(run / "checkpoints/last")
        assert got.keys() == expected.keys()
        for k, v in expected.items():
            assert (got[k] == v).all(), f"run {i} (killed after step {killed_at[-1]}): {k} differs"
        log = [(r["split"], r["step"]) for r in map(json.loads, (run / "metrics.jsonl").open())]
        assert log == expected_log, f"run {i}: the log differs from the uninterrupted run's"
        leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
        assert leftovers == [] and not (run / ".lock").exists(), leftovers
    print(f"killed after steps {killed_at}")
    assert len(set(killed_at)) > 3  # the kills landed at different points


REDUNDANT = {"encoder/tokenizer.json"}  # deleted, the tokenizer is rebuilt from encoder/vocab.txt
CHECKPOINT_FILES = ["model.safetensors", "meta.json", "optimizer.safetensors", "rng.safetensors",
                    "trainer_state.json", "encoder/config.json", "encoder/tokenizer.json"]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_each_damaged_checkpoint_file_stops_resume_with_one_clear_line(
    tmp_path: Path, tiny_encoder_dir: Path, damage: str
) -> None:
    import shutil

    from polytask.config import parse_config
    from polytask.errors import PolytaskError
    from polytask.training.loop import train

    data = write_toy_jsonl(tmp_path / "data")
    raw = toy_config(tiny_encoder_dir, data, tmp_path / "good", max_steps=2)
    train(parse_config(raw))
    messages = {}
    for name in CHECKPOINT_FILES:
        run = tmp_path / f"{damage}-{name.replace('/', '_')}"
        shutil.copytree(tmp_path / "good", run)
        target = run / "checkpoints/last" / name
        if damage == "delete":
            target.unlink()
        else:
            target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 3)])
        try:
            train(parse_config({**raw, "output_dir": str(run)}), resume=True)
        except PolytaskError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) < 600, message
            assert "checkpoints/last" in message, message  # names the damaged checkpoint
            messages[name] = message
        else:  # a file the loader can do without (vocab.txt rebuilds tokenizer.json): a whole run
            assert name in REDUNDANT, f"{damage} {name}: resumed without a word"
            messages[name] = "resumed (the file is redundant)"
    print("\n".join(f"{k}: {v}" for k, v in messages.items()))
    assert all(messages[n] != "resumed (the file is redundant)" for n in CHECKPOINT_FILES if n not in REDUNDANT)


def test_ctrl_c_on_train_exits_130(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    exp = _experiment(tmp_path, tiny_encoder_dir, "run")
    proc = _train(exp)
    deadline = time.monotonic() + 300
    while _logged_step(tmp_path / "run") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert proc.wait(timeout=300) == 130
    assert (tmp_path / "run/checkpoints/last").is_dir()  # the state was saved for --resume
