"""Rebuild a trained model from a run directory or checkpoint folder (never unpickles).

Most runs save every weight. A run whose strategy saves only part of them (``lora``: adapters and
heads) is rebuilt from its starting encoder (``encoder.name_or_path``, or the ``transfer.init_from``
run's encoder), the strategy's ``setup`` (adapters injected), then the saved weights; by default
the adapters are merged into the base weights, so the loaded model is a plain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polytask.config.loader import parse_config
from polytask.config.schema import ExperimentConfig
from polytask.encoders import ENCODERS, Encoder, build_encoder
from polytask.errors import CheckpointError, ConfigError
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


def starting_encoder(cfg: ExperimentConfig) -> Encoder:
    """The encoder a run of ``cfg`` starts from, with its weights: the ``transfer.init_from``
    run's trained encoder (merged, if that run used lora), or the pretrained ``encoder.name_or_path``.
    """
    if not cfg.transfer.init_from:
        return build_encoder(cfg.encoder)
    from polytask.transfer.init_from_run import source_checkpoint

    src = source_checkpoint(cfg.transfer.init_from, cfg.encoder.type)
    # load_run rebuilds any source run (full or adapters-only) with its trained encoder weights.
    return load_run(src).model.encoder


def load_run(
    path: str | Path, checkpoint: str = "best", merge: bool = True, base_encoder: str | None = None
) -> LoadedRun:
    """Model, tasks (with their label sets) and config of a saved run, in eval mode on the CPU.

    Args:
        path: a run directory or a checkpoint folder.
        checkpoint: ``best`` (falling back to ``last``) or ``last``.
        merge: for an adapters-only run (``lora``), add the adapters into the base weights, so the
            model is a plain one (as fast as the base); False keeps the adapter layers.
        base_encoder: for an adapters-only run, load the base encoder from here instead of the
            run's ``encoder.name_or_path`` (the base model moved); it must hold the same weights.
    """
    cdir = find_checkpoint(path, checkpoint)
    meta = ckpt.load_meta(cdir)
    cfg = parse_config(meta["config"])
    tasks: dict[str, Task] = {}
    for tcfg in cfg.tasks:
        task = build_task(tcfg, cfg.train.max_length)
        task.load_state(meta["tasks"][tcfg.name])
        tasks[tcfg.name] = task
    weighting = build_weighting_for(cfg, list(tasks))
    state = ckpt.load_model_state(cdir)
    from polytask.transfer.lora import uses_lora

    if uses_lora(cfg):
        model = _load_adapters_run(cfg, cdir, tasks, weighting, state, merge, base_encoder)
    else:
        enc_cls = ENCODERS.get(cfg.encoder.type, field="encoder.type")
        encoder = enc_cls.from_files(cdir / ckpt.ENCODER_DIR, pooling=cfg.encoder.pooling)
        model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout, weighting=weighting)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{cdir}: weights do not fit the saved architecture "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
    model.eval()
    return LoadedRun(model, tasks, cfg, cdir, meta)


def _load_adapters_run(cfg, cdir, tasks, weighting, state, merge, base_encoder) -> PolytaskModel:  # noqa: ANN001
    """Starting encoder + lora setup + the saved adapters and heads (+ merge)."""
    from polytask.transfer import build_strategies
    from polytask.transfer.lora import Lora, merge_adapters

    source = base_encoder or cfg.transfer.init_from or cfg.encoder.name_or_path
    try:
        if base_encoder is not None:
            encoder = build_encoder(cfg.encoder.model_copy(update={"name_or_path": base_encoder}))
        else:
            encoder = starting_encoder(cfg)
    except (ConfigError, CheckpointError) as exc:
        field = "transfer.init_from" if cfg.transfer.init_from and base_encoder is None else "encoder.name_or_path"
        raise CheckpointError(
            f"{cdir}: this lora run saved only its adapters and heads; its base encoder {source!r} "
            f"({field}) cannot be loaded ({exc}). Put the base model back there, or pass "
            "load_run(..., base_encoder=<folder with the same weights>)"
        ) from exc
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout, weighting=weighting)
    for member in build_strategies(cfg.transfer).members:
        if isinstance(member, Lora):
            member.setup(model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes: another base model
        raise CheckpointError(
            f"{cdir}: the saved adapters do not fit the base encoder {source!r} "
            f"({' '.join(str(exc).split())[:300]}...); "
            "the base model must be the one the run was trained from"
        ) from exc
    not_saved = [k for k in missing if not k.startswith("encoder.") or ".lora_" in k]
    if unexpected or not_saved:
        raise CheckpointError(
            f"{cdir}: weights do not fit the saved architecture "
            f"(missing {not_saved[:5]}, unexpected {unexpected[:5]})"
        )
    if merge:
        merge_adapters(model.encoder.model)
    return model
