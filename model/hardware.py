"""What this machine can run: the device to use, and the CPU features that decide which kernels and
precisions are fast here (bf16 is fast only where the CPU has it natively: emulated, it is many
times slower than fp32)."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from vsearch.core.errors import ModelError

# CPU flags that change which kernels torch, oneDNN and OpenVINO can use.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
                  "amx_tile", "avx512_fp16")


def choose_device(device: str | None) -> str:
    """"auto" is CUDA when torch sees a GPU, else the CPU; anything asked for must exist."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ModelError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but torch sees no CUDA GPU")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("--device mps was asked for, but torch sees no Apple GPU")
    return device


def cpu_supports_bf16() -> bool:
    """The CPU computes bf16 natively (AVX-512 BF16 or AMX), as oneDNN sees it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the flags that matter for kernels) from /proc/cpuinfo, or the platform."""
    name, flags = platform.processor() or platform.machine(), list[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name in ("", platform.processor() or platform.machine()):
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            have = set(value.split())
            flags = [f for f in RELEVANT_FLAGS if f in have]
    return name, flags
