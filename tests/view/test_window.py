"""The viewer window offscreen, over real sockets: a real Publisher feeds it masks, status and
JPEG frames, a real shared-memory ring feeds it frames, and a real ControlServer with a
recording handler receives what its clicks, drags and keys send.

One test saves the grabbed window to docs/viewer.png when RTSEG_SCREENSHOT_DIR is set
(`RTSEG_SCREENSHOT_DIR=docs pytest tests/view/test_window.py -k screenshot`), and always to tmp.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import contextlib  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from argparse import Namespace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import zmq  # noqa: E402
from pyqtgraph.Qt import QtCore, QtGui, QtTest, QtWidgets  # noqa: E402

from rtseg.config import parse_config  # noqa: E402
from rtseg.pipeline.control import ValidatedRequest, prompt_reply  # noqa: E402
from rtseg.view.viewer import (  # noqa: E402
    ViewerError,
    ViewerOptions,
    build_viewer,
    options_from_args,
    options_from_config,
    viewer_main,
)
from rtseg.protocol import CameraStatus, FrameMessage, MasksMessage, ObjectEvent, StatusMessage  # noqa: E402
from rtseg.pipeline.publisher import Publisher  # noqa: E402
from rtseg.ring import RingWriter  # noqa: E402
from rtseg.sources import Frame, open_source  # noqa: E402
from rtseg.proc import ring_name_for  # noqa: E402
from rtseg.view.overlay import DEFAULT_ALPHA, DIM, ZONE_OCCUPIED_COLOR, object_color  # noqa: E402
from rtseg.view.window import ViewerWindow  # noqa: E402
from rtseg.commands.view import main  # noqa: E402
from tests.helpers.control import serving  # noqa: E402
from tests.helpers.messages import masks_of  # noqa: E402
from tests.helpers.procs import assert_beating, stop_child, stop_process, wait_for  # noqa: E402

CAM = "cam"
ROOT = Path(__file__).resolve().parents[2]
LEFT, RIGHT = QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.RightButton


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def qapp() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["rtseg-test"])


class RecordingHandler:
    """A segmenter stand-in for the ControlServer: records every request it is handed."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size  # (height, width)
        self.objects: set[int] = set()
        self.calls: list[ValidatedRequest] = []

    def cameras(self) -> list[str]:
        return [CAM]

    def frame_size(self, camera: str) -> tuple[int, int]:
        return self.size

    def known_objects(self, camera: str) -> set[int]:
        return set(self.objects)

    def handle(self, req: ValidatedRequest) -> dict[str, Any]:
        self.calls.append(req)
        if req.type in ("add_points", "add_box"):
            self.objects.add(req.obj_id)
            return prompt_reply(frame_index=req.frame_index or 0, requested_frame_index=req.frame_index,
                                obj_ids=self.objects)
        if req.type == "remove":
            self.objects.discard(req.obj_id)
        elif req.type == "reset":
            self.objects.clear()
        return {"obj_ids": sorted(self.objects)}


@contextlib.contextmanager
def viewer(ctx: zmq.Context, pub: Publisher, *, ring: str | None = None, control: str | None = None,
           size: tuple[int, int] = (900, 600), zones: tuple = ()) -> Iterator[ViewerWindow]:
    win = build_viewer(ViewerOptions(CAM, pub.endpoint, control, ring=ring, frame_buffer=16, zones=zones), context=ctx)
    win.resize(*size)
    win.show()
    try:
        yield win
    finally:
        win.close()


def pump(until: Callable[[], Any], timeout: float = 5.0, every: Callable[[], Any] | None = None,
         what: str = "the condition") -> Any:
    """Run the Qt event loop until `until()` is truthy (calling `every()` meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if every is not None:
            every()
        for _ in range(4):
            QtWidgets.QApplication.processEvents()
            time.sleep(0.005)
        result = until()
        if result:
            return result
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def masks_message(index: int, masks: dict[int, np.ndarray], frame: Frame | None = None,
                  skipped: int = 0) -> MasksMessage:
    times = {"capture_ns": frame.t_mono_ns, "capture_wall_ns": frame.t_wall_ns} if frame else {}
    return masks_of(CAM, index, masks, size=(frame.height, frame.width) if frame else None, skipped_total=skipped,
                    **times)


def save_screenshot(win: ViewerWindow, folder: Path, name: str) -> Path:
    """The window as a PNG in `folder`, and in $RTSEG_SCREENSHOT_DIR when set (docs/)."""
    shot = folder / name
    assert win.grab().save(str(shot))
    if os.environ.get("RTSEG_SCREENSHOT_DIR"):
        out = Path(os.environ["RTSEG_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        assert win.grab().save(str(out / name))
    return shot


def grab_array(widget: QtWidgets.QWidget) -> np.ndarray:
    """The widget as it is drawn now, HxWx3 RGB."""
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, stride = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8, count=h * stride).reshape(h, stride)[:, :w * 3].reshape(
        h, w, 3).copy()


def source_to_viewport(win: ViewerWindow, x: float, y: float) -> tuple[int, int]:
    p = win.graphics.mapFromScene(win.viewbox.mapViewToScene(QtCore.QPointF(x, y)))
    return p.x(), p.y()


def mouse(widget: QtWidgets.QWidget, kind: QtCore.QEvent.Type, pos: tuple[float, float],
          button: QtCore.Qt.MouseButton, buttons: QtCore.Qt.MouseButton) -> None:
    local = QtCore.QPointF(*pos)
    event = QtGui.QMouseEvent(kind, local, widget.mapToGlobal(local), button, buttons,
                              QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, event)


def click(win: ViewerWindow, pos: tuple[float, float], button: QtCore.Qt.MouseButton = LEFT) -> None:
    vp = win.graphics.viewport()
    mouse(vp, QtCore.QEvent.Type.MouseButtonPress, pos, button, button)
    mouse(vp, QtCore.QEvent.Type.MouseButtonRelease, pos, button, QtCore.Qt.MouseButton.NoButton)
    QtWidgets.QApplication.processEvents()
    time.sleep(0.35)  # two clicks in a row must not make a double click


def drag(win: ViewerWindow, a: tuple[float, float], b: tuple[float, float]) -> None:
    vp = win.graphics.viewport()
    mouse(vp, QtCore.QEvent.Type.MouseButtonPress, a, LEFT, LEFT)
    for t in np.linspace(0.1, 1.0, 8):
        mouse(vp, QtCore.QEvent.Type.MouseMove, (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])),
              QtCore.Qt.MouseButton.NoButton, LEFT)
        QtWidgets.QApplication.processEvents()
    mouse(vp, QtCore.QEvent.Type.MouseButtonRelease, b, LEFT, QtCore.Qt.MouseButton.NoButton)
    QtWidgets.QApplication.processEvents()


def key(win: ViewerWindow, k: QtCore.Qt.Key) -> None:
    QtTest.QTest.keyClick(win, k)
    QtWidgets.QApplication.processEvents()


# --------------------------------------------------------------------------- what is drawn
def test_screenshot_shows_mask_colour_where_the_mask_is_and_not_elsewhere(qapp, ctx, ring, tmp_path) -> None:
    src = open_source("synthetic://1280x720@30?objects=3&seed=3", source_id=CAM)
    frames = []
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, RingWriter(ring, slots=8, source_id=CAM) as writer, \
            viewer(ctx, pub, ring=ring, size=(1200, 600)) as win:
        writer.set_status("connected")

        def stream() -> None:  # one second of a 30 fps camera, masks for every frame
            frame = src.read()
            frames.append(frame)
            writer.write(frame)
            pub.publish(masks_message(frame.index, frame.gt_masks, frame, skipped=frame.index // 10))

        pump(lambda: len(frames) >= 30 and win.view is not None and win.view.frame_index == frames[-1].index,
             timeout=20, every=lambda: len(frames) < 30 and stream(), what="the last streamed frame on screen")
        last = frames[-1]
        pump(lambda: "frame 29" in win.hud_text() and "camera connected" in win.hud_text(), what="the HUD")
        assert win.view.matched and win.view.masks_index == last.index
        shot = save_screenshot(win, tmp_path, "viewer.png")
        grabbed = grab_array(win.graphics.viewport())
        hud = win.hud_text()

    saved = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert saved.shape[0] > 500 and saved.std() > 10  # a real picture was written
    assert "fps" in hud and "latency" in hud and "skipped 2" in hud and "3 objects" in hud

    image = last.image
    union = np.zeros(image.shape[:2], bool)
    for obj_id, mask in last.gt_masks.items():
        union |= mask
        color = np.array(object_color(obj_id), float)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
        ys, xs = np.nonzero(inner)
        lower = ys > np.median(ys)  # the label sits at the top of the object
        checked = 0
        for y, x in list(zip(ys[lower], xs[lower]))[:: max(1, lower.sum() // 25)]:
            gx, gy = source_to_viewport(win, x + 0.5, y + 0.5)
            expected = (1 - DEFAULT_ALPHA) * image[y, x].astype(float) + DEFAULT_ALPHA * color
            got = grabbed[gy, gx].astype(float)
            assert np.abs(got - expected).max() <= 3, f"object {obj_id} at ({x}, {y}): {got} != {expected}"
            checked += 1
        assert checked >= 10
    def untinted(y: int, x: int) -> None:
        gx, gy = source_to_viewport(win, x + 0.5, y + 0.5)
        around = image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
        got = grabbed[gy, gx].astype(int)
        assert (got >= around.min(0) - 3).all() and (got <= around.max(0) + 3).all(), \
            f"({x}, {y}) outside every mask is tinted: {got}, frame around it {around.min(0)}..{around.max(0)}"

    def dilated(mask: np.ndarray, px: int) -> np.ndarray:
        return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)

    rng = np.random.default_rng(0)
    h, w = union.shape
    border = np.zeros_like(union)
    border[1:-1, 1:-1] = True
    for mask in last.gt_masks.values():  # just outside each object (its box, not its label above it)
        ys, xs = np.nonzero(mask)
        near = dilated(mask, 15) & ~dilated(union, 3) & border
        near[: ys.min() + 40] = False
        ny, nx = np.nonzero(near)
        assert ny.size > 100
        for i in rng.choice(ny.size, 60, replace=False):
            untinted(ny[i], nx[i])
    fy, fx = np.nonzero(~dilated(union, 60) & border)  # far from every mask and label
    for i in rng.choice(fy.size, 150, replace=False):
        untinted(fy[i], fx[i])


def test_masks_are_drawn_on_the_frame_they_belong_to(qapp, ctx, ring) -> None:
    h, w = 120, 160
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (80, 60), 25, 1, -1)
    mask = disc.astype(bool)
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, RingWriter(ring, slots=8, source_id=CAM) as writer, \
            viewer(ctx, pub, ring=ring) as win:
        frames = [Frame.now(np.full((h, w, 3), 10 * i, np.uint8), CAM, i) for i in range(6)]
        writer.write(frames[0])
        pump(lambda: win.view is not None, what="the first frame")  # the reader follows from here on
        for f in frames[1:]:
            writer.write(f)
        pump(lambda: win.view is not None and win.view.frame_index == 5, what="the newest frame, without masks")
        assert not win.view.matched
        pump(lambda: win.view.frame_index == 3 and win.view.matched,
             every=lambda: pub.publish(masks_message(3, {1: mask}, frames[3])), what="frame 3 with its masks")
        view = win.view
        assert (view.frame[0, 0] == 30).all()  # frame 3's own pixels, not the newest frame's
        inside = view.image[60, 80].astype(float)
        expected = (1 - DEFAULT_ALPHA) * 30 + DEFAULT_ALPHA * np.array(object_color(1), float)
        assert np.abs(inside - expected).max() <= 1
        assert (view.image[5, 5] == 30).all()


def test_remote_viewer_matches_jpeg_frames_and_masks_by_frame_index(qapp, ctx) -> None:
    h, w = 96, 128
    mask = np.zeros((h, w), bool)
    mask[30:70, 40:90] = True
    colours = {10: (200, 30, 30), 11: (30, 200, 30), 12: (30, 30, 200)}
    jpegs = {i: FrameMessage.from_image(CAM, i, np.full((h, w, 3), c, np.uint8), capture_ns=i, capture_wall_ns=i,
                                        quality=95) for i, c in colours.items()}
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, viewer(ctx, pub) as win:
        def send(masks_for: int) -> None:
            pub.publish(masks_message(masks_for, {4: mask}))
            for i in sorted(jpegs):
                pub.publish(jpegs[i])

        pump(lambda: win.view is not None and win.view.frame_index == 11 and win.view.matched,
             every=lambda: send(11), what="JPEG frame 11 with the masks of frame 11")
        view = win.view
        assert np.abs(view.frame[5, 5].astype(int) - colours[11]).max() <= 6
        expected = (1 - DEFAULT_ALPHA) * view.frame[50, 60].astype(float) + DEFAULT_ALPHA * np.array(object_color(4))
        assert np.abs(view.image[50, 60].astype(float) - expected).max() <= 1
        grabbed = grab_array(win.graphics.viewport())
        gx, gy = source_to_viewport(win, 65.5, 60.5)
        assert np.abs(grabbed[gy, gx].astype(float) - expected).max() <= 3
        gx, gy = source_to_viewport(win, 10.5, 90.5)
        assert np.abs(grabbed[gy, gx].astype(int) - colours[11]).max() <= 6
        pump(lambda: win.view.frame_index == 12 and win.view.matched, every=lambda: send(12),
             what="frame 12 once its masks came")


# --------------------------------------------------------------------------- HUD
def test_hud_says_camera_lost_reconnecting_from_the_status_topic(qapp, ctx) -> None:
    status = StatusMessage(cameras={CAM: CameraStatus(fps=0.0, source_state="reconnecting (attempt 3)")})
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, viewer(ctx, pub) as win:
        pump(lambda: "camera lost, reconnecting (attempt 3)" in win.hud_text(), every=lambda: pub.publish(status),
             what="the reconnecting state in the HUD")


def test_hud_follows_the_ring_from_waiting_to_reconnecting(qapp, ctx, ring) -> None:
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, viewer(ctx, pub, ring=ring) as win:
        # started before the capture, as `rtseg run` may start it
        pump(lambda: f"waiting for ring {ring!r}" in win.hud_text(), what="waiting for the ring")
        with RingWriter(ring, source_id=CAM) as writer:
            writer.write(Frame.now(np.zeros((48, 64, 3), np.uint8), CAM, 0))
            writer.set_status("connected")
            pump(lambda: "camera connected" in win.hud_text() and win.view is not None, what="camera connected")
            writer.set_status("reconnecting", attempt=2, message="read timeout")
            pump(lambda: "camera lost, reconnecting (attempt 2)" in win.hud_text(), what="the reconnecting state")


# --------------------------------------------------------------------------- prompts
def marker_frame(index: int, w: int = 640, h: int = 480) -> tuple[Frame, dict[str, tuple[float, float]]]:
    """A dark frame with three 9x9 coloured squares; returns their centres (source pixels)."""
    img = np.full((h, w, 3), 20, np.uint8)
    squares = {"red": ((100, 80), (255, 0, 0)), "green": ((500, 400), (0, 255, 0)), "blue": ((320, 240), (0, 0, 255))}
    centres = {}
    for name, ((x, y), colour) in squares.items():
        img[y:y + 9, x:x + 9] = colour
        centres[name] = (x + 4.5, y + 4.5)
    return Frame.now(img, CAM, index), centres


def find_marker(grabbed: np.ndarray, colour: tuple[int, int, int]) -> tuple[float, float]:
    """Where a marker shows in the grabbed viewport (its centroid, widget pixels)."""
    hit = np.all(np.abs(grabbed.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(hit)
    assert xs.size, f"marker {colour} not on screen"
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5


@pytest.mark.parametrize("window", [(600, 420), (1500, 1100)], ids=["shrunk", "enlarged"])
def test_clicks_and_drags_on_a_scaled_window_send_source_pixel_prompts(qapp, ctx, ring, window) -> None:
    handler = RecordingHandler((480, 640))
    frame, centres = marker_frame(7)
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, RingWriter(ring, source_id=CAM) as writer, \
            serving(handler, ctx) as server, \
            viewer(ctx, pub, ring=ring, control=server.endpoint, size=window) as win:
        writer.write(frame)
        pump(lambda: win.view is not None and win.view.frame_index == 7 and win.view.matched,
             every=lambda: pub.publish(masks_message(7, {}, frame)), what="frame 7 on screen")
        vp = win.graphics.viewport()
        scale = vp.width() / 640 if vp.width() / vp.height() < 640 / 480 else vp.height() / 480
        assert abs(scale - 1) > 0.2, f"the window must be scaled, got {scale:.2f}"
        grabbed = grab_array(vp)
        on_screen = {name: find_marker(grabbed, c) for name, c in
                     (("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255)))}
        tol = 1.0 / scale + 1.0

        click(win, on_screen["red"])  # left: a positive point, new object 1
        click(win, on_screen["green"], RIGHT)  # right: a negative point, same object
        drag(win, on_screen["red"], on_screen["blue"])  # drag: a box, same object
        pump(lambda: len(handler.calls) >= 3, what="three prompts at the control server")
        pos, neg, box = handler.calls[:3]
        assert (pos.type, pos.camera, pos.obj_id, pos.frame_index) == ("add_points", CAM, 1, 7)
        assert pos.labels.tolist() == [1]
        np.testing.assert_allclose(pos.points[0], centres["red"], atol=tol)
        assert (neg.type, neg.obj_id, neg.frame_index, neg.labels.tolist()) == ("add_points", 1, 7, [0])
        np.testing.assert_allclose(neg.points[0], centres["green"], atol=tol)
        assert (box.type, box.obj_id, box.frame_index) == ("add_box", 1, 7)
        np.testing.assert_allclose(box.box, [*centres["red"], *centres["blue"]], atol=tol)

        key(win, QtCore.Qt.Key.Key_Escape)  # deselect: the next click starts object 2
        click(win, on_screen["blue"])
        pump(lambda: len(handler.calls) >= 4, what="the fourth prompt")
        assert (handler.calls[3].type, handler.calls[3].obj_id) == ("add_points", 2)
        np.testing.assert_allclose(handler.calls[3].points[0], centres["blue"], atol=tol)
        pump(lambda: "applied" in win.statusBar().currentMessage(), what="the reply in the status bar")


def test_keys_new_object_remove_reset_and_pause(qapp, ctx, ring) -> None:
    handler = RecordingHandler((480, 640))
    frame, centres = marker_frame(3)
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, RingWriter(ring, source_id=CAM) as writer, \
            serving(handler, ctx) as server, viewer(ctx, pub, ring=ring, control=server.endpoint) as win:
        writer.write(frame)
        pump(lambda: win.view is not None and win.view.frame_index == 3, what="frame 3")
        red = source_to_viewport(win, *centres["red"])
        right = source_to_viewport(win, *centres["green"])
        click(win, right, RIGHT)  # nothing selected yet: refused here, nothing sent
        assert "selected object" in win.statusBar().currentMessage()
        click(win, red)
        pump(lambda: 1 in win.book.known, what="object 1 known from the reply")
        assert win.object_list.count() == 1 and "1" in win.object_list.item(0).text()
        key(win, QtCore.Qt.Key.Key_N)
        assert win.book.selected == 2 and win.object_list.count() == 2
        click(win, red)
        key(win, QtCore.Qt.Key.Key_Delete)  # removes the selected object 2
        key(win, QtCore.Qt.Key.Key_R)
        pump(lambda: len(handler.calls) >= 4, what="point, point, remove, reset")
        assert [(c.type, c.obj_id) for c in handler.calls] == [("add_points", 1), ("add_points", 2), ("remove", 2),
                                                               ("reset", None)]
        pump(lambda: not win.book.known and win.object_list.count() == 0, what="the list emptied by the reset")

        key(win, QtCore.Qt.Key.Key_Space)  # pause: the screen keeps frame 3, clicks go to frame 3
        assert win.paused and "PAUSED" in win.hud_text()
        later, _ = marker_frame(4)
        writer.write(later)
        pump(lambda: win.feed.latest_view() is not None and win.feed.latest_view().frame_index == 4,
             what="frame 4 composed behind the paused screen")
        assert win.view.frame_index == 3
        click(win, red)
        pump(lambda: len(handler.calls) >= 5, what="a click while paused")
        assert handler.calls[4].frame_index == 3
        key(win, QtCore.Qt.Key.Key_Space)
        pump(lambda: win.view.frame_index == 4, what="live again")


# --------------------------------------------------------------------------- entry points
CONFIG = """\
cameras:
  - id: front
    source: "synthetic://64x48@5"
  - id: back
    source: "synthetic://64x48@5"
network:
  pub: tcp://*:{pub}
  control: tcp://0.0.0.0:{control}
viewer:
  enabled: true
  camera: back
  frame_buffer: 12
supervisor:
  state_dir: {state}
"""


def test_viewer_main_beats_and_exits_0_when_stopped(ctx, ring, tmp_path) -> None:
    cfg = parse_config(CONFIG.format(pub=5599, control=5598, state=tmp_path))
    spawn = mp.get_context("spawn")
    stop, beat = spawn.Event(), spawn.Value("d", 0.0, lock=False)
    with RingWriter(ring, source_id="back"):
        proc = spawn.Process(target=viewer_main, args=(cfg, {"back": ring}, stop, beat, None), name="viewer")
        proc.start()
        try:
            assert_beating(beat, proc)
            assert stop_child(proc, stop) == 0
        finally:
            stop_child(proc, stop, 0)


def test_options_from_config_and_command_line(tmp_path, ring, capsys) -> None:
    text = CONFIG.format(pub=5599, control=5598, state=tmp_path)
    cfg = parse_config(text)
    opts = options_from_config(cfg, {"front": "r-front", "back": "r-back"})
    assert (opts.camera, opts.ring, opts.frame_buffer) == ("back", "r-back", 12)
    assert (opts.pub, opts.control) == ("tcp://127.0.0.1:5599", "tcp://127.0.0.1:5598")

    secured = parse_config(text + "security:\n  curve: true\n  server_secret_key: s.key_secret\n"
                                  "  authorized_clients: auth\n")
    with pytest.raises(ViewerError, match="viewer.client_key"):
        options_from_config(secured, {})

    config = tmp_path / "c.yaml"
    config.write_text(text)

    def args(**kw: Any) -> Namespace:
        base = dict(config=str(config), pub=None, control=None, view_only=False, camera=None, ring=None,
                    frame_buffer=None, fps=None, client_key=None, server_key=None, log_level="INFO")
        return Namespace(**{**base, **kw})

    remote = options_from_args(args(camera="front"))
    assert (remote.camera, remote.ring, remote.pub) == ("front", None, "tcp://127.0.0.1:5599")
    with pytest.raises(ViewerError, match=r"camera 'side' is not in the config; cameras: \['front', 'back'\]"):
        options_from_args(args(camera="side"))
    with pytest.raises(ViewerError, match="--ring auto: no running pipeline found"):
        options_from_args(args(ring="auto"))
    (tmp_path / "processes.json").write_text(json.dumps({"run_id": "run42", "supervisor": 1}))
    with pytest.raises(ViewerError, match="ring 'run42-back' .* is not in shared memory"):
        options_from_args(args(ring="auto"))
    with RingWriter(ring_name_for("run42", "back")):
        assert options_from_args(args(ring="auto")).ring == "run42-back"

    assert main(args(ring=ring)) == 2  # no such ring: a clear error, no window
    assert f"no ring {ring!r} in shared memory" in capsys.readouterr().err
    assert main(args(config=None, camera=None, view_only=True)) == 2
    assert "--view-only needs --camera" in capsys.readouterr().err


def test_bench_viewer_tool_runs() -> None:
    out = subprocess.run([sys.executable, "-W", "error", "tools/bench_viewer.py", "--size", "320x240", "--seconds",
                          "0.5"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert "render:" in out.stdout and "frames/s" in out.stdout
    assert "stream at 30 fps: shown" in out.stdout, out.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_rtseg_view_command_closes_cleanly_within_1_s_on_ctrl_c_and_sigterm(ctx, ring, sig) -> None:
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, RingWriter(ring, source_id=CAM) as writer:
        writer.write(Frame.now(np.zeros((48, 64, 3), np.uint8), CAM, 0))
        proc = subprocess.Popen([sys.executable, "-W", "error", "-m", "rtseg.cli", "view", "--ring", ring, "--camera",
                                 CAM, "--pub", pub.endpoint, "--view-only"], cwd=ROOT, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        try:
            wait_for(lambda: proc.poll() is not None or any("viewer: camera cam" in line for line in lines), 30,
                     "the viewer's window")
            assert proc.poll() is None, "".join(lines)
            assert any(f"frames from ring {ring}" in line for line in lines), "".join(lines)
            time.sleep(0.5)
            sent = time.monotonic()
            proc.send_signal(sig)
            assert proc.wait(15) == 0, "".join(lines)
            took = time.monotonic() - sent
            assert took < 1.0, f"the viewer took {took:.2f} s to close"
        finally:
            stop_process(proc, signal.SIGKILL)
            reader.join(5)
            proc.stderr.close()
        assert "Traceback" not in "".join(lines)


# --------------------------------------------------------------------------- zones, states, events
def test_screenshot_shows_zones_object_states_and_the_event_list(qapp, ctx, tmp_path) -> None:
    """Object 1 is tracked inside zone "door" (amber), object 2 is lost but still has a mask
    (dimmed), object 3 is occluded with an empty mask (a box where it was last seen)."""
    h, w = 540, 960
    src = open_source(f"synthetic://{w}x{h}@30?objects=3&seed=3", source_id=CAM)
    frame = src.read()
    gt = frame.gt_masks
    ys3, xs3 = np.nonzero(gt[3])
    box3 = (float(xs3.min()), float(ys3.min()), float(xs3.max() + 1), float(ys3.max() + 1))
    ys1, xs1 = np.nonzero(gt[1])
    door = ((max(xs1.min() - 20, 0), max(ys1.min() - 20, 0)), (min(xs1.max() + 20, w), max(ys1.min() - 20, 0)),
            (min(xs1.max() + 20, w), min(ys1.max() + 20, h)), (max(xs1.min() - 20, 0), min(ys1.max() + 20, h)))
    masks = np.stack([gt[1], gt[2], np.zeros((h, w), bool)])
    boxes = np.zeros((3, 4), np.float32)
    now = time.monotonic_ns()
    msg = MasksMessage.from_arrays(CAM, frame.index, obj_ids=[1, 2, 3], masks=masks, scores=[4.0, -2.0, -6.0],
                                   boxes=boxes, capture_ns=now, capture_wall_ns=time.time_ns(), processed_ns=now,
                                   states=["tracking", "lost", "occluded"])
    jpeg = FrameMessage.from_image(CAM, frame.index, frame.image, capture_ns=now, capture_wall_ns=time.time_ns(),
                                   quality=98)

    def ev(kind: str, obj_id: int, state: str, zone: str | None = None, box=(0.0, 0.0, 0.0, 0.0)) -> ObjectEvent:
        return ObjectEvent(CAM, kind, obj_id, frame.index, now, time.time_ns(), state, box, 1.0, None, 2.5, zone)

    events = [ev("appeared", 1, "tracking"), ev("appeared", 2, "tracking"), ev("appeared", 3, "tracking"),
              ev("entered_zone", 1, "tracking", "door"), ev("occluded", 3, "occluded", box=box3),
              ev("lost", 2, "lost")]
    with Publisher("tcp://127.0.0.1:*", context=ctx) as pub, \
            viewer(ctx, pub, size=(1100, 600), zones=(("door", door),)) as win:
        def send() -> None:
            pub.publish(msg)
            pub.publish(jpeg)

        pump(lambda: win.view is not None and win.view.matched, every=send, what="the first frame")
        for e in events:  # the subscription is live now: each event once
            pub.publish(e)
        pump(lambda: win.view is not None and win.view.matched and win.event_list.count() == len(events)
             and "occluded" in win.view.objects[2].state and win.feed.occupied_zones() == ["door"]
             and any(win.object_list.item(i).text().find("lost") >= 0 for i in range(win.object_list.count())),
             timeout=15, every=send, what="the zone, the states and the events on screen")
        x, y = int(door[0][0]) + 30, int(door[0][1])
        pump(lambda: np.abs(win.view.image[y, x].astype(int) - ZONE_OCCUPIED_COLOR).max() <= 40, every=send,
             what="the zone's edge amber: it is occupied")
        save_screenshot(win, tmp_path, "viewer-zones.png")
        view = win.view
        rows = [win.object_list.item(i).text() for i in range(win.object_list.count())]
        listed = [win.event_list.item(i).text() for i in range(win.event_list.count())]

    assert any("1   tracking" in r for r in rows) and any("2   lost" in r for r in rows)
    assert any("3   occluded" in r for r in rows)
    assert len(listed) == len(events) and listed[0].endswith("object 2 lost after 2.5 s") and any("object 1 entered door" in t for t in listed)
    # tracked: full opacity; lost: dimmed
    inner1 = cv2.erode(gt[1].astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    inner2 = cv2.erode(gt[2].astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~inner1
    for inner, obj_id, alpha in ((inner1, 1, DEFAULT_ALPHA), (inner2, 2, DEFAULT_ALPHA * DIM)):
        ys, xs = np.nonzero(inner)
        yy, xx = ys[-1], xs[-1]  # low in the object: away from its label
        base = view.frame[yy, xx].astype(float)
        expected = (1 - alpha) * base + alpha * np.array(object_color(obj_id))
        assert np.abs(view.image[yy, xx].astype(float) - expected).max() <= 2, obj_id
    # occluded with an empty mask: its last-seen box is outlined in its colour
    x0, y0, x1, y1 = (int(v) for v in box3)
    edge = view.frame[(y0 + y1) // 2, x0].astype(int)
    assert np.abs(edge - frame.image[(y0 + y1) // 2, x0].astype(int)).max() > 20


def test_a_viewer_without_config_gets_the_zones_from_the_segmenter(ctx) -> None:
    class WithZones(RecordingHandler):
        def zones(self, camera: str) -> list[dict]:
            return [{"name": "door", "polygon": [[0, 0], [40, 0], [40, 30]], "min_overlap": 0.5}]

    base = dict(config=None, pub="tcp://127.0.0.1:5599", view_only=False, camera=CAM, ring=None, frame_buffer=None,
                fps=None, client_key=None, server_key=None, log_level="INFO")
    with serving(WithZones((48, 64)), ctx) as server:
        opts = options_from_args(Namespace(**base, control=server.endpoint))
    assert opts.zones == (("door", ((0, 0), (40, 0), (40, 30))),)
    with serving(RecordingHandler((48, 64)), ctx) as server:  # a segmenter without zones
        assert options_from_args(Namespace(**base, control=server.endpoint)).zones == ()
