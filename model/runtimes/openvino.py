"""OpenVINO: the same VideoMAE, converted once and compiled for the CPU, a runtime beside torch.

Why: on a 2-core AVX-512 BF16 EPYC, VideoMAE-base ran 2.17 s/window in torch fp32, 1.36 in torch
bf16, 1.00 in OpenVINO bf16 and 0.59 in OpenVINO int8 (docs/speed.md), and on an AVX2-only
CPU OpenVINO fp32 ran 1.18x torch fp32. It is a plain wheel (60 MB) on Linux, macOS
and Windows, so a dependency wherever it ships one; NNCF, which int8 needs, is the `int8` extra.
The calibration times it beside torch and keeps it only where it wins and agrees with torch fp32.
It runs on the CPU here; OpenVINO's GPU and NPU devices would be another `Runtime` beside this one.

int8 is static post-training quantization by NNCF: every matrix product, attention's included,
runs in int8 (torch's dynamic int8 leaves attention in fp32 and quantizes activations on every
call), with activation ranges measured on the user's own first windows when the indexer has them.

Converting VideoMAE-base from torch takes from half a minute to a few minutes and quantizing
about as long, so the converted model is saved as OpenVINO IR under the cache folder (by default
the index home's `openvino/`), keyed by the model's fingerprint and the OpenVINO version, and
compiled with OpenVINO's own model cache in the same folder: later runs load it in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vsearch.core.errors import ModelError, RuntimeUnavailable
from vsearch.model.hardware import cpu_supports_bf16
from vsearch.model.runtimes.base import Forward, Loaded

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "int8")
HINT = "pip install openvino (installed with vsearch wherever OpenVINO ships a wheel)"
INT8_HINT = "pip install 'vsearch[int8]'"


def version() -> str | None:
    """The installed OpenVINO's version, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def can_quantize() -> bool:
    """NNCF, OpenVINO's quantizer, is installed (the `int8` extra)."""
    import importlib.util

    return version() is not None and importlib.util.find_spec("nncf") is not None


class OpenVINO:
    name = "openvino"

    def available(self) -> bool:
        return version() is not None

    def version(self) -> str | None:
        return version()

    def install_hint(self) -> str:
        return HINT

    def precisions(self, device: str) -> tuple[str, ...]:
        return PRECISIONS if device == "cpu" else ()

    def fast_precisions(self, device: str) -> tuple[str, ...]:
        if device != "cpu":
            return ()
        return ("fp32", *(["bf16"] if cpu_supports_bf16() else []), *(["int8"] if can_quantize() else []))

    def streams(self, device: str) -> tuple[int, ...]:
        # Two requests side by side, each on half the cores: when decoding takes a core for a moment,
        # one request slows and the other runs on, where one request on every core stalls whole at
        # each layer's join. Two suffice for that; more would need bigger batches, for nothing.
        return (1, 2) if device == "cpu" and (os.cpu_count() or 1) >= 2 else (1,)

    def prepare(self, model: Loaded, precision: str, streams: int = 1) -> Forward:
        import torch

        # quantized on every other sample window; the calibration checks agreement on the rest
        compiled = Compiled(model.traceable(), model.model_id, model.input_shape, precision, model.home.openvino,
                            lambda: model.calibration_pixels()[::2], streams=streams)

        def forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(torch.from_numpy(out) for out in compiled(x.numpy()))

        return forward


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailable(f"--runtime openvino needs OpenVINO, which is not installed: {HINT}") from None
    return openvino


def _save(ov: Any, model: Any, xml: Path) -> None:
    """Write an IR pair so that a killed process never leaves a half-written one behind."""
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = xml.with_name(f"tmp-{os.getpid()}-{xml.name}")  # Ray actors may convert side by side
    # fp32 weights in the file: compress_to_fp16 would change fp32 results
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)  # the .xml last: its presence means the pair is complete


def compile_options(precision: str, streams: int = 1) -> dict[str, str]:
    """The precision hint, and LATENCY (every core on one request: one batch at a time) or
    `streams` requests side by side, the cores shared among them. int8 models run what is not
    quantized (softmax, norms) in bf16 where the CPU has it natively; elsewhere OpenVINO runs bf16
    as fp32."""
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "bf16" if cpu_supports_bf16() else "f32"}[precision]
    if streams > 1:
        return {"INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": str(streams)}
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """NNCF's progress bars ("Statistics collection", "Applying Smooth Quant") mean nothing to a
    person indexing videos, who was told the model is being measured; stdout is for results."""
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere), contextlib.redirect_stderr(nowhere):
        yield


def ir_path(cache: Path, model_id: str, input_shape: tuple[int, ...]) -> Path:
    """Where the converted model of `model_id` lives: a new model, new weights or a new OpenVINO
    converts again."""
    version = _openvino().__version__
    key = hashlib.sha256(f"{model_id}|{input_shape}|{version}".encode()).hexdigest()[:16]
    return cache / key / "model.xml"


class Compiled:
    """A torch module (pixels in, a tuple of tensors out) compiled by OpenVINO for one precision."""

    def __init__(self, module: Any, model_id: str, input_shape: tuple[int, ...], precision: str,
                 cache: Path, windows: Callable[[], np.ndarray] | None = None, device: str = "CPU",
                 streams: int = 1):
        """`input_shape` is one item's (VideoMAE: frames, 3, height, width); the batch dimension stays
        dynamic, so one compiled model serves every batch size the calibration tries. For int8,
        `windows` gives inputs to measure activation ranges on, when no quantized model of this one is
        cached yet."""
        ov = _openvino()
        self.precision = precision
        xml = ir_path(cache, model_id, input_shape)
        if not xml.exists():
            self._convert(ov, module, input_shape, xml)
        if precision == "int8":
            fp32, xml = xml, xml.with_name("model-int8.xml")
            if not xml.exists():
                if windows is None:
                    raise ValueError("quantizing to int8 needs windows to calibrate on")
                self._quantize(ov, fp32, windows(), xml)
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache / "compiled")})
        self._compiled = core.compile_model(str(xml), device, compile_options(precision, streams))
        self._requests = [self._compiled.create_infer_request() for _ in range(streams)]
        self._lock = threading.Lock()  # one set of requests: live and serve may call from threads

    @staticmethod
    def _convert(ov: Any, module: Any, input_shape: tuple[int, ...], xml: Path) -> None:
        import torch

        example = torch.zeros((1, *input_shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks that are constant here
            converted = ov.convert_model(module, example_input=example,
                                         input=[ov.PartialShape([-1, *input_shape])])
        _save(ov, converted, xml)

    @staticmethod
    def _quantize(ov: Any, fp32: Path, windows: np.ndarray, xml: Path) -> None:
        try:
            import nncf
        except ImportError:
            raise ModelError(f"OpenVINO int8 needs NNCF, which is not installed: {INT8_HINT}") from None
        nncf.set_log_level(logging.WARNING)  # its INFO lines name graph nodes
        dataset = nncf.Dataset([window[None] for window in windows.astype(np.float32)])
        # TRANSFORMER: the products in int8, what quantizes badly (softmax, norms) in float. The patch
        # embedding (a convolution over raw pixels, 1.5% of the FLOPs) stays in float too: quantizing
        # the input pixels cost the trained demo model its embedding cosine (0.956 -> 0.982 without).
        with silenced():
            quantized = nncf.quantize(ov.Core().read_model(str(fp32)), dataset, subset_size=len(windows),
                                      model_type=nncf.ModelType.TRANSFORMER,
                                      ignored_scope=nncf.IgnoredScope(types=["Convolution"]))
        _save(ov, quantized, xml)

    def __call__(self, pixel_values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Inputs (batch first) -> the module's outputs, float32 numpy arrays (copies: the request's
        buffers are reused by the next call)."""
        x = np.ascontiguousarray(pixel_values, dtype=np.float32)
        with self._lock:
            if len(self._requests) == 1 or len(x) == 1:
                out = self._requests[0].infer({0: x})
                return tuple(np.array(out[i]) for i in range(len(out)))
            # The batch split over the streams, run side by side, put back together in order.
            parts = np.array_split(x, min(len(self._requests), len(x)))
            requests = self._requests[:len(parts)]
            for request, part in zip(requests, parts):
                request.start_async({0: np.ascontiguousarray(part)})
            outs = []
            for request in requests:
                request.wait()
                outs.append([np.array(t.data) for t in request.output_tensors])
            return tuple(np.concatenate([o[i] for o in outs]) for i in range(len(outs[0])))
