"""The study report's tables and figures: per-seed values, dev next to test, secondary metrics,
cost per arm, and dev-metric curves over steps with seeds told apart."""

from __future__ import annotations

import json
from pathlib import Path

from polytask.study import load_study, plan_study
from polytask.study.report import build_report
from polytask.study.runner import write_plan
from tests.unit.test_study import fake_results, write_toy_study


def test_report_shows_seeds_dev_and_test_secondary_metrics_cost_and_dev_curves(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = write_toy_study(tmp_path, tiny_encoder_dir, seeds=[1, 2], arms=[
        {"name": "full"}, {"name": "frozen", "set": {"transfer.strategy": "freeze"}}])
    plan = plan_study(load_study(path))
    write_plan(plan)
    fake_results(plan, lambda c: 0.6 + 0.1 * c.seed + (0.05 if c.arm == "full" else 0.0))
    for cell in plan.cells:  # a test score, a secondary metric and dev records over steps
        run = Path(cell.run_dir)
        res = json.loads((run / "results.json").read_text())
        res["test"] = {f"{cell.target}/accuracy": res["best_metric"] - 0.1}
        res["dev"][f"{cell.target}/macro_f1"] = 0.5
        res["seconds"] = 2.0 if cell.arm == "full" else 1.0
        (run / "results.json").write_text(json.dumps(res))
        with open(run / "metrics.jsonl", "a") as fh:
            for s in (1, 3):
                fh.write(json.dumps({"split": "dev", "step": s, f"{cell.target}/accuracy": 0.1 * s + 0.01 * cell.seed}) + "\n")
    html, md = build_report(plan.study_dir)
    text = md.read_text()
    assert "| full | s1: 0.7500, s2: 0.8500 | s1: 0.7500, s2: 0.8500 |" in text  # every seed's value
    assert "| arm | budget | accuracy (dev) | accuracy (test) |" in text
    assert "| full | 4 | 0.8000 ± 0.0707 | 0.7000 ± 0.0707 |" in text  # dev and test side by side
    assert "| macro_f1 | full | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 |" in text  # secondary metrics
    assert "| arm | train seconds per cell | parameters | size on disk |" in text
    assert "| full | 2.0 (n=4) | n/a | n/a |" in text and "| frozen | 1.0 (n=4) |" in text
    assert "![Dev accuracy over steps of sent](report_files/dev_sent.png)" in text
    page = html.read_text()
    assert 'alt="Dev accuracy over steps of sent"' in page and "img { width: 100%;" in page
    assert (plan.study_dir / "report_files/dev_sent.png").stat().st_size > 10_000
