"""Files the CLI reads or writes that are damaged, in the wrong encoding or unwritable: each is
one line naming the file and the fix (exit 2), never a traceback, and checked before work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.errors import CheckpointError
from polytask.training import checkpoint as ckpt
from tests.unit.toy import toy_config, write_toy_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("files")
    data = write_toy_jsonl(tmp / "data")
    exp = tmp / "exp.yaml"
    exp.write_text(yaml.safe_dump(toy_config(tiny_encoder_dir, data, tmp / "run", epochs=1)))
    res = runner.invoke(app, ["train", str(exp)])
    assert res.exit_code == 0, res.output
    (tmp / "in.txt").write_text("great fun movie\nawful film\n")
    return tmp


def one_line_error(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture()
def damaged(trained: Path, tmp_path: Path) -> Path:
    """A copy of the run whose every checkpoint has a truncated model.safetensors."""
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    for name in ("best", "last"):
        path = run / "checkpoints" / name / ckpt.MODEL_FILE
        if path.is_file():
            path.write_bytes(path.read_bytes()[:1000])
    return run


def test_a_truncated_model_file_is_one_line_everywhere(trained: Path, damaged: Path) -> None:
    path = damaged / "checkpoints" / "best" / ckpt.MODEL_FILE
    expected = f"{path}: cannot read the weights: the file is truncated or corrupt (1000 bytes; "
    with pytest.raises(CheckpointError) as err:
        polytask.load(str(damaged))
    assert str(err.value).startswith(expected)
    res = runner.invoke(app, ["predict", str(damaged), "-i", str(trained / "in.txt"), "-o", str(trained / "p.jsonl")])
    assert res.exit_code == 2 and one_line_error(res.output).startswith(f"error: {expected}")
    res = runner.invoke(app, ["evaluate", str(damaged)])
    assert res.exit_code == 2 and one_line_error(res.output).startswith(f"error: {expected}")


def test_a_truncated_optimizer_state_stops_resume_with_one_line(trained: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    optim = run / "checkpoints" / "last" / ckpt.OPTIM_FILE
    optim.write_bytes(optim.read_bytes()[:64])
    res = runner.invoke(app, ["train", str(trained / "exp.yaml"), "--output-dir", str(run), "--resume",
                              "--set", "train.epochs=2"])
    assert res.exit_code == 2, res.output
    assert one_line_error(res.output).startswith(
        f"error: {optim}: cannot read the optimizer state: the file is truncated or corrupt (64 bytes; ")


def test_a_latin1_input_names_the_file_and_the_conversion(trained: Path) -> None:
    src = trained / "latin1.txt"
    src.write_bytes("great fun movie\nun caf\xe9 sans go\xfbt\n".encode("latin-1"))
    res = runner.invoke(app, ["predict", str(trained / "run"), "-i", str(src), "-o", str(trained / "p.jsonl")])
    assert res.exit_code == 2
    assert one_line_error(res.output) == (
        f"error: {src}:2: not utf-8 text: byte 0xe9 at offset 22 cannot be decoded (the file is probably "
        f"Latin-1 or Windows-1252); convert it, e.g. `iconv -f latin1 -t utf-8 {src} > latin1.utf8.txt`, "
        "and predict on the converted file")


def test_unwritable_outputs_fail_before_any_work(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask.serving.inputs as inputs

    blocker = trained / "a-file"
    blocker.write_text("x")
    loads: list[str] = []
    real_load = polytask.load
    monkeypatch.setattr(polytask, "load", lambda *a, **k: loads.append("load") or real_load(*a, **k))
    res = runner.invoke(app, ["predict", str(trained / "run"), "-i", str(trained / "in.txt"),
                              "-o", str(blocker / "sub" / "p.jsonl")])
    assert res.exit_code == 2 and loads == []  # refused before the model loaded
    assert one_line_error(res.output) == (f"error: cannot write {blocker / 'sub' / 'p.jsonl'} (-o): {blocker} is a "
                                          "file, not a folder; choose another -o")
    res = runner.invoke(app, ["predict", str(trained / "run"), "-i", str(trained / "in.txt"), "-o", str(trained)])
    assert res.exit_code == 2 and "it is a folder; give a file path such as" in one_line_error(res.output)
    res = runner.invoke(app, ["evaluate", str(trained / "run"), "--output", str(blocker / "m.json")])
    assert res.exit_code == 2
    assert one_line_error(res.output) == (f"error: cannot write {blocker / 'm.json'} (--output): {blocker} is a "
                                          "file, not a folder; choose another --output")

    # a folder without write permission (faked: this suite may run as root, which ignores chmod)
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inputs.tempfile, "mkstemp", refuse)
    res = runner.invoke(app, ["predict", str(trained / "run"), "-i", str(trained / "in.txt"),
                              "-o", str(trained / "ro" / "p.jsonl")])
    assert res.exit_code == 2 and loads == []
    assert one_line_error(res.output) == (f"error: cannot write {trained / 'ro' / 'p.jsonl'} (-o): Permission denied; "
                                          f"choose another -o, or make {trained / 'ro'} writable")


def test_evaluate_prints_its_metrics_before_a_failing_write(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask.evaluation.run_eval as run_eval

    def disk_full(path: Path, obj: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_eval, "write_json", disk_full)
    out = trained / "m.json"
    res = runner.invoke(app, ["evaluate", str(trained / "run"), "--output", str(out)])
    assert res.exit_code == 2
    assert "accuracy" in res.output.split("error:")[0]  # the table came first
    assert one_line_error(res.output) == (f"error: the metrics (printed above) could not be written to {out}: No "
                                          "space left on device; choose another --output")
    monkeypatch.undo()
    res = runner.invoke(app, ["evaluate", str(trained / "run"), "--output", str(out)])
    assert res.exit_code == 0 and json.loads(out.read_text())["sent"]["n_examples"] == 32
    assert not list(trained.glob(".m.json.tmp-*"))  # written atomically, no temp file left


def test_predict_refuses_pairs_for_a_single_text_task(trained: Path) -> None:
    src = trained / "pairs.jsonl"
    src.write_text('{"text": "great fun"}\n{"text": "a film", "text_pair": "its review"}\n')
    res = runner.invoke(app, ["predict", str(trained / "run"), "-i", str(src), "-o", str(trained / "p.jsonl")])
    assert res.exit_code == 2
    assert one_line_error(res.output) == (
        f"error: {src}:2: this example has a text_pair, but task 'sent' was trained on single texts (its "
        "training data has no text_pair); leave the pair out, or train the task on pairs")


def test_read_inputs_errors_name_the_file(tmp_path: Path) -> None:
    from polytask.errors import DataError
    from polytask.serving.inputs import read_inputs

    p = tmp_path / "in.jsonl"
    p.write_text('["not", "an object"]\n')
    with pytest.raises(DataError, match=r"in.jsonl:1: no 'text' \(or 'tokens'\) key in this record"):
        read_inputs(p)
    p.write_text('{"text": "fine"}\n')
    with pytest.raises(DataError, match=r"in.jsonl: unknown encoding 'nope'"):
        read_inputs(p, encoding="nope")
    assert [e.text for e in read_inputs(p)] == ["fine"]
