"""Mixed precision (params `train.amp`): bf16 autocast for the query decoder and heads on CUDA.

Which parts run in bf16, and why:
- The sparse UNet stays in fp32 (`fp32_region`). spconv 2.3 decorates its autograd functions
  with `torch.cuda.amp.custom_fwd(cast_inputs=torch.float16)`: under any CUDA autocast, bf16
  included, it would cast features and weights to *fp16*, whose range (max 65504) the UNet's
  unnormalised sums were never checked against, and on CPU spconv is fp32-only (DESIGN section 5).
  Switching autocast off around it keeps the backbone exactly as in fp32 training.
- Everything after the UNet (input projection, attention, FFN, heads) runs under bf16 autocast:
  the dense layers, where the MAFT-size decoder spends its time (400 queries x 6 layers x d 256
  against thousands of superpoints). Autocast itself keeps softmax and LayerNorm in fp32.
- The matcher and the losses see fp32: the model's outputs are cast to float (`to_float`) before
  the criterion, so BCE / dice / cross-entropy and the Hungarian costs are not rounded to bf16's
  8-bit mantissa.
- No GradScaler: bf16 has fp32's exponent range, so small gradients do not underflow as they do
  in fp16, and there is no loss scale to tune or skip steps for.

`Precision` is an explicit value passed to the code that runs a forward (the model never reads a
config). The param is CUDA-only (`precision_for` refuses bf16 on CPU), but `Precision` itself
takes any device type, so tests exercise the autocast path with torch's CPU autocast.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch

AmpMode = Literal["off", "bf16"]
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """How a forward runs: fp32 throughout (dtype None) or under autocast to `dtype`."""

    device_type: str = "cpu"  # "cuda" or "cpu": the autocast device type
    dtype: torch.dtype | None = None  # None = fp32, no autocast

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward's context: autocast to `dtype`, or nothing at all in fp32 (so the default
        path runs exactly the code it ran before mixed precision existed)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def outputs(self, value: Any) -> Any:
        """Model outputs ready for the losses: fp32 (a no-op in fp32)."""
        return to_float(value) if self.enabled else value


FP32 = Precision()


def precision_for(amp: str, device: torch.device) -> Precision:
    """The precision params `train.amp` asks for on `device`; bf16 needs CUDA."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"train.amp must be one of {list(AMP_DTYPES)}, got {amp!r}")
    dtype = AMP_DTYPES[amp]
    if dtype is not None and device.type != "cuda":
        raise ValueError(
            f"train.amp '{amp}' needs a CUDA device, but training runs on {device}: set train.amp "
            "to 'off' for CPU training (bf16 autocast is measured and supported on CUDA only)"
        )
    return Precision(device.type, dtype)


def fp32_region(device_type: str) -> AbstractContextManager[Any]:
    """Autocast switched off inside (the spconv UNet, see the module docstring); nothing at all
    when autocast is not on, so fp32 training runs unchanged."""
    if not torch.is_autocast_enabled(device_type):
        return nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def to_float(value: Any) -> Any:
    """Every floating tensor in `value` (nested dicts, lists, tuples) as fp32; others unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: to_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_float(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_float(v) for v in value)
    return value
