"""Child logging under kill -9: no child can silence the others or hang the supervisor."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rtseg.proc import LogListener, StopFlag
from tests.helpers.chatter import chatter_main

CTX = mp.get_context("spawn")


def test_listener_gets_whole_records_from_children_killed_at_random_moments():
    records: list[logging.LogRecord] = []
    with LogListener(records.append) as logs:
        stop = StopFlag(CTX)
        procs = []
        rng = random.Random(7)
        try:
            for _ in range(12):
                hb = CTX.Value("d", 0.0, lock=False)
                p = CTX.Process(target=chatter_main, args=(stop, hb, logs.endpoint), daemon=True)
                p.start()
                procs.append(p)
                time.sleep(rng.uniform(0.0, 0.4))
                os.kill(p.pid, signal.SIGKILL)
            survivor_hb = CTX.Value("d", 0.0, lock=False)
            survivor = CTX.Process(target=chatter_main, args=(stop, survivor_hb, logs.endpoint), daemon=True)
            survivor.start()
            procs.append(survivor)
            deadline = time.monotonic() + 30
            while sum(r.process == survivor.pid for r in records) < 200:
                assert time.monotonic() < deadline, "the survivor's lines never arrived"
                time.sleep(0.05)
            stop.set()
            survivor.join(10)
            assert survivor.exitcode == 0
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
        for r in records:  # a killed writer leaves no half record behind
            assert re.fullmatch(r"chatter pid \d+ line \d+ \.{200}", r.getMessage()), r.getMessage()
    t0 = time.monotonic()
    logs.stop()
    assert time.monotonic() - t0 < 1.0


def _pids(state: Path) -> dict:
    try:
        return json.loads((state / "processes.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _lines_after(log: Path, pid: int, offset: int) -> int:
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read().count(f"chatter pid {pid} line".encode())


def _tail(log: Path) -> str:
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 3000))
        return f.read().decode(errors="replace")


def _run_and_kill(tmp_path: Path, run: int, kills: int, rng: random.Random) -> float:
    state = tmp_path / f"state{run}"
    cfg = tmp_path / f"chatter{run}.yaml"
    cfg.write_text(yaml.safe_dump({
        "cameras": [{"id": "cam", "source": "synthetic://64x48"}],
        "supervisor": {"state_dir": str(state), "restart_budget": 1000, "shutdown_timeout_s": 5}}))
    log = tmp_path / f"run{run}.log"
    with open(log, "w") as out:
        sup = subprocess.Popen([sys.executable, "-m", "tests.helpers.chatter", str(cfg), "3"], stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len([k for k in _pids(state) if k.startswith("chatter")]) < 3:
            assert time.monotonic() < deadline and sup.poll() is None, _tail(log)
            time.sleep(0.1)
        for k in range(kills):
            victim = rng.choice([k for k in _pids(state) if k.startswith("chatter")])
            time.sleep(rng.uniform(0.05, 0.5))
            old = _pids(state)[victim]
            os.kill(old, signal.SIGKILL)
            offset = log.stat().st_size
            deadline = time.monotonic() + 30
            while _pids(state).get(victim) in (None, old):
                assert time.monotonic() < deadline, f"{victim} not restarted:\n{_tail(log)}"
                time.sleep(0.05)
            # every live child, the restarted one included, keeps logging
            for name, pid in _pids(state).items():
                if not name.startswith("chatter"):
                    continue
                while _lines_after(log, pid, offset) < 20:
                    assert time.monotonic() < deadline, \
                        f"kill {k + 1} ({victim}): no more lines from {name} (pid {pid}):\n{_tail(log)}"
                    time.sleep(0.05)
        t0 = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(20)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - t0
        assert sup.returncode == 0, f"run {run}: supervisor did not exit on SIGTERM:\n{_tail(log)}"
        return took
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
        for name, pid in _pids(state).items():
            if name.startswith("chatter"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_kill_9_while_children_log_never_silences_the_rest_or_hangs_shutdown(tmp_path):
    rng = random.Random(16)
    took = [_run_and_kill(tmp_path, run, kills=10, rng=rng) for run in range(2)]
    assert max(took) < 5.0, f"SIGTERM took {took} s"
