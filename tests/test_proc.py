"""What every child process shares: its title in ps / top / htop."""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import psutil

from rtseg.proc import run_child


def test_a_child_carries_its_role_in_its_process_title():
    proc = mp.get_context("spawn").Process(target=run_child, args=("capture-cam1", time.sleep, 30), name="capture-cam1")
    proc.start()
    try:
        child = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        comm = Path(f"/proc/{proc.pid}/comm")
        while comm.read_text().strip() != "rtseg: capture-" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert comm.read_text().strip() == "rtseg: capture-"  # what top shows: the kernel keeps 15 characters
        assert " ".join(child.cmdline()).strip() == "rtseg: capture-cam1"  # ps, htop
    finally:
        proc.kill()
        proc.join(10)
