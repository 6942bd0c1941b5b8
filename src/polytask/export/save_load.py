"""Rebuild a trained model from a run directory or checkpoint folder (never unpickles)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polytask.config.loader import parse_config
from polytask.config.schema import ExperimentConfig
from polytask.encoders import ENCODERS
from polytask.errors import CheckpointError
from polytask.multitask.model import PolytaskModel, build_weighting_for
from polytask.tasks import build_task
from polytask.tasks.base import Task
from polytask.training import checkpoint as ckpt


@dataclass
class LoadedRun:
    model: PolytaskModel
    tasks: dict[str, Task]
    config: ExperimentConfig
    checkpoint_dir: Path
    meta: dict


def find_checkpoint(path: str | Path, checkpoint: str = "best") -> Path:
    """The checkpoint folder for a run directory (``best``, falling back to ``last``) or itself."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory")
    direct = ckpt.resolve_dir(path)
    if direct is not None and (direct / ckpt.MODEL_FILE).is_file():
        return direct
    order = [checkpoint] + (["last"] if checkpoint == "best" else [])
    for name in order:
        found = ckpt.resolve_dir(path / "checkpoints" / name)
        if found is not None:
            return found
    raise CheckpointError(
        f"{path}: no checkpoint found (looked for checkpoints/{' and checkpoints/'.join(order)}); "
        "is this a polytask run directory, and did training save at least one evaluation?"
    )


def load_run(path: str | Path, checkpoint: str = "best") -> LoadedRun:
    """Model, tasks (with their label sets) and config of a saved run, in eval mode on the CPU."""
    cdir = find_checkpoint(path, checkpoint)
    meta = ckpt.load_meta(cdir)
    cfg = parse_config(meta["config"])
    enc_cls = ENCODERS.get(cfg.encoder.type, field="encoder.type")
    encoder = enc_cls.from_files(cdir / ckpt.ENCODER_DIR, pooling=cfg.encoder.pooling)
    tasks: dict[str, Task] = {}
    for tcfg in cfg.tasks:
        task = build_task(tcfg, cfg.train.max_length)
        task.load_state(meta["tasks"][tcfg.name])
        tasks[tcfg.name] = task
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout,
                          weighting=build_weighting_for(cfg, list(tasks)))
    state = ckpt.load_model_state(cdir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{cdir}: weights do not fit the saved architecture "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.eval()
    return LoadedRun(model, tasks, cfg, cdir, meta)
