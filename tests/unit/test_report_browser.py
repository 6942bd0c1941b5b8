"""The study report as a person sees it: rendered by headless Chromium (Debian's ``chromium``,
installed by tests/setup_browser.sh), driven over the DevTools protocol with playwright.

Checks: every figure loaded (an ``<img>`` with a decoded, non-empty image), the expected number
of figures, no console errors or failed requests, and the page's text holds every arm and
budget. A full-page screenshot is written to the test's output folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from polytask.study import load_study, plan_study
from polytask.study.report import build_report
from polytask.study.runner import write_plan
from tests.unit.test_study import fake_results, write_toy_study

pytestmark = pytest.mark.system  # starts other programs

CHROMIUM = Path("/usr/bin/chromium")


def _browser_or_skip() -> str:
    if not CHROMIUM.is_file():
        found = shutil.which("chromium")
        if found is None:
            pytest.skip("Chromium is not installed: run tests/setup_browser.sh (apt-get install chromium)")
        return found
    return str(CHROMIUM)


def test_report_renders_in_headless_chromium(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    executable = _browser_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

    path = write_toy_study(tmp_path, tiny_encoder_dir, seeds=[1, 2, 3], arms=[
        {"name": "full"}, {"name": "frozen", "set": {"transfer.strategy": "freeze"}},
        {"name": "multi", "multitask_with": ["ner"]}])
    plan = plan_study(load_study(path))
    write_plan(plan)
    fake_results(plan, lambda c: 0.6 + 0.05 * c.seed + {"full": 0.0, "frozen": -0.05, "multi": 0.1}[c.arm]
                 + (0.1 if c.budget == "all" else 0.0))
    (plan.study_dir / "affinity.json").write_text(json.dumps({"tasks": ["sent", "ner"], "matrix": [[0.0, 0.3], [0.1, 0.0]]}))
    html, _ = build_report(plan.study_dir)

    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # a browser that cannot start here is an environment problem
            pytest.skip(f"Chromium at {executable} does not start: {exc}")
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({alt: e.alt, complete: e.complete, w: e.naturalWidth, h: e.naturalHeight}))")
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()

    # Learning curve, training losses, affinity heatmap.
    assert [i["alt"] for i in images] == ["Learning curves of sent", "Training loss of sent", "Task affinity heatmap"]
    for img in images:
        assert img["complete"] and img["w"] > 200 and img["h"] > 100, img
    assert errors == []
    for needle in ("full", "frozen", "multi", "4 (4 labels)", "all (24 labels)", "every task of the multi-task arms"):
        assert needle in text
    shot = tmp_path / "report.png"
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
