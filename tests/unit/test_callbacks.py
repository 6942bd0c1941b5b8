"""Callbacks and live trackers, driven directly as the training loop will call them."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from polytask.callbacks import Callback, CallbackList, TrackingError, build_callbacks
from polytask.config.loader import parse_config
from polytask.errors import ConfigError

CFG = parse_config({
    "name": "cb-test",
    "tasks": [{"name": "sent", "type": "classification", "data": {"train": "x.jsonl"}}],
    "train": {"lr": 3e-4},
})
RESULT = SimpleNamespace(steps=20, test={"sent/accuracy": 0.75, "sent/n_examples": 8}, best_metric=0.8,
                         metric="sent/accuracy", interrupted=False)


def drive(cb: Callback, run_dir: Path) -> None:
    """What a 20-step run with two evaluations and a save sends."""
    cb.on_log(10, {"loss": 0.7, "lr": 3e-4, "examples_per_second": 50.0, "epoch": 0})
    cb.on_evaluate(10, {"sent/accuracy": 0.6, "sent/loss": 0.65, "average": 0.6})
    cb.on_log(20, {"loss": 0.5, "lr": 0.0, "examples_per_second": 55.0, "epoch": 1})
    cb.on_evaluate(20, {"sent/accuracy": 0.8, "sent/loss": 0.5, "average": 0.8})
    cb.on_save(20, run_dir / "checkpoints/best")
    (run_dir / "config.yaml").write_text("name: cb-test\n")
    (run_dir / "results.json").write_text('{"steps": 20}\n')
    cb.on_end(RESULT)


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None, fail_end: bool = False):
        self.calls: list[tuple[str, Any]] = []
        self.stop_at, self.fail_end = stop_at, fail_end

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        self.calls.append(("log", step))

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> bool | None:
        self.calls.append(("evaluate", step))
        return step == self.stop_at

    def on_save(self, step: int, path: Path) -> None:
        self.calls.append(("save", step))

    def on_end(self, result: Any) -> None:
        self.calls.append(("end", result.steps))
        if self.fail_end:
            raise RuntimeError("tracker down")


def test_callback_list_calls_every_callback_and_stops_when_one_asks(tmp_path: Path) -> None:
    a, b = Recorder(stop_at=20), Recorder()
    both = CallbackList([a, b])
    assert both.on_evaluate(10, {}) is False
    assert both.on_evaluate(20, {}) is True  # a asks; b still saw the evaluation
    assert b.calls == [("evaluate", 10), ("evaluate", 20)]
    assert Callback().on_evaluate(1, {}) is None  # the base class is all no-ops


def test_a_failing_on_end_does_not_skip_the_others(tmp_path: Path) -> None:
    a, b = Recorder(fail_end=True), Recorder()
    with pytest.raises(RuntimeError, match="tracker down"):
        CallbackList([a, b]).on_end(RESULT)
    assert b.calls == [("end", 20)]


def test_build_callbacks_names_the_known_trackers(tmp_path: Path) -> None:
    assert build_callbacks([], tmp_path, CFG) == [] and build_callbacks(None, tmp_path, CFG) == []
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord' \(field train.report_to\); known: .*mlflow.*tensorboard.*wandb"):
        build_callbacks(["tensorbord"], tmp_path, CFG)
    with pytest.raises(ConfigError, match=r"tracker 'tensorboard' is named twice; name each once"):
        build_callbacks(["tensorboard", "tensorboard"], tmp_path, CFG)


def test_tensorboard_receives_train_dev_and_test_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (cb,) = build_callbacks(["tensorboard"], tmp_path, CFG)
    drive(cb, tmp_path)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("dev/sent/accuracy")] == [(10, 0.6), (20, 0.8)]
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("train/loss")] == [(10, 0.7), (20, 0.5)]
    assert [(e.step, e.value) for e in acc.Scalars("test/sent/accuracy")] == [(20, 0.75)]
    assert "train/epoch" not in acc.Tags()["scalars"]


def test_mlflow_receives_params_metrics_per_step_and_files(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from polytask.callbacks.mlflow import MLflowCallback, MLflowOptions

    cb = MLflowCallback(tmp_path, CFG, MLflowOptions(tracking_uri=uri))
    drive(cb, tmp_path)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(cb.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == tmp_path.name
    assert client.get_experiment(run.info.experiment_id).name == "cb-test"
    assert run.data.params["train.lr"] == "0.0003" and run.data.params["tasks.0.name"] == "sent"
    history = client.get_metric_history(cb.run_id, "dev/sent/accuracy")
    assert sorted((m.step, m.value) for m in history) == [(10, 0.6), (20, 0.8)]
    assert [(m.step, m.value) for m in client.get_metric_history(cb.run_id, "train/loss")] == [(10, 0.7), (20, 0.5)]
    assert run.data.metrics["test/sent/accuracy"] == 0.75 and run.data.metrics["best/sent/accuracy"] == 0.8
    assert sorted(a.path for a in client.list_artifacts(cb.run_id)) == ["config.yaml", "results.json"]
    assert (tmp_path / "mlartifacts").is_dir()  # next to the SQLite store


def test_mlflow_by_name_uses_the_environment_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (cb,) = build_callbacks(["mlflow"], tmp_path, CFG)
    cb.on_end(SimpleNamespace(steps=3, test={}, best_metric=None, metric="m", interrupted=True))
    assert MlflowClient(tracking_uri=uri).get_run(cb.run_id).info.status == "KILLED"


@pytest.mark.parametrize(("name", "text"), [
    ("mlflow", "train.report_to names mlflow, which is not installed: pip install 'polytask[tracking]' (or pip install mlflow), or remove mlflow from train.report_to"),
    ("wandb", "train.report_to names wandb, which is not installed: pip install wandb, or remove wandb from train.report_to"),
])
def test_a_missing_tracker_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes `import <name>` fail
    with pytest.raises(TrackingError) as info:
        build_callbacks([name], tmp_path, CFG)
    assert str(info.value) == text


def test_wandb_runs_offline_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (cb,) = build_callbacks(["wandb"], tmp_path, CFG)
    assert cb.run.settings.mode == "offline"
    drive(cb, tmp_path)
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_report_to_trackers_receive_what_train_logs(tmp_path, tiny_encoder_dir, toy, monkeypatch) -> None:  # noqa: ANN001
    """``train.report_to`` builds the trackers; train() calls them (MLflow gets the metrics)."""
    pytest.importorskip("mlflow")
    from polytask.config import parse_config
    from polytask.training.loop import train
    from tests.unit.toy import toy_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    seen: list[tuple[str, int]] = []

    class Spy:
        def on_log(self, step, record):  # noqa: ANN001, ANN202
            seen.append(("log", step))

        def on_evaluate(self, step, metrics):  # noqa: ANN001, ANN202
            seen.append(("evaluate", step))

        def on_save(self, step, path):  # noqa: ANN001, ANN202
            seen.append(("save", step))

        def on_end(self, result):  # noqa: ANN001, ANN202
            seen.append(("end", result.steps))

    raw = toy_config(tiny_encoder_dir, toy, tmp_path / "run", epochs=1, log_every=4, report_to=["mlflow"])
    train(parse_config(raw), callbacks=[Spy()])
    assert ("log", 4) in seen and ("evaluate", 8) in seen and ("save", 8) in seen and seen[-1] == ("end", 8)
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in history] == [4, 8]
