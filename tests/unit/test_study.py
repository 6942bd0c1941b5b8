"""Label-budget studies: sampling, checks before any run, the paired test, the grid run with
kill and resume, the tidy results, the report, ``polytask runs`` and the MLflow hook."""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import load_config
from polytask.data.example import Example
from polytask.errors import ConfigError
from polytask.study import load_study, parse_study, plan_study, run_study
from polytask.study import runner as study_runner
from polytask.study.budgets import check_budgets, sample_budgets, stratified_order
from polytask.study.report import build_report
from polytask.study.results import collect_rows
from polytask.study.runner import cell_status, write_plan
from polytask.study.stats import paired_test, summarize
from polytask.training import loop
from tests.unit.toy import write_toy_jsonl, write_toy_ner

REPO = Path(__file__).resolve().parents[2]


# ---- helpers (also used by test_report_browser.py) ------------------------------------------------

def write_toy_study(tmp: Path, encoder_dir: Path, **study: Any) -> Path:
    """A toy experiment (sentiment + NER) and a study over it; returns the study file."""
    d = write_toy_jsonl(tmp / "sent", n_train=24, n_dev=8)
    n = write_toy_ner(tmp / "ner")
    exp = {
        "name": "toy",
        "encoder": {"name_or_path": str(encoder_dir)},
        "tasks": [
            {"name": "sent", "type": "classification", "data": {"train": d["train"], "dev": d["dev"]}},
            {"name": "ner", "type": "token_classification", "data": {"train": n["train"], "dev": n["dev"]}},
        ],
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "warmup_ratio": 0.0, "progress": False,
                  "eval_batch_size": 16, "max_length": 16, "log_every": 1},
    }
    (tmp / "exp.yaml").write_text(yaml.safe_dump(exp))
    spec = {
        "name": "toystudy", "output_dir": str(tmp / "study"), "experiment": "exp.yaml", "target": "sent",
        "budgets": [4, "all"], "seeds": [1, 2],
        "arms": [{"name": "full"}, {"name": "frozen", "set": {"transfer.strategy": "freeze", "train.lr": 1e-2}}],
        **study,
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fake_results(plan: Any, score: Any) -> None:
    """Write results for every cell without training: ``score(cell) -> dev accuracy``."""
    for cell in plan.cells:
        run = Path(cell.run_dir)
        run.mkdir(parents=True, exist_ok=True)
        value = score(cell)
        dev = {f"{cell.target}/accuracy": value, f"{cell.target}/loss": 1 - value, "average": value}
        if cell.arm == "multi":
            dev["ner/f1"] = 0.5
        (run / "results.json").write_text(json.dumps({
            "metric": f"{cell.target}/accuracy", "best_metric": value, "best_step": 3, "steps": 3,
            "dev": dev, "test": {}, "interrupted": False, "seconds": 1.5, "examples_per_second": 10.0,
        }))
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"split": "train", "step": s, "epoch": 0, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)))


def examples(labels: list[str]) -> list[Example]:
    return [Example(text=f"text {i}", label=y) for i, y in enumerate(labels)]


# ---- sampling --------------------------------------------------------------------------------------

def test_stratified_order_every_prefix_keeps_class_shares() -> None:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    order = stratified_order(labels, seed=3)
    assert sorted(order) == list(range(100))
    for n in range(3, 101):
        counts = Counter(labels[i] for i in order[:n])
        assert set(counts) == {"a", "b", "c"}, n  # every class from the first 3 on
        for c, share in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
            assert abs(counts[c] - share * n) <= 1.0 + 1e-9, (n, c, counts)
    assert stratified_order(labels, seed=4) != order


def test_budgets_are_nested_and_seeded() -> None:
    exs = examples(["pos", "neg"] * 20 + ["neu"] * 8)
    s1 = sample_budgets(exs, [4, 16, "all"], "total", seed=1, stratify=True)
    assert [len(s1[b]) for b in ("4", "16", "all")] == [4, 16, 48]
    assert s1["16"][:4] == s1["4"] and s1["all"][:16] == s1["16"]  # nested
    assert s1 == sample_budgets(exs, [4, 16, "all"], "total", seed=1, stratify=True)
    assert s1["16"] != sample_budgets(exs, [16], "total", seed=2, stratify=True)["16"]
    per = sample_budgets(exs, [2, 5], "per_class", seed=1, stratify=True)
    assert Counter(e.label for e in per["5"]) == {"pos": 5, "neg": 5, "neu": 5}
    assert {id(e) for e in per["2"]} <= {id(e) for e in per["5"]}


def test_budget_errors_name_the_problem() -> None:
    exs = examples(["pos", "neg", "neu"] * 4)
    with pytest.raises(ConfigError, match=r"budgets: budget 20 is larger than the 12 training examples of task 'sent'; use a budget of at most 12, or 'all'"):
        check_budgets([4, 20], "total", exs, True, "sent")
    with pytest.raises(ConfigError, match=r"budget 2 is smaller than the 3 classes of task 'sent', so some class would have no example; use a budget of at least 3"):
        check_budgets([2], "total", exs, True, "sent")
    with pytest.raises(ConfigError, match=r"budget 5 per class is more than task 'sent' has of class\(es\) neg \(4\), neu \(4\), pos \(4\); use a budget of at most 4 per class"):
        check_budgets([5], "per_class", exs, True, "sent")
    with pytest.raises(ConfigError, match="budget_unit per_class needs a classification target; task 'score' has no single class"):
        check_budgets([2], "per_class", exs, False, "score")
    check_budgets([3, 12, "all"], "total", exs, True, "sent")  # the limits themselves are fine


# ---- the paired test ---------------------------------------------------------------------------

def test_paired_t_test_matches_hand_computation() -> None:
    arm = {1: 0.80, 2: 0.70, 3: 0.90}
    base = {1: 0.70, 2: 0.65, 3: 0.80}
    d = [0.10, 0.05, 0.10]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    t = mean / (sd / math.sqrt(3))
    # Student's t with 2 degrees of freedom has a closed-form tail: P(|T| > t) = 1 - t / sqrt(t^2 + 2).
    p = 1 - t / math.sqrt(t * t + 2)
    res = paired_test(arm, base)
    assert res.n == 3 and res.wins == 3
    assert res.mean_gain == pytest.approx(mean) and res.std_gain == pytest.approx(sd)
    assert res.t == pytest.approx(t) and t == pytest.approx(5.0)
    assert res.p == pytest.approx(p) and res.p == pytest.approx(0.0377, abs=1e-4)
    # Only the shared seeds are paired; fewer than two, or identical gains, give no test.
    assert paired_test({1: 0.8, 9: 0.1}, base).note == "n/a: fewer than 2 seeds"
    same = paired_test({1: 0.8, 2: 0.7}, {1: 0.7, 2: 0.6})
    assert same.p is None and same.note == "n/a: every seed gives the same gain"
    assert summarize([1.0, 3.0]).std == pytest.approx(math.sqrt(2))


# ---- the study file ------------------------------------------------------------------------------

def test_study_schema_errors_name_the_field() -> None:
    base = {"name": "s", "experiment": "e.yaml", "target": "t", "budgets": [8], "arms": [{"name": "a"}]}
    with pytest.raises(ConfigError, match=r"unknown key 'arms.0.sett'; allowed keys here: name, set, init_from, multitask_with, description"):
        parse_study({**base, "arms": [{"name": "a", "sett": {}}]})
    with pytest.raises(ConfigError, match="arm name 'a' is used twice"):
        parse_study({**base, "arms": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match=r"baseline 'b' is not an arm; arms: a"):
        parse_study({**base, "baseline": "b"})
    with pytest.raises(ConfigError, match=r"'budgets.0'.*got 'many'"):
        parse_study({**base, "budgets": ["many"]})
    with pytest.raises(ConfigError, match="a budget must be a positive number of labels or 'all'; got 0"):
        parse_study({**base, "budgets": [0]})
    with pytest.raises(ConfigError, match="missing required key 'target'"):
        parse_study({k: v for k, v in base.items() if k != "target"})
    assert parse_study({**base, "budgets": ["all", 64, 8]}).budgets == [8, 64, "all"]


def test_bad_references_fail_before_any_run(tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir)
    spec = yaml.safe_load(path.read_text())

    def plan_with(**change: Any) -> None:
        path.write_text(yaml.safe_dump({**spec, **change}))
        plan_study(load_study(path))

    calls: list[Any] = []
    monkeypatch.setattr(loop, "train", lambda *a, **k: calls.append(a))
    with pytest.raises(ConfigError, match=r"target: target task 'nope' is not in the experiment .*exp.yaml \(tasks: sent, ner\)"):
        plan_with(target="nope")
    with pytest.raises(ConfigError, match=r"arms.0.multitask_with: arm 'mt': multitask_with names task 'pos', which is not in the experiment"):
        plan_with(arms=[{"name": "mt", "multitask_with": ["pos"]}])
    with pytest.raises(ConfigError, match=r"arm 'warm': init_from '.*no_such_run' is neither a source of this study \(sources: none\) nor a finished run"):
        plan_with(arms=[{"name": "warm", "init_from": "no_such_run"}])
    with pytest.raises(ConfigError, match=r"budget 25 is larger than the 24 training examples of task 'sent'"):
        plan_with(budgets=[25])
    with pytest.raises(ConfigError, match=r"budget 1 is smaller than the 2 classes of task 'sent'"):
        plan_with(budgets=[1])
    with pytest.raises(ConfigError, match=r"arm 'x': set 'tasks.sent.data.train' changes the target's data"):
        plan_with(arms=[{"name": "x", "set": {"tasks.sent.data.train": "other.jsonl"}}])
    with pytest.raises(ConfigError, match=r"arm 'x': .*unknown transfer strategy 'frozen'"):
        plan_with(arms=[{"name": "x", "set": {"transfer.strategy": "frozen"}}])
    with pytest.raises(ConfigError, match=r"arm 'x': .*no item named 'nope'"):
        plan_with(arms=[{"name": "x", "set": {"tasks.nope.max_length": 8}}])
    with pytest.raises(ConfigError, match="split is 'test' but target 'sent' has no test split"):
        plan_with(split="test")
    assert calls == [] and not (tmp_path / "study").exists()


def test_cell_configs(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir, arms=[
        {"name": "full"}, {"name": "multi", "multitask_with": ["ner"], "set": {"train.lr": 1e-3}}])
    plan = plan_study(load_study(path))
    assert len(plan.cells) == 2 * 2 * 2
    assert [c.key for c in plan.cells[:4]] == ["sent/full/4/seed1", "sent/multi/4/seed1",
                                               "sent/full/all/seed1", "sent/multi/all/seed1"]
    full = plan.configs["sent/full/4/seed2"]
    assert [t.name for t in full.tasks] == ["sent"]  # only the target by default
    sent = full.tasks[0]
    assert sent.data.format == "jsonl" and sent.data.train.endswith("data/sent/seed2/train-4.jsonl")
    assert sent.data.dev.endswith("data/sent/dev.jsonl") and sent.labels == ["neg", "pos"]
    assert full.train.seed == 2 and full.train.metric == "sent/accuracy"
    multi = plan.configs["sent/multi/all/seed1"]
    assert [t.name for t in multi.tasks] == ["sent", "ner"] and multi.train.lr == 1e-3
    assert multi.tasks[1].data.train == str(tmp_path / "ner" / "train.conll")  # full data, untouched
    # A source named by init_from is trained once in the study folder and starts the arm.
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = {"warm": {"experiment": "exp.yaml", "set": {"train.epochs": 2}}}
    spec["arms"].append({"name": "warm", "init_from": "warm"})
    path.write_text(yaml.safe_dump(spec))
    warm_plan = plan_study(load_study(path))
    source = warm_plan.configs["source:warm"]
    assert source.train.epochs == 2 and warm_plan.sources["warm"] == str(tmp_path / "study" / "sources" / "warm")
    assert warm_plan.configs["sent/warm/4/seed1"].transfer.init_from == warm_plan.sources["warm"]
    write_plan(plan)
    train4 = [json.loads(line) for line in Path(sent.data.train).read_text().splitlines()]
    assert len(train4) == 4 and Counter(r["label"] for r in train4) == {"neg": 2, "pos": 2}
    assert len(Path(sent.data.dev).read_text().splitlines()) == 8


# ---- the grid: end to end, killed, resumed ---------------------------------------------------------

def test_study_runs_end_to_end_and_resumes_after_a_kill(
    tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir, set={"train.max_steps": 2})
    real_train = loop.train
    calls: list[tuple[str, bool]] = []

    def killed_after_three(cfg: Any, output_dir: Any = None, resume: bool = False, overwrite: bool = False) -> Any:
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies in the 4th cell
        calls.append((str(output_dir), resume))
        return real_train(cfg, output_dir=output_dir, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(loop, "train", killed_after_three)
    # The process dies before it tidies a finished cell (see the third cell below).
    monkeypatch.setattr(study_runner, "_drop_resume_state", lambda run_dir: None)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan_study(load_study(path)))
    first = [c for c, _ in calls]
    assert len(first) == 3
    # A cell killed after its last checkpoint but before its results: it resumes, not restarts.
    (Path(first[-1]) / "results.json").unlink()
    assert cell_status(first[-1]) == "resume"

    calls.clear()
    monkeypatch.undo()
    monkeypatch.setattr(loop, "train", lambda cfg, output_dir=None, resume=False, overwrite=False: (
        calls.append((str(output_dir), resume)) or real_train(cfg, output_dir=output_dir, resume=resume, overwrite=overwrite)))
    plan = plan_study(load_study(path))
    events: list[tuple[str, str]] = []
    result = run_study(plan, on_event=lambda kind, msg: events.append((kind, msg)))
    done = [msg for kind, msg in events if kind == "done"]
    # Each finished cell says the score the report compares (test where the task has a test
    # split, else dev), named as such.
    assert len(done) == 6 and all(": test " in m or ": dev " in m for m in done), done
    assert len(calls) == 6 and (first[-1], True) in calls
    assert not set(first[:2]) & {c for c, _ in calls}  # finished cells were never re-run
    assert len(result.skipped) == 2 and len(result.trained) == 6
    assert all(cell_status(c.run_dir) == "done" for c in plan.cells)
    # Cells finished by this start keep their weights, not the optimizer state only a resume needs.
    trained_now = [Path(c) for c, _ in calls]
    assert all((c / "checkpoints/last/model.safetensors").is_file() for c in trained_now)
    assert not [c for c in trained_now if (c / "checkpoints/last/optimizer.safetensors").exists()]

    # A third start trains nothing.
    calls.clear()
    assert run_study(plan_study(load_study(path))).trained == [] and calls == []

    html, md = build_report(plan.study_dir)
    rows = list(csv.DictReader((plan.study_dir / "results.csv").open()))
    primary = [r for r in rows if r["primary"] == "True"]
    assert sorted((r["arm"], r["budget"], r["seed"]) for r in primary) == sorted(
        (a, b, s) for a in ("full", "frozen") for b in ("4", "all") for s in ("1", "2"))
    assert {r["n_train"] for r in primary} == {"4", "24"} and all(r["split"] == "dev" for r in primary)
    assert len((plan.study_dir / "results.jsonl").read_text().splitlines()) == len(rows)
    page = html.read_text()
    for needle in ("full", "frozen", "4 (4 labels)", "all (24 labels)", "Gain over the baseline full", "Versions"):
        assert needle in page
    assert page.count('<img class="plot" src="data:image/png;base64,') == 3  # learning curve, losses, dev curve
    text = md.read_text()
    assert "![Learning curves of sent](report_files/learning_curve_sent.png)" in text
    assert (plan.study_dir / "report_files" / "learning_curve_sent.png").stat().st_size > 1000


def test_changed_study_does_not_reuse_stale_cells(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir)
    plan = plan_study(load_study(path))
    write_plan(plan)
    fake_results(plan, lambda c: 0.5)
    cell = plan.cells[0]
    (Path(cell.run_dir) / "config.yaml").write_text(yaml.safe_dump(plan.configs[cell.key].model_dump(mode="json")))
    plan_study(load_study(path))  # unchanged: fine
    spec = yaml.safe_load(path.read_text())
    spec["arms"][0]["set"] = {"train.lr": 0.5}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"cell sent/full/4/seed1 finished with another configuration .* than the study now gives; delete that run directory to re-run it"):
        plan_study(load_study(path))


# ---- results and report from known scores ---------------------------------------------------------

def test_report_tables_from_known_scores(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir, seeds=[1, 2, 3], arms=[
        {"name": "full"}, {"name": "multi", "multitask_with": ["ner"]}])
    plan = plan_study(load_study(path))
    write_plan(plan)
    base = {1: 0.70, 2: 0.65, 3: 0.80}
    gain = {1: 0.10, 2: 0.05, 3: 0.10}
    fake_results(plan, lambda c: base[c.seed] + (gain[c.seed] if c.arm == "multi" else 0.0))
    (plan.study_dir / "affinity.json").write_text(json.dumps({"tasks": ["sent", "ner"], "matrix": [[0, 0.2], [-0.1, 0]]}))
    rows = collect_rows(plan.study_dir)
    assert len([r for r in rows if r["primary"]]) == 12
    html, md = build_report(plan.study_dir)
    text = md.read_text()
    assert "| full | 0.7167 ± 0.0764 (n=3) | 0.7167 ± 0.0764 (n=3) |" in text
    assert "| multi | 4 | 0.0833 | 0.0289 | 3/3 | 5.000 | 0.038 |" in text  # the hand-computed case
    assert "## sent: every task of the multi-task arms" in text and "| ner | f1 (dev) | 0.5000 ± 0.0000 |" in text
    assert "## Task affinity" in text
    page = html.read_text()
    assert page.count('<img class="plot"') == 3  # learning curve, losses, affinity
    assert "<script" not in page and "http://" not in page and "https://" not in page


# ---- CLI, runs listing, MLflow -------------------------------------------------------------------

def test_cli_check_report_and_runs(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    runner = CliRunner()
    path = write_toy_study(tmp_path, tiny_encoder_dir)
    out = runner.invoke(app, ["compare", str(path), "--check"])
    assert out.exit_code == 0, out.output
    assert "8 cells" in out.output and "frozen" in out.output and "new" in out.output
    plan = plan_study(load_study(path))
    write_plan(plan)
    fake_results(plan, lambda c: 0.5)
    out = runner.invoke(app, ["report", str(plan.study_dir)])
    assert out.exit_code == 0, out.output
    assert (plan.study_dir / "report.html").is_file()
    out = runner.invoke(app, ["runs", str(plan.study_dir / "runs")])
    assert out.exit_code == 0, out.output
    assert "8 run(s)" in out.output and "finished" in out.output
    out = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and "not a study folder (no plan.json); run `polytask compare" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "budgets": [99]}))
    out = runner.invoke(app, ["compare", str(bad)])
    assert out.exit_code == 2 and "budget 99 is larger than the 24 training examples" in out.output
    out = runner.invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and "no such folder; give a folder holding run directories" in out.output


def test_mlflow_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.tracking import TrackingError, mlflow_log_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` fail
    with pytest.raises(TrackingError, match=r"MLflow tracking needs the mlflow package, which is not installed: pip install 'polytask\[tracking\]'"):
        mlflow_log_run(run)
    with pytest.raises(Exception, match="not a polytask run directory"):
        mlflow_log_run(tmp_path / "nothing")


def test_mlflow_log_run_sends_params_metrics_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.tracking import mlflow_log_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "exp", "train": {"lr": 0.001}, "tasks": [{"name": "sent"}]}))
    (run / "metrics.jsonl").write_text(
        json.dumps({"split": "train", "step": 5, "epoch": 0, "time": 1.0, "loss": 0.5}) + "\n"
        + json.dumps({"split": "dev", "step": 5, "epoch": 0, "time": 2.0, "sent/accuracy": 0.9}) + "\n")
    (run / "results.json").write_text(json.dumps({"metric": "sent/accuracy", "best_metric": 0.9, "test": {"sent/accuracy": 0.8}}))
    log: dict[str, Any] = {"metrics": [], "artifacts": []}

    class Active:
        info = types.SimpleNamespace(run_id="r1")

        def __enter__(self) -> Active:
            return self

        def __exit__(self, *a: Any) -> None:
            pass

    fake = types.SimpleNamespace(
        set_tracking_uri=lambda uri: log.update(uri=uri),
        set_experiment=lambda name: log.update(experiment=name),
        start_run=lambda run_name: log.update(run_name=run_name) or Active(),
        log_params=lambda p: log.update(params=p),
        set_tag=lambda k, v: None,
        log_metric=lambda k, v, step=None: log["metrics"].append((k, v, step)),
        log_artifact=lambda p: log["artifacts"].append(Path(p).name),
    )
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    assert mlflow_log_run(run, tracking_uri="file:/tmp/x") == "r1"
    assert log["uri"] == "file:/tmp/x" and log["experiment"] == "exp" and log["run_name"] == "run"
    assert log["params"] == {"name": "exp", "train.lr": "0.001", "tasks.0.name": "sent"}
    assert ("train/loss", 0.5, 5) in log["metrics"] and ("dev/sent/accuracy", 0.9, 5) in log["metrics"]
    assert ("test/sent/accuracy", 0.8, None) in log["metrics"] and ("best/sent/accuracy", 0.9, None) in log["metrics"]
    assert log["artifacts"] == ["config.yaml", "results.json", "metrics.jsonl"]


# ---- shipped examples ------------------------------------------------------------------------------

def test_every_example_study_loads_and_validates() -> None:
    studies = sorted((REPO / "examples" / "studies").glob("*.yaml"))
    assert studies, "examples/studies/ holds no study"
    for path in studies:
        study = load_study(path)  # the study schema
        load_config(study.experiment, [])  # the base experiment's schema
        for src in study.sources.values():
            load_config(src.experiment, [])
        for arm in study.arms:
            assert arm.init_from is None or arm.init_from in study.sources or Path(arm.init_from).is_absolute()


# ---- --check catches init_from mismatches; a failing cell does not stop the study ----------------

def test_check_catches_an_init_from_source_of_another_encoder_type(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir)
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = {"lstm": {"experiment": "exp.yaml", "set": {"encoder.type": "bilstm"}}}
    spec["arms"].append({"name": "warm", "init_from": "lstm"})
    path.write_text(yaml.safe_dump(spec))
    message = ("arm 'warm': init_from source 'lstm' trains a 'bilstm' encoder, but this arm's experiment has "
               "encoder.type 'transformer'; set encoder.type (and its settings) in the arm's set to match the "
               "source, or start from another source")
    with pytest.raises(ConfigError) as err:
        plan_study(load_study(path))
    assert message in str(err.value)
    out = CliRunner().invoke(app, ["compare", str(path), "--check"])
    assert out.exit_code == 2 and message in out.output.replace("\n", " ").replace("  ", " ")
    assert not (tmp_path / "study").exists()  # nothing trained, nothing written

    # a finished run of another encoder type (its checkpoint's config says so)
    run = tmp_path / "lstm_run"
    cdir = run / "checkpoints" / "best"
    cdir.mkdir(parents=True)
    config = load_config(tmp_path / "exp.yaml").model_dump(mode="json")
    config["encoder"]["type"] = "bilstm"
    (cdir / "meta.json").write_text(json.dumps({"format_version": 1, "config": config, "tasks": {}}))
    spec["sources"] = {}
    spec["arms"][-1] = {"name": "warm", "init_from": str(run)}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"arm 'warm': .*init_from .*lstm_run: that run's encoder is 'bilstm', this "
                                          r"experiment's is 'transformer'; set encoder.type to match"):
        plan_study(load_study(path))


def _fake_train(fail: dict[str, BaseException]) -> Any:
    """loop.train stand-in: writes a finished run's results, or raises for the named cells."""
    from types import SimpleNamespace

    def train(cfg: Any, output_dir: Any = None, resume: bool = False, overwrite: bool = False) -> Any:
        run = Path(output_dir)
        for part, exc in fail.items():
            if part in str(run):
                raise exc
        run.mkdir(parents=True, exist_ok=True)
        target = cfg.tasks[0].name
        (run / "results.json").write_text(json.dumps({
            "metric": f"{target}/accuracy", "best_metric": 0.5, "best_step": 1, "steps": 1,
            "dev": {f"{target}/accuracy": 0.5, "average": 0.5}, "test": {}, "interrupted": False,
            "seconds": 1.0, "examples_per_second": 1.0}))
        (run / "metrics.jsonl").write_text(json.dumps({"split": "train", "step": 1, "epoch": 0, "loss": 1.0}) + "\n")
        return SimpleNamespace(interrupted=False, metric=f"{target}/accuracy", best_metric=0.5, seconds=1.0)

    return train


def test_a_failing_cell_is_reported_and_the_study_goes_on(tmp_path: Path, tiny_encoder_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.errors import DataError

    path = write_toy_study(tmp_path, tiny_encoder_dir)
    fail = {"frozen/4/seed1": DataError("dev.jsonl:3: bad row"), "full/all/seed2": RuntimeError("CUDA out of memory")}
    monkeypatch.setattr(loop, "train", _fake_train(fail))
    events: list[tuple[str, str]] = []
    result = run_study(plan_study(load_study(path)), lambda k, m: events.append((k, m)))
    assert result.failed == [("sent/frozen/4/seed1", "dev.jsonl:3: bad row"),
                             ("sent/full/all/seed2", "RuntimeError: CUDA out of memory")]
    assert len(result.trained) == 6  # every other cell ran
    assert ("fail", "sent/frozen/4/seed1 failed: dev.jsonl:3: bad row") in events

    # the CLI lists the failures at the end and exits 1; the report is still written
    assert not (tmp_path / "study/runs/sent/frozen/4/seed1/results.json").exists()
    out = CliRunner().invoke(app, ["compare", str(path)])
    assert out.exit_code == 1, out.output
    assert "0 run(s) trained, 6 finished before, 2 failed" in out.output
    assert "2 cell(s) failed" in out.output
    assert "sent/frozen/4/seed1: dev.jsonl:3: bad row" in out.output
    assert "sent/full/all/seed2: RuntimeError: CUDA out of memory" in out.output
    assert (tmp_path / "study" / "report.html").is_file()
    # --no-keep-going stops at the first failure, as before
    out = CliRunner().invoke(app, ["compare", str(path), "--no-keep-going"])
    assert out.exit_code == 2 and "study cell sent/frozen/4/seed1: dev.jsonl:3: bad row" in out.output


def test_cells_of_a_failed_source_are_failed_without_training(tmp_path: Path, tiny_encoder_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.errors import DataError

    path = write_toy_study(tmp_path, tiny_encoder_dir, seeds=[1])
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = {"warm": {"experiment": "exp.yaml"}}
    spec["arms"].append({"name": "warm", "init_from": "warm"})
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(loop, "train", _fake_train({"sources/warm": DataError("source data broke")}))
    result = run_study(plan_study(load_study(path)))
    assert result.failed == [("source:warm", "source data broke"),
                             ("sent/warm/4/seed1", "its init_from source 'warm' failed"),
                             ("sent/warm/all/seed1", "its init_from source 'warm' failed")]
    assert len(result.trained) == 4  # full and frozen at both budgets
