"""The run folder: its layout, finding a checkpoint, loading a run, the encoder a run starts from.

A run directory::

    config.yaml            the resolved experiment
    encoder/               what rebuilds the encoder without weights (architecture, tokenizer)
    anchor.safetensors     the starting encoder weights, when a strategy needs them (l2_sp)
    init_from.json         what an ``init_from`` start loaded, skipped and added
    metrics.jsonl, tb/     logs
    results.json           the summary of a finished (or interrupted) run
    checkpoints/best/      the best evaluation's weights  } see ``training/checkpoint.py``
    checkpoints/last/      the latest, with optimizer and loop state for --resume

Every path string of that layout lives here. Loading never unpickles. Which weights a checkpoint
holds, and how a model is made ready to take them, is the transfer strategies' business
(``checkpoint_state`` / ``restore`` / ``merge``): nothing here names a strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # the layout is read by light commands (polytask runs): models load lazily
    from polytask.config.schema import ExperimentConfig
    from polytask.encoders import Encoder
    from polytask.multitask.model import PolytaskModel
    from polytask.tasks.base import Task

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
ANCHOR_FILE = "anchor.safetensors"
INIT_REPORT_FILE = "init_from.json"
CHECKPOINTS_DIR = "checkpoints"
ENCODER_DIR = "encoder"  # training.checkpoint.ENCODER_DIR: also inside every checkpoint
CHECKPOINT_NAMES = ("best", "last")
LOCK_FILE = ".lock"  # the process that writes the run: {"pid", "host", "since"}


def default_run_dir(cfg: ExperimentConfig) -> Path:
    """``cfg.output_dir``, else ``runs/<name>``."""
    return Path(cfg.output_dir or Path("runs") / cfg.name)


def checkpoint_dir(run_dir: str | Path, name: str) -> Path:
    """Where checkpoint ``name`` (``best`` or ``last``) of a run is written."""
    if name not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINT_NAMES)}; got {name!r}")
    return Path(run_dir) / CHECKPOINTS_DIR / name


def existing_checkpoint(run_dir: str | Path, name: str) -> Path | None:
    """The readable folder of checkpoint ``name`` (its previous version after a crash mid-swap)."""
    from polytask.training import checkpoint as ckpt

    return ckpt.resolve_dir(checkpoint_dir(run_dir, name))


class RunLock:
    """An exclusive claim on a run folder while a process writes it.

    The lock file holds the owner's pid and host. A second writer is refused with who holds it; a
    lock left by a process that is gone (same host, pid not running) is taken over with a note.

    Args:
        run_dir: the run folder (created if needed).
        note: where a take-over message goes (default: stderr).
    """

    def __init__(self, run_dir: str | Path, note: Callable[[str], None] | None = None):
        self.path = Path(run_dir) / LOCK_FILE
        self.note = note or (lambda text: print(text, file=__import__("sys").stderr))
        self.held = False

    def acquire(self) -> RunLock:
        import json
        import os
        import socket
        import time

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner, me["host"]):
                    raise CheckpointError(
                        f"{self.path.parent} is in use by process {owner.get('pid')} on {owner.get('host')} "
                        f"(since {owner.get('since')}); wait for it to finish or stop it. If no such "
                        f"process runs, delete {self.path}"
                    ) from None
                self.note(f"taking over {self.path}: its process {owner and owner.get('pid')} is gone")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise CheckpointError(f"{self.path}: could not take the run folder's lock; try again")

    def _owner(self) -> dict | None:
        import json

        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable or half-written: a crash while taking it

    @staticmethod
    def _stale(owner: dict, host: str) -> bool:
        import os

        if owner.get("host") != host:
            return False  # another machine's process cannot be checked from here
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError):
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete half-written checkpoint folders a killed process left (``checkpoints/.tmp-*``).

    Only the lock holder calls this, so no other process is writing them.
    """
    import shutil

    found = sorted((Path(run_dir) / CHECKPOINTS_DIR).glob(".tmp-*"))
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found


def truncate_metrics(run_dir: str | Path, step: int) -> int:
    """Drop the log lines a killed run wrote after ``step`` (the checkpoint a resume starts from),
    so a resumed run's ``metrics.jsonl`` has no duplicates. Returns how many were dropped."""
    import json

    from polytask.io import write_text

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


@dataclass
class LoadedRun:
    model: PolytaskModel
    tasks: dict[str, Task]
    config: ExperimentConfig
    checkpoint_dir: Path
    meta: dict


def find_checkpoint(path: str | Path, checkpoint: str = "best") -> Path:
    """The checkpoint folder for a run directory (``best``, falling back to ``last``) or itself."""
    from polytask.training import checkpoint as ckpt

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory")
    direct = ckpt.resolve_dir(path)
    if direct is not None and (direct / ckpt.MODEL_FILE).is_file():
        return direct
    order = [checkpoint] + (["last"] if checkpoint == "best" else [])
    for name in order:
        found = existing_checkpoint(path, name)
        if found is not None:
            if name != checkpoint:
                import warnings

                warnings.warn(f"{path}: no {checkpoint} checkpoint (no evaluation finished?); using {name}",
                              UserWarning, stacklevel=2)
            return found
    raise CheckpointError(
        f"{path}: no checkpoint found (looked for checkpoints/{' and checkpoints/'.join(order)}); "
        "is this a polytask run directory, and did training save at least one evaluation?"
    )


def load_run(
    path: str | Path, checkpoint: str = "best", merge: bool = True, base_encoder: str | None = None
) -> LoadedRun:
    """Model, tasks (with their label sets) and config of a saved run, in eval mode on the CPU.

    A run whose strategies save every weight is rebuilt from its own encoder files. One that saves
    only part of them (``lora``: adapters and heads) is rebuilt from its starting encoder, made
    ready by the strategies' ``restore``, then given the saved weights.

    Args:
        path: a run directory or a checkpoint folder.
        checkpoint: ``best`` (falling back to ``last``) or ``last``.
        merge: let the strategies fold what they added into plain weights (lora: the adapters
            into the base weights, so the model is as fast as the base); False keeps them.
        base_encoder: for a partial-checkpoint run, load the starting encoder from here instead of
            the run's ``encoder.name_or_path`` (the base model moved); it must hold the same weights.
    """
    from polytask.config.loader import parse_config
    from polytask.multitask.model import PolytaskModel, build_weighting_for
    from polytask.tasks import build_task
    from polytask.training import checkpoint as ckpt
    from polytask.transfer import build_strategies

    cdir = find_checkpoint(path, checkpoint)
    meta = ckpt.load_meta(cdir)
    cfg = parse_config(meta["config"])
    tasks: dict[str, Task] = {}
    for tcfg in cfg.tasks:
        task = build_task(tcfg, cfg.train.max_length)
        task.load_state(meta["tasks"][tcfg.name])
        tasks[tcfg.name] = task
    strategies = build_strategies(cfg.transfer)
    if strategies.saves_full_model:
        encoder = load_encoder_files(cfg, cdir / ckpt.ENCODER_DIR)
    else:
        partial = "+".join(m.registry_name for m in strategies.members if not m.saves_full_model)
        encoder = _base_encoder(cfg, cdir, base_encoder, partial)
    model = PolytaskModel(encoder, tasks, dropout=cfg.encoder.dropout, weighting=build_weighting_for(cfg, list(tasks)))
    strategies.restore(model)
    load_weights(model, cdir, strategies, source=base_encoder or cfg.transfer.init_from or cfg.encoder.name_or_path)
    if merge:
        strategies.merge(model)
    model.eval()
    return LoadedRun(model, tasks, cfg, cdir, meta)


def load_weights(model: PolytaskModel, cdir: Path, strategies: Any, source: str | None = None) -> None:
    """Load checkpoint ``cdir``'s weights into ``model``; they must be exactly the weights the
    strategies' ``checkpoint_state`` keeps (all of them by default)."""
    from polytask.training import checkpoint as ckpt

    state = ckpt.load_model_state(cdir)
    expected = set(strategies.checkpoint_state(model, model.state_dict()))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes: another base model
        raise CheckpointError(
            f"{cdir}: the saved weights do not fit the model built from {source!r} "
            f"({' '.join(str(exc).split())[:300]}...); the base model must be the one the run was trained from"
        ) from exc
    missing = [k for k in missing if k in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{cdir}: weights do not fit the saved architecture (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def _base_encoder(cfg: ExperimentConfig, cdir: Path, base_encoder: str | None, partial: str) -> Encoder:
    from polytask.encoders import build_encoder

    source = base_encoder or cfg.transfer.init_from or cfg.encoder.name_or_path
    try:
        if base_encoder is not None:
            return build_encoder(cfg.encoder.model_copy(update={"name_or_path": base_encoder}))
        return starting_encoder(cfg)[0]
    except (ConfigError, CheckpointError) as exc:
        field = "transfer.init_from" if cfg.transfer.init_from and base_encoder is None else "encoder.name_or_path"
        raise CheckpointError(
            f"{cdir}: this {partial} run saved only part of its weights; its base encoder "
            f"{source!r} ({field}) cannot be loaded ({exc}). Put the base model back there, or pass "
            "load_run(..., base_encoder=<folder with the same weights>)"
        ) from exc


def load_encoder_files(cfg: ExperimentConfig, directory: Path) -> Encoder:
    """The encoder rebuilt from a checkpoint's (or run's) ``encoder/`` files; damaged or missing
    files are one CheckpointError naming the folder, not the library's traceback."""
    cls = encoder_class(cfg)
    try:
        return cls.from_files(directory, pooling=cfg.encoder.pooling)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers/tokenizers/json raise many kinds here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{directory}: the encoder files are damaged or missing ({first}); this checkpoint cannot be "
            "loaded. Restore the folder from a copy, or train afresh with --overwrite"
        ) from None


def encoder_class(cfg: ExperimentConfig) -> type[Encoder]:
    from polytask.encoders import ENCODERS

    return ENCODERS.get(cfg.encoder.type, field="encoder.type")


def starting_encoder(cfg: ExperimentConfig, texts: Callable[[], Iterator[str]] | None = None) -> tuple[Encoder, Any]:
    """The encoder a run of ``cfg`` starts from, and what an ``init_from`` start loaded.

    That is the ``transfer.init_from`` run's trained encoder with its tokenizer (a run with a
    partial checkpoint is loaded whole, what its strategies added merged in), or the pretrained
    ``encoder.name_or_path``; a word encoder builds its vocabulary from ``texts``.

    Returns:
        (encoder, report): the report (``InitReport``) is None without ``init_from``.
    """
    from polytask.config.loader import parse_config
    from polytask.encoders import build_encoder
    from polytask.multitask.model import PolytaskModel
    from polytask.training import checkpoint as ckpt
    from polytask.transfer import build_strategies
    from polytask.transfer.init_from_run import InitReport, load_matching, source_checkpoint

    if not cfg.transfer.init_from:
        return build_encoder(cfg.encoder, texts=texts), None
    src = source_checkpoint(cfg.transfer.init_from, cfg.encoder.type)
    src_cfg = parse_config(ckpt.load_meta(src)["config"])
    if not build_strategies(src_cfg.transfer).saves_full_model:
        # A partial source holds no base weights: its trained encoder is the rebuilt one, whole.
        source_model = load_run(src).model
        report = InitReport(source=cfg.transfer.init_from)
        report.loaded = [k for k in source_model.state_dict() if k.startswith("encoder.")]
        report.skipped = [k for k in source_model.state_dict() if not k.startswith("encoder.")]
        return source_model.encoder, report
    encoder = load_encoder_files(cfg, src / ckpt.ENCODER_DIR)
    # Matching runs on a model without heads: the report's "new" lists only encoder tensors.
    return encoder, load_matching(PolytaskModel(encoder, {}), src, cfg.transfer.init_from)
