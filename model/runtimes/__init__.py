"""Runtimes: where the model's arithmetic runs, one module each behind one protocol (base.Runtime).

The registry, `RUNTIMES`, is what every caller iterates (the calibration, the CLI's help, the
benchmarks), and a choice among them is a value, `Choice(runtime, precision, batch)`, never a
string to parse. A new runtime (ONNX Runtime, TensorRT, OpenVINO on a GPU or NPU) is one module
that implements `Runtime`, and one line in `RUNTIMES`.
"""

from __future__ import annotations

from vsearch.core.errors import ModelError, RuntimeUnavailable
from vsearch.model.runtimes.base import PRECISIONS, Choice, Forward, Loaded, Runtime
from vsearch.model.runtimes.openvino import OpenVINO
from vsearch.model.runtimes.pytorch import Torch

__all__ = ["PRECISIONS", "RUNTIMES", "Choice", "Forward", "Loaded", "Runtime", "check", "get", "names"]

RUNTIMES: tuple[Runtime, ...] = (Torch(), OpenVINO())


def names() -> tuple[str, ...]:
    return tuple(r.name for r in RUNTIMES)


def get(name: str) -> Runtime:
    for runtime in RUNTIMES:
        if runtime.name == name:
            return runtime
    raise ModelError(f"unknown runtime {name!r}; choose from auto, {', '.join(names())}")


def check(choice: Choice, device: str) -> Runtime:
    """The runtime of `choice`, if it can run its precision on `device` here; else why not."""
    runtime = get(choice.runtime)
    if not runtime.available():
        raise RuntimeUnavailable(f"--runtime {runtime.name} needs {runtime.name}, which is not installed: "
                                 f"{runtime.install_hint()}")
    can = runtime.precisions(device)
    if not can:
        raise RuntimeUnavailable(f"--runtime {runtime.name} does not run on {device} here; use --device cpu")
    if choice.precision not in can:
        raise RuntimeUnavailable(f"--runtime {runtime.name} runs {' or '.join(can)} on {device}, "
                                 f"not {choice.precision}")
    if choice.streams not in runtime.streams(device):
        raise RuntimeUnavailable(f"{runtime.name} runs one request at a time on {device} here, not {choice.streams}"
                                 if runtime.streams(device) == (1,) else
                                 f"{runtime.name} runs up to {max(runtime.streams(device))} requests side by side "
                                 f"on {device} here, not {choice.streams}")
    return runtime
