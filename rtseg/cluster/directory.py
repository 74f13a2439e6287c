"""The cluster's front door: where each camera runs, its objects' prompts, and `locate`.

`Directory` is a plain object; `rtseg cluster` runs it as a named, detached Ray actor
("rtseg-directory" in namespace "rtseg") pinned to the head node, so it outlives any GPU
node and is what every other part talks to:

- the manager writes placements (camera -> state, node, segmenter);
- segmenter actors report when they are ready (their bound publish/control endpoints),
  their per-camera status (fps, objects, frames, source state) and failures; they count
  their starts here, which gives a restart budget that survives their process;
- the prompt log lives here, persisted on the head (`supervisor.state_dir/prompts.jsonl`,
  rtseg.pipeline.prompt_log): a segmenter that restarts on another node re-creates every
  object from it;
- a ZeroMQ ROUTER at `cluster.directory` answers `locate` for clients without Ray
  (docs/PROTOCOL.md, rtseg.locate). It carries control only, never pixels or masks.

States of a camera: unplaced (waiting for capacity), starting (its capture and segmenter are
being created or are loading the model), running (masks on `pub`, prompts on `control`),
failed (restart budget used up, or a fatal error such as a bad checkpoint; `message` says why).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import zmq

from rtseg.locate import LOCATE
from rtseg.pipeline.control import ErrorCode, RequestError, error_reply
from rtseg.pipeline.prompt_log import LoggedPrompt, PromptLog
from rtseg.protocol import PROTOCOL_VERSION, packb, unpackb
from rtseg.security import bind_server_socket

log = logging.getLogger("rtseg.cluster.directory")

NAME, NAMESPACE = "rtseg-directory", "rtseg"
UNPLACED, STARTING, RUNNING, FAILED = "unplaced", "starting", "running", "failed"
MAX_LOCATE_BYTES = 4096


def _entry() -> dict[str, Any]:
    return {"state": UNPLACED, "node": None, "host": None, "segmenter": None, "device": None, "pub": None,
            "control": None, "pid": None, "fps": 0.0, "frames": 0, "objects": [], "source": None, "moves": 0,
            "message": "", "since_wall_ns": time.time_ns()}


class Directory:
    def __init__(self, cameras: list[str], state_dir: str, endpoint: str, *, restart_budget: int = 5,
                 restart_window_s: float = 300.0) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s directory %(levelname)s: %(message)s")
        self._lock = threading.Lock()
        self._entries = {cam: _entry() for cam in cameras}
        self._last_segmenter: dict[str, str] = {}  # camera -> the last segmenter that carried it (moves)
        self._prompts = PromptLog(Path(state_dir) / "prompts.jsonl")
        self._budget, self._window = restart_budget, restart_window_s
        self._starts: dict[str, deque] = {}
        self._context = zmq.Context()
        try:
            self._socket, self._endpoint = bind_server_socket(zmq.ROUTER, endpoint, curve=None, context=self._context,
                                                              what="cluster directory", config_key="cluster.directory")
        except OSError:
            self._context.term()
            raise
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="directory-locate", daemon=True)
        self._thread.start()
        log.info("directory serving locate on %s; prompt log %s", self._endpoint, self._prompts.path)

    # ------------------------------------------------------------ manager
    def endpoint(self) -> str:
        """The endpoint really bound (":*" resolved; 0.0.0.0 means every interface of the head)."""
        return self._endpoint

    def place(self, camera: str, **fields: Any) -> None:
        """Set a camera's placement fields (state, node, host, segmenter, message, ...). Leaving
        `running` clears its endpoints; state `starting` on a new segmenter counts a move."""
        with self._lock:
            e = self._entries[camera]
            new, last = fields.get("segmenter"), self._last_segmenter.get(camera)
            if new:
                if last and new != last:
                    e["moves"] += 1
                self._last_segmenter[camera] = new
            if fields.get("state", RUNNING) != RUNNING:
                e.update(pub=None, control=None, pid=None, fps=0.0)
            if "state" in fields and fields["state"] != e["state"]:
                e["since_wall_ns"] = time.time_ns()
            e.update(fields)

    # ---------------------------------------------------------- segmenters
    def segmenter_started(self, segmenter: str) -> bool:
        """A segmenter actor (re)starts: False when it used up its restart budget (the first
        start is free; then `restart_budget` restarts per `restart_window_s`, as `rtseg run`)."""
        now = time.monotonic()
        with self._lock:
            starts = self._starts.setdefault(segmenter, deque())
            while starts and now - starts[0] > self._window:
                starts.popleft()
            if len(starts) > self._budget:
                return False
            starts.append(now)
            return True

    def segmenter_ready(self, segmenter: str, cameras: list[str], pub: str, control: str, device: str,
                        pid: int) -> None:
        with self._lock:
            for cam in cameras:
                e = self._entries[cam]
                if e["segmenter"] == segmenter:
                    e.update(state=RUNNING, pub=pub, control=control, device=device, pid=pid, message="",
                             since_wall_ns=time.time_ns())
        log.info("segmenter %s ready (%s): %s on %s", segmenter, device, cameras, pub)

    def segmenter_down(self, segmenter: str, cameras: list[str], state: str, message: str) -> None:
        """A segmenter stopped serving its cameras (restarting: `starting`; gave up: `failed`)."""
        for cam in cameras:
            with self._lock:
                mine = self._entries[cam]["segmenter"] == segmenter
            if mine:
                self.place(cam, state=state, message=message)
        log.warning("segmenter %s %s: %s", segmenter, state, message)

    def report(self, segmenter: str, cameras: dict[str, dict[str, Any]]) -> None:
        """Per-camera status from a segmenter (ignored for cameras it no longer serves)."""
        with self._lock:
            for cam, st in cameras.items():
                e = self._entries.get(cam)
                if e is not None and e["segmenter"] == segmenter:
                    e.update({k: st[k] for k in ("fps", "frames", "objects", "source") if k in st})

    # -------------------------------------------------- prompt log (PromptLog's interface)
    def prompt_add(self, camera: str, obj_id: int, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._prompts.add(camera, obj_id, kind, payload)

    def prompt_remove(self, camera: str, obj_id: int) -> None:
        with self._lock:
            self._prompts.remove(camera, obj_id)

    def prompt_reset(self, camera: str) -> None:
        with self._lock:
            self._prompts.reset(camera)

    def latest_prompts(self, camera: str) -> list[LoggedPrompt]:
        with self._lock:
            return self._prompts.latest_prompts(camera)

    # -------------------------------------------------------------- locate
    def locate(self, camera: str | None = None) -> dict[str, dict[str, Any]]:
        with self._lock:
            if camera is None:
                return {cam: dict(e) for cam, e in self._entries.items()}
            if camera not in self._entries:
                raise RequestError(ErrorCode.UNKNOWN_CAMERA, f"no camera {camera!r} in this cluster; cameras: "
                                   f"{sorted(self._entries)[:20]}", field="camera")
            return {camera: dict(self._entries[camera])}

    def _answer(self, raw: bytes) -> dict[str, Any]:
        request_type = request_id = None
        try:
            if len(raw) > MAX_LOCATE_BYTES:
                raise RequestError(ErrorCode.PAYLOAD_TOO_LARGE, f"a locate request is at most {MAX_LOCATE_BYTES} bytes")
            try:
                request = unpackb(raw)
            except Exception:
                raise RequestError(ErrorCode.BAD_ENCODING, "not a msgpack message") from None
            if not isinstance(request, dict):
                raise RequestError(ErrorCode.BAD_REQUEST, "a request is a msgpack map")
            request_type, request_id = request.get("type"), request.get("id")
            if request.get("v") != PROTOCOL_VERSION:
                raise RequestError(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {request.get('v')!r}; "
                                   f"this directory speaks {PROTOCOL_VERSION}", field="v")
            if request_type != LOCATE:
                raise RequestError(ErrorCode.UNKNOWN_TYPE, f"the directory answers {LOCATE!r} only, got "
                                   f"{request_type!r}; send prompts to the camera's control endpoint", field="type")
            extra = set(request) - {"v", "type", "id", "camera"}
            if extra:
                raise RequestError(ErrorCode.BAD_REQUEST, f"unknown field(s) {sorted(extra)}", field=sorted(extra)[0])
            camera = request.get("camera")
            if camera is not None and not isinstance(camera, str):
                raise RequestError(ErrorCode.INVALID_VALUE, f"camera must be a string, got {camera!r:.60}",
                                   field="camera")
            return {"v": PROTOCOL_VERSION, "ok": True, "type": LOCATE, "id": request_id,
                    "cameras": self.locate(camera)}
        except RequestError as err:
            return error_reply(err, request_type, request_id)

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                if not self._socket.poll(100, zmq.POLLIN):
                    continue
                parts = self._socket.recv_multipart()
            except zmq.ZMQError:
                if self._closing.is_set():
                    return
                raise
            if len(parts) < 2:
                continue
            envelope, raw = parts[:-1], parts[-1]
            self._socket.send_multipart([*envelope, packb(self._answer(raw))])

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2.0)
        self._socket.close(linger=0)
        self._context.term()
