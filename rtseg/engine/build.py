"""Building SAM 2 through sam2's own Hydra configs (never re-initialising Hydra here), and
choosing the device it runs on.

`resolve_device` turns `auto | cpu | cuda | cuda:N` into a concrete device. When torch cannot
use CUDA, `CudaProbe` says why in words a user can act on (no GPU, a CPU-only torch, a driver
too old for the CUDA torch was built for), read from the driver without initialising CUDA.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from rtseg.engine import holes
from rtseg.engine.checkpoints import load_into
from rtseg.engine.encoder_cache import cache_position_embedding
from rtseg.engine.models import ModelSpec

log = logging.getLogger(__name__)

INSTALL_HINT = ("install a torch build your driver can run (README, 'GPU install': e.g. "
                "`make clean install TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126`) "
                "or set model.device: cpu to run on the CPU on purpose")


class DeviceError(RuntimeError):
    """The configured device cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class CudaProbe:
    """What this host offers CUDA: torch's build and view, and the driver's own (files, libcuda)."""

    torch_version: str
    torch_cuda: str | None  # CUDA version torch was built for; None: a CPU-only build
    available: bool  # torch.cuda.is_available()
    device_count: int
    gpus_seen: int  # NVIDIA GPUs the kernel driver lists (/proc/driver/nvidia/gpus, /dev/nvidiaN)
    driver_version: str | None  # e.g. "535.104.05"
    driver_cuda: int | None  # highest CUDA the driver supports, as cuDriverGetVersion says (12020 = 12.2)
    torch_message: str = ""  # what torch warned when CUDA failed to initialise

    @classmethod
    def read(cls) -> CudaProbe:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = torch.cuda.is_available()
        return cls(
            torch_version=torch.__version__, torch_cuda=torch.version.cuda, available=available,
            device_count=torch.cuda.device_count() if available else 0,
            gpus_seen=_gpus_seen(), driver_version=_driver_version(), driver_cuda=_driver_cuda(),
            torch_message=" ".join(str(w.message).strip() for w in caught))

    def reason(self) -> str:
        """Why torch cannot use CUDA here, in words a user can act on."""
        if self.available:
            return ""
        if self.gpus_seen == 0 and self.driver_cuda is None:
            return "this host has no NVIDIA GPU (no NVIDIA driver is loaded)"
        if self.torch_cuda is None:
            return (f"the installed torch {self.torch_version} is a CPU-only build although this host has "
                    f"{self._gpus()}; {INSTALL_HINT}")
        need = _cuda_int(self.torch_cuda)
        if self.driver_cuda is not None and need is not None and self.driver_cuda // 1000 < need // 1000:
            return (f"the NVIDIA driver {self.driver_version or '?'} is too old for the installed torch "
                    f"{self.torch_version}: the driver supports CUDA up to {_cuda_str(self.driver_cuda)}, "
                    f"torch is built for CUDA {self.torch_cuda}; {INSTALL_HINT}")
        detail = f" (torch says: {self.torch_message})" if self.torch_message else ""
        return (f"torch {self.torch_version} (CUDA {self.torch_cuda}) cannot use {self._gpus()} with driver "
                f"{self.driver_version or '?'}{detail}; {INSTALL_HINT}")

    def _gpus(self) -> str:
        return "an NVIDIA GPU" if self.gpus_seen <= 1 else f"{self.gpus_seen} NVIDIA GPUs"

    def has_unusable_gpu(self) -> bool:
        return not self.available and (self.gpus_seen > 0 or self.driver_cuda is not None)


def _cuda_int(text: str) -> int | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return int(m.group(1)) * 1000 + int(m.group(2)) * 10 if m else None


def _cuda_str(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _gpus_seen() -> int:
    proc = glob.glob("/proc/driver/nvidia/gpus/*")
    dev = [p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)]
    return max(len(proc), len(dev))


def _driver_version() -> str | None:
    try:
        return parse_driver_version(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        return None


def parse_driver_version(text: str) -> str | None:
    """'NVRM version: NVIDIA UNIX [Open ]Kernel Module [for x86_64]  535.104.05  ...' -> '535.104.05'."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return m.group(1) if m else None


def _driver_cuda() -> int | None:
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
            return version.value
    return None


def resolve_device(device, probe: CudaProbe | None = None) -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` -> a concrete torch.device (CUDA always with its index).

    `auto` runs on the CPU only on a host without an NVIDIA GPU: a GPU torch cannot use is an
    error that says why, not a silent run at CPU speed.
    """
    text = str(device)
    if text == "cpu":
        return torch.device("cpu")
    probe = probe or CudaProbe.read()
    if text == "auto":
        if probe.available:
            return torch.device("cuda", 0)
        if probe.has_unusable_gpu():
            raise DeviceError(f"model.device: auto found an NVIDIA GPU that torch cannot use: {probe.reason()}")
        return torch.device("cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"device {text!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type != "cuda":
        raise DeviceError(f"device {text!r}: expected auto, cpu, cuda or cuda:N")
    if not probe.available:
        hint = "" if probe.has_unusable_gpu() else "; set model.device: cpu (or auto)"
        raise DeviceError(f"device {text!r} requested but CUDA is not usable: {probe.reason()}{hint}")
    index = 0 if dev.index is None else dev.index
    if index >= probe.device_count:
        raise DeviceError(f"device {text!r} requested but this host has {probe.device_count} usable GPU(s): "
                          f"cuda:0..cuda:{probe.device_count - 1}")
    return torch.device("cuda", index)


def build_sam2_video_model(spec: ModelSpec, checkpoint: Path | None, device: torch.device, image_size: int | None,
                           *, fill_holes: bool = True):
    """The official SAM2VideoPredictor model (same post-processing settings), weights loaded.

    Hole filling (`fill_hole_area`, 8 in every sam2.1 config) stays on unless `fill_holes` is
    False: rtseg fills holes on every device (rtseg.engine.holes), not only where sam2's CUDA
    extension was built.
    """
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={int(image_size)}"] if image_size else []
    model = build_sam2_video_predictor(spec.hydra_config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    if checkpoint is None:
        log.warning(
            "model %s built with RANDOM weights: masks are meaningless (tests and timing only)", spec.name
        )
    else:
        load_into(model, Path(checkpoint), spec)
    if not fill_holes:
        model.fill_hole_area = 0
    if model.fill_hole_area > 0:
        log.info("mask hole filling: holes <= %d low-res px, by %s", model.fill_hole_area, holes.backend(device))
    else:
        log.info("mask hole filling off (engine.fill_holes: false)")
    model = model.to(device).eval()
    cache_position_embedding(model)  # a constant sam2 recomputes every frame
    return model
