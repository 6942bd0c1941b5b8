"""``polytask tune``: a resumable Optuna study of tiny training runs, its best config and report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config.loader import load_config
from polytask.errors import ConfigError
from polytask.tuning import PruningCallback, read_space, tune
from tests.unit.toy import toy_config, write_toy_jsonl

optuna = pytest.importorskip("optuna")
runner = CliRunner()
SPACE = {
    "train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [8, 16]},
}


@pytest.fixture()
def files(tmp_path: Path, tiny_encoder_dir: Path) -> dict[str, Path]:
    data = write_toy_jsonl(tmp_path / "data", n_train=32, n_dev=16)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(toy_config(tiny_encoder_dir, data, tmp_path / "unused", epochs=1)))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    return {"exp": exp, "space": space, "study": tmp_path / "study"}


def test_a_killed_search_resumes_and_writes_the_best_config(files: dict[str, Path]) -> None:
    first = tune(files["exp"], files["space"], trials=2, directory=files["study"])
    assert first.states == {"complete": 2}
    # A search killed in the middle of its third trial leaves that trial RUNNING in the study.
    storage = f"sqlite:///{(files['study'] / 'study.db').resolve()}"
    killed = optuna.load_study(study_name="toy", storage=storage).ask()
    assert killed.number == 2

    res = runner.invoke(app, ["tune", str(files["exp"]), "--space", str(files["space"]), "--trials", "3",
                              "--output-dir", str(files["study"])])
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="toy", storage=storage)
    states = [(t.number, t.state.name) for t in study.trials]
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL"), (3, "COMPLETE")]  # 2 old + 1 new
    assert "study " in res.output and "3 complete, 1 fail" in res.output
    best = study.best_trial
    assert f"best: trial {best.number}, objective {best.value:.4f}" in res.output

    written = (files["study"] / "best_config.yaml").read_text()
    assert written.startswith(f"# best of 3 finished trials (trial {best.number}): sent/accuracy = {best.value:.4f}")
    cfg = yaml.safe_load(written)
    assert cfg["train"]["lr"] == pytest.approx(best.params["train.lr"]) and cfg["train"]["batch_size"] == best.params["train.batch_size"]
    assert cfg["output_dir"] is None
    load_config(files["study"] / "best_config.yaml")  # a valid experiment file as written
    assert sorted(p.name for p in (files["study"] / "trials").iterdir()) == ["trial-0000", "trial-0001", "trial-0003"]

    page = (files["study"] / "report.html").read_text()
    assert "<h1>Study toy</h1>" in page and "4 trials (3 finished)" in page
    assert "alt='parallel coordinates' src='data:image/png;base64," in page
    assert "<h2>Parameter importance (Optuna's default evaluator)</h2>" in page and "<td style='text-align:left'>train.lr</td>" in page
    assert page.count("<tr><td>") >= 4 and "<td>fail</td>" in page


def test_a_finished_study_runs_no_more_trials(files: dict[str, Path]) -> None:
    tune(files["exp"], files["space"], trials=1, directory=files["study"])
    again = tune(files["exp"], files["space"], trials=1, directory=files["study"])
    assert again.states == {"complete": 1}


def test_pruning_stops_a_trial_below_the_median(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    cb = PruningCallback(good, "sent/accuracy")
    assert cb.on_evaluate(10, {"sent/accuracy": 0.9}) is None
    study.tell(good, 0.9)
    poor = study.ask()
    cb = PruningCallback(poor, "sent/accuracy")
    assert cb.on_evaluate(10, {"sent/accuracy": 0.4}) is True and cb.pruned
    assert cb.on_evaluate(20, {"other": 1.0}) is None  # no objective in this evaluation: no report


@pytest.mark.parametrize(("text", "message"), [
    ("{}", "the search space is empty; give at least one key (e.g. train.lr)"),
    ("train.lr: 0.1", "search space key 'train.lr': give a mapping with type: float | int | categorical"),
    ("train.lr: {type: float, low: 1, high: 0}", "search space key 'train.lr': a float range needs numbers low < high (got low=1, high=0)"),
    ("train.lr: {type: float, low: 0, high: 1, log: true}", "search space key 'train.lr': log: true needs low > 0 (got 0)"),
    ("train.batch_size: {type: categorical, choices: []}", "search space key 'train.batch_size': a categorical range needs a non-empty choices list"),
    ("train.lr: {type: float, low: 0.1, high: 1, lo: 2}", "search space key 'train.lr': unknown field(s) lo; allowed: type, low, high, log, step, choices"),
])
def test_bad_search_spaces_are_named(tmp_path: Path, text: str, message: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        read_space(space)
    assert message in str(info.value) and str(space) in str(info.value)


def test_a_searched_key_the_config_rejects_fails_before_any_trial(files: dict[str, Path]) -> None:
    files["space"].write_text("train.lrr: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'"):
        tune(files["exp"], files["space"], trials=1, directory=files["study"])
    assert not (files["study"] / "study.db").exists()


def test_a_trial_the_pruner_stops_is_recorded_as_pruned(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the callback protocol, as train() calls it: trial 0 scores 0.9 at each evaluation,
    later trials 0.1, which the median rule stops at their first evaluation."""
    from types import SimpleNamespace

    import polytask.tuning as tuning

    def fake_train(cfg, out, callbacks):  # noqa: ANN001, ANN202
        value = 0.9 if out.name == "trial-0000" else 0.1
        stopped = False
        for step in (10, 20):
            if any(cb.on_evaluate(step, {"sent/accuracy": value, "sent/loss": 1 - value}) for cb in callbacks):
                stopped = True
                break
        return SimpleNamespace(metric="sent/accuracy", best_metric=value, run_dir=out, seconds=0.1, stopped_early=stopped)

    monkeypatch.setattr(tuning, "_train", fake_train)
    result = tune(files["exp"], files["space"], trials=3, directory=files["study"], startup_trials=1)
    assert result.states == {"complete": 1, "pruned": 2} and result.best_trial == 0 and result.best_value == 0.9
    page = (files["study"] / "report.html").read_text()
    assert page.count("<td>pruned</td>") == 2
