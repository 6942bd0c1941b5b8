"""``polytask compare``: a study from its file to its report, as one library call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polytask.study.config import load_study
from polytask.study.report import build_report
from polytask.study.runner import StudyRun, plan_study, run_study


@dataclass
class CompareResult:
    run: StudyRun
    html: Path | None  # None when the study was interrupted before the report
    markdown: Path | None


def run_compare(
    study_path: str | Path,
    output_dir: str | Path | None = None,
    on_event: Callable[[str, str], None] | None = None,
    keep_going: bool = True,
) -> CompareResult:
    """Load and check a study, run its unfinished cells, write results and the report.

    Args:
        study_path: the study YAML.
        output_dir: the study folder (default: the file's ``output_dir`` or ``studies/<name>``).
        on_event: progress callback ``(kind, message)``.
        keep_going: go on with the other cells when one fails (listed in ``run.failed``).

    The report is written also when some cells were interrupted (it lists them as unfinished).
    """
    plan = plan_study(load_study(study_path), output_dir)
    run = run_study(plan, on_event, keep_going=keep_going)
    html, md = build_report(plan.study_dir)
    return CompareResult(run, html, md)
