"""The run folder holds: one writer at a time, no leftovers from a killed write, no duplicated log
lines after a resume, time carried across resumes, names that stay inside runs/, and a loud
fallback from best to last."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polytask.config import parse_config
from polytask.errors import CheckpointError, ConfigError
from polytask.runs import LOCK_FILE, RunLock, load_run
from polytask.training.loop import read_metrics, train
from tests.conftest import ctrl_c_at
from tests.unit.toy import toy_config


def _lock_file(run: Path, pid: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "earlier"}))


def test_a_second_writer_is_refused_with_who_holds_the_run(tmp_path: Path, tiny_encoder_dir: Path, toy) -> None:  # noqa: ANN001
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_file(tmp_path / "run", holder.pid)
        with pytest.raises(CheckpointError, match=rf"is in use by process {holder.pid} on .*wait for it to finish"):
            train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=1)))
        assert not (tmp_path / "run" / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path, tiny_encoder_dir: Path, toy, capsys) -> None:  # noqa: ANN001
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock_file(tmp_path / "run", gone.pid)
    result = train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=2)))
    assert result.steps == 2
    assert f"taking over {tmp_path / 'run' / LOCK_FILE}: its process {gone.pid} is gone" in capsys.readouterr().err
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released at the end


def test_lock_is_released_when_building_the_run_fails(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "r").acquire()
    with pytest.raises(CheckpointError, match="is in use by process"):
        RunLock(tmp_path / "r").acquire()
    lock.release()
    RunLock(tmp_path / "r").acquire().release()


def test_killed_write_leftovers_are_removed_and_resume_logs_no_duplicates(
    tmp_path: Path, tiny_encoder_dir: Path, toy, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    cfg = parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=2, log_every=1))
    ctrl_c_at(monkeypatch, 5)
    first = train(cfg)
    monkeypatch.undo()
    # What a kill -9 in the middle of writing a checkpoint leaves, and log lines written after
    # the last checkpoint (step 5) by the killed session.
    leftover = tmp_path / "run/checkpoints/.tmp-last-99999"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    with open(tmp_path / "run/metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"split": "train", "step": 6, "epoch": 0, "loss": 9.9}) + "\n")
    second = train(cfg, resume=True)
    assert not leftover.exists()
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert steps == list(range(1, 17))  # each step once, the killed session's line 6 gone
    assert second.seconds > first.seconds  # both sessions counted


def test_run_names_stay_inside_runs(tmp_path: Path, tiny_encoder_dir: Path, toy) -> None:  # noqa: ANN001
    raw = toy_config(tiny_encoder_dir, toy, tmp_path / "run")
    for bad in ("../escape", "a/b", ".."):
        with pytest.raises(ConfigError, match="must be a plain folder name"):
            parse_config({**raw, "name": bad})


def test_best_falls_back_to_last_only_with_a_warning(tmp_path: Path, tiny_encoder_dir: Path, toy) -> None:  # noqa: ANN001
    import shutil

    train(parse_config(toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=2)))
    shutil.rmtree(tmp_path / "run/checkpoints/best")
    with pytest.warns(UserWarning, match="no best checkpoint .*using last"):
        load_run(tmp_path / "run")


def test_bad_data_or_type_is_reported_before_the_run_exists_check(tmp_path: Path, tiny_encoder_dir: Path, toy) -> None:  # noqa: ANN001
    from polytask.errors import DataError

    raw = toy_config(tiny_encoder_dir, toy, tmp_path / "run", max_steps=1)
    train(parse_config(raw))  # the folder now holds a run
    bad_path = {**raw, "tasks": [{**raw["tasks"][0], "data": {"train": str(tmp_path / "nope.jsonl")}}]}
    with pytest.raises(DataError, match="nope.jsonl"):
        train(parse_config(bad_path))
    bad_type = {**raw, "tasks": [{**raw["tasks"][0], "type": "clasification"}]}
    with pytest.raises(ConfigError, match="unknown task type 'clasification'"):
        train(parse_config(bad_type))
    with pytest.raises(CheckpointError, match="already holds a run"):  # only a good config gets this far
        train(parse_config(raw))
