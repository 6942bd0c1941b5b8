"""Export the fine-tuned encoder as a standard transformers folder (``AutoModel.from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

from polytask.errors import CheckpointError
from polytask.runs import load_run


def export_hf(
    run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", base_encoder: str | None = None
) -> Path:
    """Write the run's encoder (weights as safetensors, config, tokenizer) to ``out_dir``.

    Task heads are not part of a transformers base model; they stay in the polytask run. A
    ``lora`` run is exported with its adapters merged into the base weights: a plain model of the
    base architecture, which needs neither peft nor polytask to load.

    Args:
        run_dir: the run directory (or a checkpoint folder).
        out_dir: the folder to write.
        checkpoint: ``best`` or ``last``.
        base_encoder: for a lora run whose base model moved, where it is now (see ``load_run``).
    """
    run = load_run(run_dir, checkpoint, merge=True, base_encoder=base_encoder)
    hf_model = getattr(run.model.encoder, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise CheckpointError(f"{run_dir}: encoder type {run.config.encoder.type!r} is not a transformers model")
    leftover = [n for n, _ in hf_model.named_parameters() if ".lora_" in n]
    if leftover:  # merge_adapters replaces every adapted layer; this would be a polytask bug
        raise CheckpointError(f"{run_dir}: adapters left after merging ({leftover[:3]}); please report this")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out, safe_serialization=True)
    run.model.encoder.tokenizer.save_pretrained(out)
    return out
