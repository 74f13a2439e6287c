"""Prompts from the viewer to the segmenter's control socket, sent from a thread of their own
so that a slow or absent segmenter never freezes the window. Requests go out in click order;
their outcomes come back through `results()`, polled by the GUI."""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import zmq

from rtseg.client import ControlError, Controller, ControlTimeout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptRequest:
    op: str  # add_points | add_box | remove | reset | list
    camera: str
    obj_id: int | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    frame_index: int | None = None

    def describe(self) -> str:
        if self.op == "add_points":
            kind = "positive" if self.labels and self.labels[0] == 1 else "negative"
            x, y = self.points[0]
            return f"{kind} click ({x:.0f}, {y:.0f}) on object {self.obj_id}"
        if self.op == "add_box":
            return f"box {tuple(round(v) for v in self.box or ())} on object {self.obj_id}"
        if self.op == "remove":
            return f"remove object {self.obj_id}"
        return f"{self.op} camera {self.camera}"


@dataclass(frozen=True)
class PromptResult:
    request: PromptRequest
    ok: bool
    reply: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def describe(self) -> str:
        what = self.request.describe()
        if not self.ok:
            return f"{what}: {self.error}"
        frame = self.reply.get("frame_index")
        if self.reply.get("applied_to") == "latest" and self.request.frame_index is not None:
            return f"{what}: applied to frame {frame} (frame {self.request.frame_index} no longer held)"
        return f"{what}: applied" + (f" to frame {frame}" if frame is not None else "")


class PromptSender:
    """Owns a Controller in its own thread; `send()` never blocks."""

    def __init__(self, endpoint: str, *, timeout_s: float = 3.0, curve: Any = None,
                 context: zmq.Context | None = None, cluster: bool = False) -> None:
        self.endpoint = endpoint
        self.cluster = cluster  # endpoint is the directory of `rtseg cluster`
        self._timeout_s = timeout_s
        self._curve = curve
        self._context = context
        self._requests: queue.Queue[PromptRequest | None] = queue.Queue()
        self._results: queue.Queue[PromptResult] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="view-prompts", daemon=True)

    def start(self) -> PromptSender:
        self._thread.start()
        return self

    def send(self, request: PromptRequest) -> None:
        log.info("viewer: sending %s (frame %s)", request.describe(), request.frame_index)
        self._requests.put(request)

    def results(self) -> list[PromptResult]:
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def stop(self, timeout_s: float = 2.0) -> None:
        self._requests.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        ctl = Controller(None if self.cluster else self.endpoint, timeout=self._timeout_s, curve=self._curve,
                         context=self._context, cluster=self.endpoint if self.cluster else None)
        try:
            while True:
                request = self._requests.get()
                if request is None:
                    return
                self._results.put(self._apply(ctl, request))
        finally:
            ctl.close()

    @staticmethod
    def _apply(ctl: Controller, r: PromptRequest) -> PromptResult:
        try:
            if r.op == "add_points":
                reply = ctl.add_points(r.camera, r.obj_id, [list(p) for p in r.points], list(r.labels),
                                       frame_index=r.frame_index)
            elif r.op == "add_box":
                reply = ctl.add_box(r.camera, r.obj_id, list(r.box or ()), frame_index=r.frame_index)
            elif r.op == "remove":
                reply = ctl.remove(r.camera, r.obj_id)
            elif r.op == "reset":
                reply = ctl.reset(r.camera)
            elif r.op == "list":
                reply = ctl.list(r.camera)
            else:
                raise ValueError(f"unknown viewer request {r.op!r}")
        except ControlError as e:
            log.warning("viewer: %s refused: %s", r.describe(), e)
            return PromptResult(r, False, e.reply, f"refused [{e.code}]: {e.message}")
        except ControlTimeout as e:
            log.warning("viewer: %s: %s", r.describe(), e)
            return PromptResult(r, False, {}, f"no reply from the segmenter at {ctl.endpoint}: is it running?")
        except Exception as e:  # never let the thread die: the next click must still go out
            log.exception("viewer: %s failed", r.describe())
            return PromptResult(r, False, {}, f"{type(e).__name__}: {e}")
        return PromptResult(r, True, reply)
