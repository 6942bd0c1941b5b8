"""polytask: transfer learning and multi-task learning for text, measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from polytask.serving.predictor import BasePredictor


def load(
    run_dir: str,
    checkpoint: str = "best",
    device: str | None = None,
    backend: str = "auto",
    num_threads: int | None = None,
    precision: str = "auto",
) -> BasePredictor:
    """Load a finished run (or an ONNX export of one) for prediction:
    ``polytask.load("runs/x").predict(["text"])``.

    Args:
        run_dir: a run directory, a checkpoint folder inside one, or a ``polytask export onnx`` folder.
        checkpoint: ``best`` (falls back to ``last``) or ``last``.
        device: ``cpu``, ``cuda``...; the GPU when one is present otherwise.
        backend: ``torch``, ``onnx`` (ONNX Runtime, from the ``onnx`` extra), or ``auto`` (``onnx``
            for an export folder, ``torch`` otherwise).
        num_threads: CPU threads for inference; None keeps the library default.
        precision: ``auto`` (bf16 autocast on a CPU with AMX/AVX512-BF16 or a bf16 GPU, fp32
            elsewhere), ``no`` (fp32), ``bf16`` or ``fp16``; torch backend only.
    """
    from polytask.serving.predictor import load_predictor

    return load_predictor(run_dir, checkpoint=checkpoint, device=device, backend=backend, num_threads=num_threads,
                          precision=precision)


def train(config, output_dir: str | None = None, resume: bool = False, overwrite: bool = False):  # noqa: ANN001, ANN201
    """Train an experiment (an ExperimentConfig or a YAML path) and return its TrainResult.

    Args:
        config: the experiment, or the path of its YAML file.
        output_dir: the run directory (default ``output_dir`` of the config, or ``runs/<name>``).
        resume: continue the run in ``output_dir`` exactly where it stopped.
        overwrite: replace a finished or stopped run in ``output_dir``.
    """
    from polytask.config import ExperimentConfig, load_config
    from polytask.training.loop import train as _train

    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    return _train(cfg, output_dir=output_dir, resume=resume, overwrite=overwrite)


def distill(config, student=None, resume: bool = False, overwrite: bool = False):  # noqa: ANN001, ANN201
    """Distil a finished run into a student; returns the student run's TrainResult.

    ``polytask.distill("distill.yaml")``, or a mapping / ``DistillConfig`` with its student
    ``ExperimentConfig``. See ``polytask.procedures.distill``.

    Args:
        config: the distill config: a YAML path, a mapping, or a ``DistillConfig``.
        student: with a ``DistillConfig``, the student's ``ExperimentConfig``.
        resume: continue the student run where it stopped.
        overwrite: replace an existing student run.
    """
    from polytask.procedures.distill import DistillConfig, load_distill_config, parse_distill_config
    from polytask.procedures.distill import distill as _distill

    if isinstance(config, DistillConfig):
        if student is None:
            raise TypeError("polytask.distill(DistillConfig, student): pass the student's ExperimentConfig")
        dcfg = config
    elif isinstance(config, dict):
        dcfg, student = parse_distill_config(config)
    else:
        dcfg, student = load_distill_config(config)
    return _distill(dcfg, student, resume=resume, overwrite=overwrite)


def transferability(config, sources: list[str], **kwargs):  # noqa: ANN001, ANN003, ANN201
    """Rank candidate sources for a target task from frozen features, before any training.

    ``polytask.transferability("target.yaml", ["default", "bilstm:glove-6b-50d", "runs/imdb"])``
    returns a ``TransferabilityResult`` (LogME, LEEP, H-score, kNN and logistic probes per source).
    See ``polytask.transferability.ranking.transferability`` for every argument.

    Args:
        config: the target experiment (its first task is the target), a YAML path or a mapping.
        sources: the candidate sources' spellings.
        **kwargs: task, budget, seed, estimates, options, rank_by, batch_size, max_length.
    """
    from polytask.transferability.ranking import transferability as _transferability

    return _transferability(config, sources, **kwargs)


__all__ = ["__version__", "distill", "load", "train", "transferability"]
