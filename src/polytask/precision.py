"""Which numeric precision a step runs in: ``auto`` picks bf16 where the device computes it fast.

bf16 autocast pays on a CPU with AMX or AVX512-BF16 (a MiniLM training step about 1.7x faster,
inference about 2x) and on a CUDA device that supports bf16; elsewhere bf16 is emulated and
slower than fp32, so ``auto`` keeps fp32 there. Autocast only lowers the precision of the
operations run inside it (matmuls, convolutions, LSTMs): the weights and the optimizer state
stay fp32 (the master copy), so no loss scaling is needed.

Setting the environment variable ``POLYTASK_PRECISION`` (``fp32`` or ``bf16``) decides what
``auto`` resolves to on this machine; the test suite sets ``fp32`` so that its stored losses do
not depend on the CPU the tests run on. An explicit ``no``/``fp16``/``bf16`` is always kept.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path

import torch

ENV = "POLYTASK_PRECISION"
CHOICES = ("auto", "no", "fp16", "bf16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16).

    torch's own dispatch level (``torch.backends.cpu.get_cpu_capability``) answers ``AVX512``
    on such a CPU too, so it cannot tell them apart; the flags can. ``AMX`` in torch's answer
    (newer builds) is taken as a yes.
    """
    if any(flag in cpu_flags() for flag in CPU_BF16_FLAGS):
        return True
    try:
        return "AMX" in torch.backends.cpu.get_cpu_capability().upper()
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16() -> bool:
    """True when the current CUDA device supports bf16."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def device_type(cpu: bool = False, device: str | torch.device | None = None) -> str:
    """The device kind a run will use: ``device``'s, else ``cpu`` if asked or without CUDA."""
    if device is not None:
        return torch.device(device).type
    return "cpu" if cpu or not torch.cuda.is_available() else "cuda"


def resolve(requested: str, device: str) -> str:
    """The precision a run really uses: ``no`` (fp32), ``fp16`` or ``bf16``.

    Args:
        requested: the configured value, ``auto``, ``no``, ``fp16`` or ``bf16``.
        device: the device type, ``cpu``, ``cuda``, ``mps``...
    """
    if requested != "auto":
        return requested
    forced = os_choice()
    if forced is not None:
        return forced
    if device == "cpu":
        return "bf16" if cpu_has_bf16() else "no"
    if device == "cuda":
        return "bf16" if cuda_has_bf16() else "no"
    return "no"


def os_choice() -> str | None:
    """What ``POLYTASK_PRECISION`` makes ``auto`` resolve to (None: not set)."""
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    if value in ("fp32", "no", "float32"):
        return "no"
    if value in ("bf16", "bfloat16"):
        return "bf16"
    from polytask.errors import ConfigError

    raise ConfigError(f"environment variable {ENV}={value!r}: use fp32 or bf16 (or unset it for auto)")


def label(precision: str) -> str:
    """How a resolved precision is shown: ``fp32``, ``bf16`` (autocast), ``fp16`` (autocast)."""
    return "fp32" if precision == "no" else f"{precision} autocast"


def autocast(precision: str, device: str) -> AbstractContextManager:
    """An autocast context for ``precision`` (resolved) on ``device`` (type); fp32: nothing."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device, dtype=torch.float16)
    return nullcontext()
