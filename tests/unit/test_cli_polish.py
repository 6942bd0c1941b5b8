"""CLI details a new user meets: --version, help texts, rounding, no wrapping off a terminal,
string fields given as YAML booleans, offline hub ids."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from polytask import __version__
from polytask.cli import app
from polytask.commands._common import format_metric, make_console, metrics_table
from polytask.config.loader import apply_overrides, load_config, parse_config
from polytask.errors import ConfigError

runner = CliRunner()


def test_version() -> None:
    import transformers

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.startswith(f"polytask {__version__} (torch ")
    assert f"transformers {transformers.__version__})" in res.output


def test_help_keeps_brackets_and_explains_checkpoint() -> None:
    res = runner.invoke(app, ["runs", "--help"])
    assert "needs polytask[tracking])" in " ".join(res.output.split())
    for command in ("evaluate", "predict"):
        res = runner.invoke(app, [command, "--help"])
        assert "Which checkpoint: best (the best dev score; falls back to last) or last." in " ".join(res.output.split())


def test_metrics_are_rounded_and_counts_are_integers() -> None:
    assert format_metric(0.5966666666666667, "accuracy") == "0.5967"
    assert format_metric(1821.0, "n_examples") == "1821" and format_metric(1821.0, "sent/n_examples") == "1821"
    assert format_metric(1.0, "accuracy") == "1.0000" and format_metric(12, "steps") == "12"
    out = io.StringIO()
    Console(file=out, width=200).print(metrics_table("sent", {"accuracy": 0.5966666666666667, "n_examples": 1821.0}))
    assert "0.5967" in out.getvalue() and " 1821 " in out.getvalue() and "1821.0" not in out.getvalue()


def test_no_wrapping_when_output_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stdout", buf)
    console = make_console()
    long = "run " + "runs/a-very-long-study-name/arm=glove,budget=1000,seed=3/" * 4
    console.print(long, markup=False)
    assert buf.getvalue() == long + "\n"


def test_mixed_precision_no_is_accepted_from_the_command_line_and_the_file(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("tasks:\n  - {name: a, type: classification, data: {train: x.jsonl}}\ntrain: {mixed_precision: no}\n")
    assert load_config(exp).train.mixed_precision == "no"  # YAML 1.1 reads `no` as false
    cfg = load_config(exp, ["train.mixed_precision=no", "train.cpu=yes", "train.progress=off"])
    assert (cfg.train.mixed_precision, cfg.train.cpu, cfg.train.progress) == ("no", True, False)
    raw = apply_overrides({"tasks": [{"name": "a", "type": "classification", "data": {"train": "x"}}]}, ["tasks.a.options.flag=yes"])
    assert parse_config(raw).tasks[0].options == {"flag": True}  # free-form options keep the boolean
    with pytest.raises(ConfigError, match=r"'train.mixed_precision': Input should be 'auto', 'no', 'fp16' or 'bf16' \(got 'maybe'\)"):
        load_config(exp, ["train.mixed_precision=maybe"])


def test_offline_hub_id_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.encoders.transformer import TransformerEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=(
        r"cannot load encoder 'someone/not-cached-model': it is not a local folder, and the Hugging Face Hub "
        r"cannot be reached: HF_HUB_OFFLINE=1 is set \(offline mode\)\. Give a local folder")):
        TransformerEncoder.from_pretrained("someone/not-cached-model")
    assert time.perf_counter() - start < 1.0

    from tests.conftest import go_online_without_a_route

    go_online_without_a_route(monkeypatch)
    with pytest.raises(ConfigError, match=r"cannot be reached: no route to huggingface.co:443 \(\[Errno 101\] Network is unreachable\)"):
        TransformerEncoder.from_pretrained("someone/not-cached-model")


def test_offline_hub_id_in_the_local_cache_loads_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from polytask.encoders.transformer import _check_hub_id

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--someone--cached").mkdir()
    assert _check_hub_id("someone/cached", "someone/cached") is True  # local_files_only, no retries
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("polytask.hub.offline_reason", lambda timeout=3.0: None)
    assert _check_hub_id("someone/cached", "someone/cached") is False  # online: the normal load
