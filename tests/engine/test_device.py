"""Device resolution: auto | cpu | cuda | cuda:N, and why CUDA is unusable, in words a user can act on.

The host's CUDA is described by a CudaProbe; the tests build one per situation (no GPU, a
CPU-only torch, a driver too old, two usable GPUs), so every branch runs on any machine.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from rtseg.engine.build import CudaProbe, DeviceError, parse_driver_version, resolve_device

NO_GPU = CudaProbe(torch_version="2.14.1+cu130", torch_cuda="13.0", available=False, device_count=0,
                   gpus_seen=0, driver_version=None, driver_cuda=None)
CPU_TORCH = dataclasses.replace(NO_GPU, torch_version="2.14.1+cpu", torch_cuda=None, gpus_seen=1,
                                driver_version="550.54.14", driver_cuda=12040)
OLD_DRIVER = dataclasses.replace(NO_GPU, gpus_seen=2, driver_version="535.104.05", driver_cuda=12020,
                                 torch_message="The NVIDIA driver on your system is too old (found version 12020).")
TWO_GPUS = dataclasses.replace(NO_GPU, available=True, device_count=2, gpus_seen=2, driver_version="580.65.06",
                               driver_cuda=13000)


def test_cpu_is_always_the_cpu():
    assert resolve_device("cpu", NO_GPU) == torch.device("cpu")
    assert resolve_device("cpu", TWO_GPUS) == torch.device("cpu")


def test_auto_takes_the_first_gpu_and_cuda_n_that_gpu():
    assert resolve_device("auto", TWO_GPUS) == torch.device("cuda", 0)
    assert resolve_device("cuda", TWO_GPUS) == torch.device("cuda", 0)
    assert resolve_device("cuda:1", TWO_GPUS) == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"'cuda:2' requested but this host has 2 usable GPU\(s\): cuda:0..cuda:1"):
        resolve_device("cuda:2", TWO_GPUS)


def test_auto_runs_on_the_cpu_only_where_there_is_no_gpu():
    assert resolve_device("auto", NO_GPU) == torch.device("cpu")
    with pytest.raises(DeviceError, match="no NVIDIA GPU.*set model.device: cpu"):
        resolve_device("cuda", NO_GPU)


def test_a_cpu_only_torch_on_a_gpu_host_is_an_error_that_says_what_to_install():
    for device in ("auto", "cuda", "cuda:0"):
        with pytest.raises(DeviceError) as e:
            resolve_device(device, CPU_TORCH)
        msg = str(e.value)
        assert "2.14.1+cpu is a CPU-only build" in msg and "an NVIDIA GPU" in msg
        assert "TORCH_INDEX_URL" in msg and "model.device: cpu" in msg


def test_a_driver_too_old_for_torchs_cuda_says_both_versions():
    with pytest.raises(DeviceError) as e:
        resolve_device("auto", OLD_DRIVER)
    msg = str(e.value)
    assert msg.startswith("model.device: auto found an NVIDIA GPU that torch cannot use")
    assert "driver 535.104.05 is too old" in msg and "CUDA up to 12.2" in msg and "built for CUDA 13.0" in msg
    assert "TORCH_INDEX_URL" in msg


def test_an_unexplained_failure_quotes_torch():
    odd = dataclasses.replace(OLD_DRIVER, driver_cuda=13000, driver_version="580.65.06",
                              torch_message="CUDA unknown error")
    with pytest.raises(DeviceError, match="cannot use 2 NVIDIA GPUs with driver 580.65.06 .torch says: CUDA unknown"):
        resolve_device("cuda", odd)


def test_a_device_that_is_not_a_device():
    for bad in ("gpu", "mps", "cuda:x"):
        with pytest.raises(DeviceError, match="expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad, TWO_GPUS)


def test_the_probe_of_this_host_agrees_with_torch():
    probe = CudaProbe.read()
    assert probe.available == torch.cuda.is_available()
    assert probe.device_count == torch.cuda.device_count()
    assert probe.torch_cuda == torch.version.cuda
    assert bool(probe.reason()) != probe.available  # unusable CUDA always comes with a reason


def test_driver_version_from_proc():
    assert parse_driver_version(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n") == "535.104.05"
    assert parse_driver_version(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16)\n"
    ) == "580.65.06"
    assert parse_driver_version("something else") is None
