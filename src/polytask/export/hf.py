"""Export the fine-tuned encoder as a standard transformers folder (``AutoModel.from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

from polytask.errors import CheckpointError
from polytask.export.save_load import load_run


def export_hf(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best") -> Path:
    """Write the run's encoder (weights as safetensors, config, tokenizer) to ``out_dir``.

    Task heads are not part of a transformers base model; they stay in the polytask run.
    """
    run = load_run(run_dir, checkpoint)
    hf_model = getattr(run.model.encoder, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise CheckpointError(f"{run_dir}: encoder type {run.config.encoder.type!r} is not a transformers model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out, safe_serialization=True)
    run.model.encoder.tokenizer.save_pretrained(out)
    return out
