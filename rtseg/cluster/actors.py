"""rtseg's own capture and segmenter loops as Ray actors (no second pipeline).

`CaptureActor` runs rtseg.pipeline.capture.run_capture for one camera and `SegmenterActor`
runs rtseg.pipeline.segmenter.run_segmenter for a few, each in a thread of the actor's
process, pinned by the manager to the same node (the ring is shared memory on that host).

A segmenter keeps its prompt log in the directory (`DirectoryPromptLog`), reports its bound
endpoints when ready and its per-camera status once a second. An unexpected error ends the
actor's process so that Ray restarts it in place (max_restarts); the restart budget is
counted in the directory. A fatal error (bad checkpoint, endpoint in use) is reported and
the actor stays idle: restarting could not help.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from rtseg.config import CameraConfig, Config

log = logging.getLogger("rtseg.cluster.actors")

STATUS_REPORT_S = 1.0


def _setup_logging(level: str, name: str) -> None:
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s {name} %(name)s %(levelname)s: %(message)s",
                        force=True)


def _get(ref: Any, timeout: float = 30.0) -> Any:
    import ray

    return ray.get(ref, timeout=timeout)


class DirectoryPromptLog:
    """rtseg.pipeline.prompt_log.PromptLog's interface, kept by the directory on the head:
    a prompt is persisted there before the segmenter replies to it."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory

    def add(self, camera: str, obj_id: int, kind: str, payload: dict[str, Any]) -> None:
        _get(self.directory.prompt_add.remote(camera, obj_id, kind, payload))

    def remove(self, camera: str, obj_id: int) -> None:
        _get(self.directory.prompt_remove.remote(camera, obj_id))

    def reset(self, camera: str) -> None:
        _get(self.directory.prompt_reset.remote(camera))

    def latest_prompts(self, camera: str) -> list:
        return _get(self.directory.latest_prompts.remote(camera))


class CaptureActor:
    """One camera into one shared-memory ring on this node (run_capture in a thread)."""

    def __init__(self, camera: CameraConfig, ring_name: str, log_level: str = "INFO") -> None:
        from rtseg.ring import cleanup_stale, remove_if_stale

        _setup_logging(log_level, f"capture-{camera.id}")
        remove_if_stale(ring_name, min_age_s=0)  # restarted in place: the dead predecessor's ring
        cleanup_stale()  # rings of captures that died with their process on this host
        self.camera, self.ring_name = camera, ring_name
        self.final: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{camera.id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from rtseg.pipeline.capture import run_capture

        self.final = run_capture(self.camera, self.ring_name, self._stop)

    def state(self) -> str:
        return self.final or ("running" if self._thread.is_alive() else "stopped")

    def pid(self) -> int:
        return os.getpid()

    def stop(self, timeout_s: float = 10.0) -> str:
        """Stop capturing; the ring is closed and removed."""
        self._stop.set()
        self._thread.join(timeout_s)
        return self.state()


class SegmenterActor:
    """run_segmenter for `ring_names`' cameras on this node's GPU (or CPU)."""

    def __init__(self, segmenter_id: str, cfg: Config, checkpoint: str | None, ring_names: dict[str, str],
                 directory: Any) -> None:
        _setup_logging(cfg.log_level, segmenter_id)
        self.id, self.cfg, self.checkpoint, self.ring_names = segmenter_id, cfg, checkpoint, ring_names
        self.directory = directory
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None
        self.state = "starting"
        self._thread = threading.Thread(target=self._run, name=segmenter_id, daemon=True)
        if not _get(directory.segmenter_started.remote(segmenter_id)):
            self.state = "failed"
            msg = (f"restart budget used up ({cfg.supervisor.restart_budget} restarts in "
                   f"{cfg.supervisor.restart_window_s:.0f} s)")
            log.error("segmenter %s: %s; not starting again", segmenter_id, msg)
            _get(directory.segmenter_down.remote(segmenter_id, list(ring_names), "failed", msg))
            return
        self._thread.start()

    def _run(self) -> None:
        from rtseg.pipeline.segmenter import FatalError, run_segmenter

        try:
            run_segmenter(self.cfg, self.checkpoint, self.ring_names, self._stop,
                          prompt_log=DirectoryPromptLog(self.directory), on_ready=self._ready)
            self.state = "stopped"
        except FatalError as e:
            self.state = "failed"
            log.error("segmenter %s cannot run: %s", self.id, e)
            _get(self.directory.segmenter_down.remote(self.id, list(self.ring_names), "failed", str(e)))
        except BaseException as e:  # a crash: let Ray restart this actor in place
            log.exception("segmenter %s crashed; restarting", self.id)
            try:
                _get(self.directory.segmenter_down.remote(self.id, list(self.ring_names), "starting",
                                                          f"restarting after {type(e).__name__}: {e}"), 5.0)
            finally:
                os._exit(1)

    def _ready(self, pub: str, control: str) -> None:
        import ray

        gpus = ray.get_gpu_ids()
        device = f"GPU {','.join(str(g) for g in gpus)}" if gpus else "cpu"
        _get(self.directory.segmenter_ready.remote(self.id, list(self.ring_names), pub, control, device,
                                                          os.getpid()))
        self.state = "running"
        self._reporter = threading.Thread(target=self._report, args=(pub,), name=f"{self.id}-status", daemon=True)
        self._reporter.start()

    def _report(self, pub: str) -> None:
        """Forward this segmenter's own status topic (fps, objects, source) to the directory."""
        from rtseg.client import Subscriber
        from rtseg.protocol import StatusMessage
        from rtseg.security import pipeline_client

        with Subscriber(pub, topics=["status"], curve=pipeline_client(self.cfg.security)) as sub:
            while not self._stop.is_set():
                msg = sub.recv(timeout=STATUS_REPORT_S)
                if not isinstance(msg, StatusMessage):
                    continue
                cams = {cam: {"fps": st.fps, "frames": st.frames_processed, "objects": list(st.obj_ids),
                              "source": st.source_state} for cam, st in msg.cameras.items()}
                self.directory.report.remote(self.id, cams)

    def pid(self) -> int:
        return os.getpid()

    def stop(self, timeout_s: float = 10.0) -> str:
        self._stop.set()
        for t in (self._thread, self._reporter):
            if t is not None and t.is_alive():
                t.join(timeout_s)
        return self.state
