"""The `make demo` study, shrunk: every arm and the source train a step on the packaged data with
the packaged MiniLM and GloVe vectors, and the report and summary come out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from polytask import demo

pytestmark = pytest.mark.integration

TINY = ["train.max_steps=1", "train.max_length=16", "train.batch_size=4", "train.eval_batch_size=100",
        "train.progress=false", "tasks.wnut_ner.data.limit=8"]


def test_demo_study_runs_at_tiny_scale(tmp_path: Path) -> None:
    missing = [d for m, d in demo.DEMO_PACKAGES.items() if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"demo data packages not installed: {', '.join(missing)} (pip install 'polytask[demo]')")
    spec = yaml.safe_load(demo.DEMO_STUDY.read_text())
    here = demo.DEMO_STUDY.parent
    spec.update(budgets=[5], seeds=[1], experiment=str((here / spec["experiment"]).resolve()))
    for src in spec["sources"].values():
        src["experiment"] = str((here / src["experiment"]).resolve())
    study = tmp_path / "demo.yaml"
    study.write_text(yaml.safe_dump(spec, sort_keys=False))

    console = Console(record=True, width=200)
    result = demo.run_demo(tmp_path / "out", TINY, console, study_path=study)
    assert not result.run.interrupted
    assert result.run.trained == ["source:wnut"] + [f"bbc_topic/{a}/5/seed1" for a in (
        "scratch_bilstm", "glove_bilstm", "minilm_full", "wnut_then_bbc", "multitask_wnut")]
    assert result.html.is_file() and result.markdown.is_file()
    assert "bbc_topic: accuracy on 300 held-out examples (dev)" in result.summary
    assert all(f"| {arm}" in result.summary for arm in ("scratch_bilstm", "glove_bilstm", "multitask_wnut"))
    assert f"report: {result.html}" in console.export_text()
