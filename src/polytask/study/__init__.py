"""Label-budget studies: run arms x budgets x seeds, compare with a baseline, report.

``polytask compare study.yaml`` is ``run_compare``: load and check the study, run its grid
(resumable), write ``results.csv`` / ``results.jsonl`` and the report.
"""

from __future__ import annotations

from polytask.study.config import ArmConfig, SourceConfig, StudyConfig, load_study, parse_study
from polytask.study.runner import StudyPlan, StudyRun, cell_status, plan_study, run_study

__all__ = [
    "ArmConfig",
    "SourceConfig",
    "StudyConfig",
    "StudyPlan",
    "StudyRun",
    "cell_status",
    "load_study",
    "parse_study",
    "plan_study",
    "run_study",
]
