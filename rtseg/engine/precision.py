"""Numeric precision of the engine: which autocast dtype, chosen once per device.

`engine.precision: auto` picks bf16 on GPUs with native bf16 (compute capability >= 8.0:
Ampere and later), fp16 on Volta/Turing (7.x, tensor cores without bf16), fp32 elsewhere
(older GPUs and the CPU, where float32 is sam2's exact reference). The choice is logged once.

Hold one `autocast()` context for the life of a tracking loop: autocast caches the bf16/fp16
copies of the weights until its outermost context exits, so entering and leaving it per
frame re-casts every weight every frame. The predictor enters it too (nested: free, the
cache stays), so a bare `track()` still runs at the chosen precision.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CHOICES = ("auto", *DTYPES)


class PrecisionError(ValueError):
    """A precision the device cannot run; the message says which to use instead."""


@dataclass(frozen=True)
class Precision:
    name: str  # bf16 | fp16 | fp32
    device_type: str  # cuda | cpu
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this precision (none for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def compute_capability(device: torch.device) -> tuple[int, int] | None:
    """(major, minor) of a CUDA device, None for other devices."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def choose_precision(requested: str, device: torch.device, capability: tuple[int, int] | None = None) -> Precision:
    """The precision to run `device` at: `requested` checked, or `auto` resolved. Logs the choice."""
    if requested not in CHOICES:
        raise PrecisionError(f"precision {requested!r}: choose one of {', '.join(CHOICES)}")
    cap = capability if capability is not None else compute_capability(device)
    where = "the CPU" if cap is None else f"{device} (compute capability {cap[0]}.{cap[1]})"
    if requested == "auto":
        if cap is None:
            name, why = "fp32", "auto: float32 on the CPU (sam2's exact reference; CPU autocast is slower there)"
        elif cap >= (8, 0):
            name, why = "bf16", f"auto: {where} has native bf16"
        elif cap >= (7, 0):
            name, why = "fp16", f"auto: {where} has fp16 tensor cores but no native bf16"
        else:
            name, why = "fp32", f"auto: {where} has neither bf16 nor fp16 tensor cores"
    else:
        if requested == "bf16" and cap is not None and cap < (8, 0):
            raise PrecisionError(
                f"engine.precision: bf16 needs compute capability >= 8.0, but {where} has none: "
                "use fp16 (or auto)")
        name, why = requested, f"engine.precision: {requested} on {where}"
    chosen = Precision(name, device.type, why)
    log.info("precision %s (%s)", chosen.name, chosen.reason)
    return chosen
