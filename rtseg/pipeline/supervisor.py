"""The supervisor of `rtseg run`: start every process of a pipeline, watch them, restart them, stop them.

Children (all `spawn`ed, each named): `capture-<camera>` per camera, `segmenter`, and
`recorder` / `foxglove` / `viewer` when the config enables them. Each beats a heartbeat; a child that
dies or stops beating is restarted, at most `supervisor.restart_budget` times per
`restart_window_s` (then the whole pipeline stops with an error). A child that exits with
EXIT_FATAL (bad config, missing weights, a file that cannot be read) is not restarted.
SIGINT/SIGTERM stop everything within `shutdown_timeout_s`: stop event, then SIGTERM, then
SIGKILL; shared-memory rings are removed even after a kill.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtseg.config import Config
from rtseg.proc import EXIT_FATAL, EXIT_OK, ring_name_for, run_child

log = logging.getLogger("rtseg.supervisor")

STARTUP_GRACE_S = 180.0  # model building and first frames may take a while before the first beat


@dataclass
class Child:
    name: str
    target: Callable[..., Any]
    args: tuple
    restartable: bool = True
    essential: bool = True  # when an optional child (recorder, viewer) cannot run, the rest goes on
    heartbeat: Any = None  # mp.Value('d'): time.time() of the last beat, 0 before the first
    ring_name: str | None = None  # capture children beat through their ring's header
    process: Any = None
    started_at: float = 0.0
    restarts: deque = field(default_factory=deque)


class Supervisor:
    def __init__(self, cfg: Config, *, checkpoint: str | None, run_id: str | None = None,
                 headless: bool = False) -> None:
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.run_id = run_id or f"rtseg{os.getpid()}"
        self.headless = headless
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.log_queue = self.ctx.Queue()
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self.exit_code = EXIT_OK

    # ------------------------------------------------------------ planning
    def ring_names(self) -> dict[str, str]:
        return {c.id: ring_name_for(self.run_id, c.id) for c in self.cfg.cameras}

    def _plan(self) -> list[Child]:
        from rtseg.pipeline.capture import capture_main
        from rtseg.pipeline.segmenter import segmenter_main

        children = []
        paced = self.cfg.segmenter.frame_policy == "every"  # files: no frame skipped, the segmenter sets the pace
        for cam in self.cfg.cameras:
            cam = cam.model_copy(update={"paced": paced}) if paced else cam
            ring = ring_name_for(self.run_id, cam.id)
            children.append(Child(f"capture-{cam.id}", capture_main,
                                  (cam, ring, self.stop_event, None, self.log_queue, self.cfg.log_level), ring_name=ring))
        hb = self.ctx.Value("d", 0.0, lock=False)
        children.append(Child("segmenter", segmenter_main,
                              (self.cfg, self.checkpoint, self.ring_names(), self.stop_event, hb, self.log_queue),
                              heartbeat=hb))
        if self.cfg.recorder.enabled:
            from rtseg.recording.recorder import recorder_main

            hb = self.ctx.Value("d", 0.0, lock=False)
            children.append(Child("recorder", recorder_main, (self.cfg, self.stop_event, hb, self.log_queue),
                                  heartbeat=hb, essential=False))
        if self.cfg.foxglove.enabled:
            from rtseg.bridges.foxglove import bridge_main

            hb = self.ctx.Value("d", 0.0, lock=False)
            children.append(Child("foxglove", bridge_main, (self.cfg, self.ring_names(), self.stop_event, hb,
                                                            self.log_queue), heartbeat=hb, essential=False))
        if self.cfg.viewer.enabled and not self.headless:
            from rtseg.view.viewer import viewer_main

            hb = self.ctx.Value("d", 0.0, lock=False)
            children.append(Child("viewer", viewer_main, (self.cfg, self.ring_names(), self.stop_event, hb, self.log_queue),
                                  heartbeat=hb, restartable=False, essential=False))
        return children

    # ------------------------------------------------------------- running
    def _start(self, child: Child) -> None:
        if child.heartbeat is not None:
            child.heartbeat.value = 0.0
        child.process = self.ctx.Process(target=run_child, args=(child.name, child.target, *child.args),
                                         name=child.name, daemon=False)
        child.process.start()
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.name, child.process.pid)
        self._write_pids()

    def _write_pids(self) -> None:
        """state_dir/processes.json: name -> pid of every child, for operators and tests."""
        state = Path(self.cfg.supervisor.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        pids = {c.name: c.process.pid for c in self.children if c.process is not None}
        tmp = state / "processes.json.tmp"
        tmp.write_text(json.dumps({"supervisor": os.getpid(), "run_id": self.run_id, **pids}))
        os.replace(tmp, state / "processes.json")

    def _heartbeat_age(self, child: Child) -> float | None:
        """Seconds since the child's last beat; None while it has not beaten yet."""
        if child.heartbeat is not None:
            beat = child.heartbeat.value
            return None if beat == 0.0 else time.time() - beat
        if child.ring_name is not None:
            from rtseg.ring import RingReader

            try:
                with RingReader(child.ring_name) as reader:
                    return reader.source_state().heartbeat_age_s
            except Exception:
                return None
        return None

    def _restart_or_fail(self, child: Child, why: str) -> None:
        now = time.monotonic()
        window = self.cfg.supervisor.restart_window_s
        while child.restarts and now - child.restarts[0] > window:
            child.restarts.popleft()
        if not child.restartable or len(child.restarts) >= self.cfg.supervisor.restart_budget:
            self._give_up(child, f"{why}; restart budget used up ({len(child.restarts)} in {window:.0f} s)")
            return
        child.restarts.append(now)
        log.warning("%s %s; restarting (%d/%d in %.0f s)", child.name, why, len(child.restarts),
                    self.cfg.supervisor.restart_budget, window)
        if child.ring_name is not None:
            from rtseg.ring import remove_if_stale

            remove_if_stale(child.ring_name, min_age_s=0)  # never touches a live writer's ring
        self._start(child)

    def _give_up(self, child: Child, why: str) -> None:
        """An essential child that cannot run stops the pipeline; an optional one is left off."""
        if child.essential:
            log.error("%s %s: stopping the pipeline", child.name, why)
            self.exit_code = 1
            self._stopping.set()
        else:
            log.error("%s %s: left off, the rest of the pipeline goes on", child.name, why)
            self.children.remove(child)
            self._write_pids()

    def _watch_once(self) -> None:
        timeout = self.cfg.supervisor.heartbeat_timeout_s
        for child in list(self.children):
            proc = child.process
            if not proc.is_alive():
                code = proc.exitcode
                if code == EXIT_FATAL:
                    self._give_up(child, f"cannot run (exit {code}; see its error above)")
                    continue
                if code == EXIT_OK and child.name == "viewer":
                    log.info("viewer closed: stopping the pipeline")
                    self._stopping.set()
                    return
                self._restart_or_fail(child, f"exited with code {code}")
                continue
            age = self._heartbeat_age(child)
            since_start = time.monotonic() - child.started_at
            hung = (age is not None and age > timeout and since_start > timeout) or (age is None and since_start > STARTUP_GRACE_S and child.heartbeat is not None)
            if hung:
                log.error("%s stopped beating (%s); killing it", child.name, "never beat" if age is None else f"{age:.1f} s")
                proc.kill()
                proc.join(2.0)
                self._restart_or_fail(child, "hung")

    def run(self) -> int:
        listener = logging.handlers.QueueListener(self.log_queue, *logging.getLogger().handlers,
                                                  respect_handler_level=True)
        listener.start()
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            from rtseg.ring import cleanup_stale

            cleanup_stale()  # rings left in /dev/shm by an earlier run that was killed
            self.children = self._plan()
            for child in self.children:
                self._start(child)
            log.info("pipeline up: %s; masks on %s, control on %s", ", ".join(c.name for c in self.children),
                     self.cfg.network.pub, self.cfg.network.control)
            while not self._stopping.wait(0.2):
                self._watch_once()
        finally:
            self.shutdown()
            for s, h in old.items():
                signal.signal(s, h)
            listener.stop()
        return self.exit_code

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("%s received: shutting down", signal.Signals(signum).name)
        self._stopping.set()

    def stop(self) -> None:
        """Ask `run()` to shut everything down (thread-safe)."""
        self._stopping.set()

    def shutdown(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + self.cfg.supervisor.shutdown_timeout_s * 0.6
        procs = [c.process for c in self.children if c.process is not None]
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for signal_name in ("SIGTERM", "SIGKILL"):
            alive = [p for p in procs if p.is_alive()]
            if not alive:
                break
            for p in alive:
                log.warning("%s (pid %d) still running after the stop request: sending %s", p.name, p.pid, signal_name)
                p.terminate() if signal_name == "SIGTERM" else p.kill()
            for p in alive:
                p.join(1.0)
        from rtseg.ring import unlink_ring

        for name in self.ring_names().values():
            unlink_ring(name)
        log.info("pipeline stopped")
