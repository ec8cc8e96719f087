"""torch: the reference runtime, on every device torch has.

On the CPU, bf16 runs under autocast (weights stay fp32; oneDNN uses AVX-512 BF16 or AMX where
the CPU has them) and int8 is torch's dynamic quantization of the linear layers; on a GPU, bf16
or fp16 are weights and activations in half precision.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from vsearch.model.hardware import cpu_supports_bf16
from vsearch.model.runtimes.base import Forward, Loaded

if TYPE_CHECKING:
    import torch


class Torch:
    name = "torch"

    def available(self) -> bool:
        return True  # a dependency of vsearch

    def version(self) -> str | None:
        import torch

        return str(torch.__version__)

    def install_hint(self) -> str:
        return "pip install torch"

    def precisions(self, device: str) -> tuple[str, ...]:
        if device == "cpu":
            return ("fp32", "bf16", "fp16", "int8")  # fp16 and, without AVX-512 BF16, bf16 are emulated: slow
        return ("fp32", "bf16", "fp16")

    def fast_precisions(self, device: str) -> tuple[str, ...]:
        if device == "cpu":
            return ("fp32", *(["bf16"] if cpu_supports_bf16() else []), "int8")
        if device.startswith("cuda"):
            import torch

            return ("fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16")
        return ("fp32", "fp16")

    def streams(self, device: str) -> tuple[int, ...]:
        return (1,)

    def prepare(self, model: Loaded, precision: str, streams: int = 1) -> Forward:
        import torch

        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        module: Any = model.traceable()
        if precision == "int8":
            module = quantize_int8(module)
        if half is not None and model.device != "cpu":
            # On a GPU: weights and inputs in half precision, in a copy (fp32 and training keep theirs).
            import copy

            module = copy.deepcopy(module).to(half)

            def forward_half(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                with torch.inference_mode():
                    return tuple(module(x.to(half)))

            return forward_half

        def forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            autocast = torch.autocast("cpu", dtype=half) if half is not None else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                return tuple(module(x))

        return forward


def quantize_int8(module: Any) -> Any:
    """A copy of `module` with int8 Linear layers (weights quantized once, activations per batch).

    Post-training dynamic quantization needs no calibration data. torch.ao's version is
    deprecated in favour of torchao, but it is in every torch wheel and runs without compiling;
    the linear layers hold nearly all of VideoMAE's FLOPs. Attention stays in fp32.
    """
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices about torch.ao and quantized tensors
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(module).eval(), {torch.nn.Linear}, dtype=torch.qint8)
