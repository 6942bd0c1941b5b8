"""Every shipped example config trains for two steps on small slices of its real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polytask.config import load_config
from polytask.training.loop import train

pytestmark = pytest.mark.integration
# Training configs only: a `polytask pretrain` config has no `tasks` (test_pretrain covers those).
EXAMPLES = [p for p in sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
            if "tasks" in yaml.safe_load(p.read_text())]
# Keep the slow parts of a strategy small as well: a few contrastive pairs instead of thousands.
EXTRA = {"few_shot_sst2": ["transfer.options.contrastive_few_shot.num_iterations=1"],
         # Greedy, short generations: an untrained decoder otherwise writes max_new_tokens per input.
         "seq2seq_multi30k": ["tasks.0.options.num_beams=1", "tasks.0.options.max_new_tokens=8"]}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_trains(path: Path, shared_data: Path, tmp_path: Path) -> None:
    n_tasks = len(yaml.safe_load(path.read_text())["tasks"])
    overrides = ["train.max_steps=2", "train.batch_size=4", "train.eval_batch_size=16", "train.progress=false"]
    overrides += [f"tasks.{i}.data.limit=16" for i in range(n_tasks)] + EXTRA.get(path.stem, [])
    result = train(load_config(path, overrides), output_dir=tmp_path / "run")
    assert result.steps == 2 and result.dev and not result.interrupted
