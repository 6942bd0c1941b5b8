"""Every shipped example config trains for two steps on small slices of its real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polytask.config import load_config
from polytask.training.loop import train

pytestmark = pytest.mark.integration
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_trains(path: Path, shared_data: Path, tmp_path: Path) -> None:
    n_tasks = len(yaml.safe_load(path.read_text())["tasks"])
    overrides = ["train.max_steps=2", "train.batch_size=4", "train.eval_batch_size=16", "train.progress=false"]
    overrides += [f"tasks.{i}.data.limit=16" for i in range(n_tasks)]
    result = train(load_config(path, overrides), output_dir=tmp_path / "run")
    assert result.steps == 2 and result.dev and not result.interrupted
