"""Real processes in tests: start the `rtseg` command, wait for a condition, stop a process,
collect what a queue holds."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable


def start_cli(*args: str, log: Path) -> subprocess.Popen:
    """`python -m rtseg.cli ARGS` as a real process, output into `log`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "rtseg.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate()` until it is truthy and return its value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Send `sig` (if still running) and return the exit code; killed after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def drain_queue(q: Any, timeout: float = 1.0) -> list:
    """Everything `q` (a queue.Queue or multiprocessing queue) holds, waiting up to `timeout` s
    for each next item."""
    items = []
    while True:
        try:
            items.append(q.get(timeout=timeout))
        except queue.Empty:
            return items


def assert_beating(heartbeat: Any, proc: Any, first_within: float = 30.0) -> None:
    """The child `proc` beats `heartbeat` (a multiprocessing Value 'd' of time.time()) and
    keeps beating: three looks 0.4 s apart see it rise, the last under a second old."""
    wait_for(lambda: heartbeat.value > 0 or not proc.is_alive(), first_within, "the first heartbeat")
    assert heartbeat.value > 0, f"no heartbeat (exit code {proc.exitcode})"
    beats = []
    for _ in range(3):
        time.sleep(0.4)
        beats.append(heartbeat.value)
    assert beats[0] < beats[1] < beats[2] and time.time() - beats[2] < 1.0, f"the heartbeat stopped: {beats}"


def stop_child(proc: Any, stop_event: Any, timeout: float = 10) -> int | None:
    """Set the child's stop event and return its exit code; killed if it has not ended in `timeout` s."""
    stop_event.set()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return proc.exitcode
