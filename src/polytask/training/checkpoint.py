"""Checkpoints: safetensors for tensors, JSON for everything else; never pickle.

A checkpoint is a folder::

    model.safetensors      every weight (encoder + heads)
    meta.json              format version, resolved config, task states (labels), versions, step
    encoder/               what rebuilds the encoder without weights (architecture, tokenizer)
    optimizer.safetensors  optimizer tensors               } only in "last", for --resume
    trainer_state.json     loop position, scheduler, RNGs  }

Folders are written beside their final place and renamed into it, so a crash or Ctrl-C at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from polytask.errors import CheckpointError
from polytask.io import commit_dir, write_dir, write_json, write_with  # noqa: F401  (commit_dir, write_json: re-exported)

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
ENCODER_DIR = "encoder"


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint."""
    import transformers

    from polytask import __version__

    return {"polytask": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _tensors_for_saving(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses views that share storage; a contiguous CPU copy of each is always safe.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write one safetensors file atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: save_file(_tensors_for_saving(tensors), str(tmp)))


def load_tensors(path: Path, what: str = "tensors", fix: str | None = None) -> dict[str, torch.Tensor]:
    """Read one safetensors file; a missing, truncated or corrupt file is one CheckpointError
    naming it and the fix, never a library traceback.

    Args:
        path: the file.
        what: what the file holds, for the message ("the weights", "the optimizer state").
        fix: what to do about it (default: restore the file or train again).
    """
    path = Path(path)
    fix = fix or "restore the file from a copy, or train the run again"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({what}); {fix}")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own, OSError or ValueError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: cannot read {what}: the file is truncated or corrupt ({size} bytes; {reason}); {fix}"
        ) from None


def resolve_dir(final: Path) -> Path | None:
    """The checkpoint folder to read: ``final``, or its previous version if a crash hit mid-swap."""
    if (final / META_FILE).is_file():
        return final
    old = final.with_name(f".old-{final.name}")
    if (old / META_FILE).is_file():
        return old
    return None


def save_checkpoint(
    final: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    encoder_files: Path | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        final: the checkpoint folder (``run/checkpoints/last``).
        model_state: the model's state dict.
        meta: JSON-ready metadata (config, task states, step, metrics).
        encoder_files: a folder whose files rebuild the encoder (copied into ``encoder/``).
        optimizer: saved for exact resume when given.
        trainer_state: loop position and scheduler state, saved with the RNG states.
    """
    def write(tmp: Path) -> None:
        save_file(_tensors_for_saving(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt"})
        write_json(tmp / META_FILE, {"format_version": FORMAT_VERSION, "versions": versions(), **meta})
        if encoder_files is not None:
            shutil.copytree(encoder_files, tmp / ENCODER_DIR)
        if optimizer is not None:
            tensors, groups = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / OPTIM_FILE))
            rng_tensors, rng_json = _rng_state()
            save_file(rng_tensors, str(tmp / "rng.safetensors"))
            write_json(tmp / STATE_FILE, {**(trainer_state or {}), "param_groups": groups, "rng": rng_json})

    return write_dir(final, write)


def load_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: not a polytask checkpoint (no {META_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: corrupt metadata ({exc}); the file is truncated or damaged: restore it from a "
            "copy, or train the run again"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the metadata ({exc.strerror or exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt metadata (not a JSON object); restore it or train the run again")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format_version')} is not supported "
            f"(this polytask reads format {FORMAT_VERSION})"
        )
    return meta


def load_model_state(directory: Path) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint. Only safetensors are read: pickle files are refused."""
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file():
        pickles = [p.name for p in directory.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        hint = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise CheckpointError(f"{directory}: no {MODEL_FILE}{hint}")
    other = "last" if directory.name == "best" else "best" if directory.name == "last" else None
    fix = "restore it from a copy, or train the run again" + (
        f" (the run's '{other}' checkpoint may still be whole: --checkpoint {other})" if other else "")
    return load_tensors(path, "the weights", fix)


def load_training_state(directory: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimizer and RNG states; return the trainer state (loop position, scheduler)."""
    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{directory}: no {STATE_FILE}; this checkpoint cannot be resumed")
    fix = ("this checkpoint cannot be resumed: restore the file, or start the run again with "
           "--overwrite (the weights alone can still be loaded, evaluated or used as init_from)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        groups, rng = state.pop("param_groups"), state.pop("rng")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{state_path}: corrupt trainer state ({type(exc).__name__}: {exc}); {fix}") from None
    tensors = load_tensors(directory / OPTIM_FILE, "the optimizer state", fix)
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, groups))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{directory / OPTIM_FILE}: the optimizer state does not fit this model's optimizer ({exc}); {fix}"
        ) from None
    rng_tensors = load_tensors(directory / "rng.safetensors", "the random-number state", fix)
    try:
        _set_rng_state(rng_tensors, rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{directory / 'rng.safetensors'}: corrupt random-number state ({exc}); {fix}") from None
    return state


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{pid}.{key}"] = t.detach().to("cpu").contiguous().clone()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        pid, _, key = name.partition(".")
        state.setdefault(int(pid), {})[key] = t
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def _set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
