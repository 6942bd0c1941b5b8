"""ONNX Runtime backend of the Predictor: same inputs, same batching, same decoded outputs.

The session itself (graph, manifest, tasks, tokenizer) is ``export.onnx_runtime.OnnxSession``;
this backend puts the predictor's batching and decoding around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from polytask.export.onnx import MANIFEST_FILE, export_onnx, is_onnx_export
from polytask.export.onnx_runtime import MISSING, OnnxSession, require_onnxruntime
from polytask.serving.predictor import BasePredictor

RUN_CACHE_DIR = "onnx"  # inside a checkpoint folder: a new checkpoint is a new folder, never stale

__all__ = ["MANIFEST_FILE", "MISSING", "OnnxPredictor", "is_onnx_export", "require_onnxruntime"]


class OnnxPredictor(BasePredictor):
    """A predictor running an exported ONNX graph with ONNX Runtime.

    Args:
        directory: an ONNX export folder (``polytask_onnx.json`` + ``model.onnx`` + ``tokenizer/``).
        device: ``cpu`` (default) or ``cuda`` (needs onnxruntime-gpu).
        batch_size: inputs per forward pass.
        num_threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
    """

    def __init__(
        self, directory: str | Path, device: str | None = None, batch_size: int = 64, num_threads: int | None = None
    ):
        self.runtime = OnnxSession(directory, device=device, num_threads=num_threads)
        super().__init__(self.runtime.tasks, self.runtime.tokenizer, batch_size)
        self.directory = self.runtime.directory
        self.manifest = self.runtime.manifest
        self.config = self.runtime.config

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        checkpoint: str = "best",
        device: str | None = None,
        batch_size: int = 64,
        num_threads: int | None = None,
    ) -> OnnxPredictor:
        """Load an export folder; a run directory is exported once into its checkpoint's ``onnx/``."""
        if not is_onnx_export(path):
            from polytask.runs import find_checkpoint

            require_onnxruntime()
            cache = find_checkpoint(path, checkpoint) / RUN_CACHE_DIR
            if not is_onnx_export(cache):
                export_onnx(cache.parent, cache)
            path = cache
        return cls(path, device=device, batch_size=batch_size, num_threads=num_threads)

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``."""
        return self.runtime.precision

    def _logits(self, batch: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        return self.runtime.forward_all(batch, names)
