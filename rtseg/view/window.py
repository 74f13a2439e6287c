"""The viewer window (pyqtgraph on PySide6): the composed view, a heads-up line, an object
list (with each object's state; occluded and lost dimmed), a running list of object events
(appeared, occluded, reappeared, lost, removed, entered / left a zone), and mouse/keys that
become prompts.

The image item sits at the origin with one scene unit per source pixel, so a position in
the view box *is* a source-pixel coordinate whatever the window size; clicks are sent with
the capture frame_index of the frame on screen.

Mouse: left click = positive point (selected object, or a new one), right click = negative
point (selected object), left drag = box (selected object, or a new one).
Keys: N new object, Esc deselect (next click starts a new object), Delete remove the
selected object, R reset the camera, Space pause / resume.
"""
from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from rtseg.view.feed import Feed, View
from rtseg.view.hud import HudInfo, event_text, hud_text
from rtseg.view.objects import ObjectBook
from rtseg.view.overlay import HIDDEN_STATES, draw_overlay, object_color
from rtseg.view.prompts import PromptRequest, PromptResult, PromptSender

log = logging.getLogger(__name__)

HELP = ("Left click: object point   Right click: background point   Drag: box\n"
        "N new object   Esc deselect   Del remove   R reset   Space pause")
MIN_BOX_PX = 2.0
MARKER_S = 1.5  # how long a click stays marked on the image


class _Markers(pg.ScatterPlotItem):
    """Where the recent clicks went; never takes a click itself (the next click may land on it)."""

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        ev.ignore()

    def hoverEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        pass


class PromptViewBox(pg.ViewBox):
    """A view box that turns clicks and drags into prompts instead of panning and zooming.
    Coordinates are view (= source pixel) coordinates."""

    clicked = QtCore.Signal(float, float, bool)  # x, y, positive (left button)
    boxed = QtCore.Signal(float, float, float, float)  # x0, y0, x1, y1

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self.setMouseEnabled(x=False, y=False)
        self.rubber_band = QtWidgets.QGraphicsRectItem()
        pen = pg.mkPen((255, 255, 255), width=2, style=QtCore.Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.rubber_band.setPen(pen)
        self.rubber_band.setZValue(1e9)
        self.rubber_band.hide()
        self.addItem(self.rubber_band, ignoreBounds=True)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        button = ev.button()
        if button not in (QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.MouseButton.RightButton):
            ev.ignore()
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        self.clicked.emit(p.x(), p.y(), button == QtCore.Qt.MouseButton.LeftButton)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        a = self.mapSceneToView(ev.buttonDownScenePos())
        b = self.mapSceneToView(ev.scenePos())
        rect = QtCore.QRectF(a, b).normalized()
        if ev.isFinish():
            self.rubber_band.hide()
            self.boxed.emit(rect.left(), rect.top(), rect.right(), rect.bottom())
        else:
            self.rubber_band.setRect(rect)
            self.rubber_band.show()

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - no zoom: the whole frame stays in view
        ev.ignore()


class ViewerWindow(QtWidgets.QMainWindow):
    """The window of one camera. `feed` delivers composed views; `sender` sends prompts
    (None: view only, clicks are refused with a message)."""

    def __init__(self, feed: Feed, sender: PromptSender | None, camera: str, *, fps: float = 30.0,
                 source_label: str = "") -> None:
        super().__init__()
        self.feed, self.sender, self.camera = feed, sender, camera
        self.book = ObjectBook()
        self.paused = False
        self._view: View | None = None
        self._size: tuple[int, int] | None = None
        self._min_interval_s = 1.0 / max(fps, 1.0)
        self._last_show = 0.0
        self._shown_times: deque[float] = deque(maxlen=120)
        self.frames_shown = 0
        self._objects_serial = 0  # the feed counts from 0: nothing received yet
        self._events_serial = 0
        self._markers: deque[tuple[float, float, float, bool]] = deque(maxlen=32)  # t, x, y, positive
        self.setWindowTitle(f"rtseg view - camera {camera}" + (f" ({source_label})" if source_label else ""))
        self._build()
        self._render_timer = QtCore.QTimer(self)
        self._render_timer.timeout.connect(self.tick)
        self._render_timer.start(5)
        self._hud_timer = QtCore.QTimer(self)
        self._hud_timer.timeout.connect(self.update_hud)
        self._hud_timer.start(250)

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.hud = QtWidgets.QLabel("starting...")
        self.hud.setStyleSheet("QLabel { background: #111; color: #eee; padding: 4px; font-family: monospace; }")
        self.hud.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        layout.addWidget(self.hud)
        self.graphics = pg.GraphicsView(background=(20, 20, 20))
        self.graphics.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
        self.viewbox = PromptViewBox()
        self.graphics.setCentralItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.viewbox.addItem(self.image_item)
        self.markers = _Markers(pxMode=True, size=14)
        self.markers.setZValue(10)
        self.viewbox.addItem(self.markers, ignoreBounds=True)
        self.viewbox.clicked.connect(self.on_click)
        self.viewbox.boxed.connect(self.on_box)
        layout.addWidget(self.graphics, 1)
        self.setCentralWidget(central)

        side = QtWidgets.QWidget()
        side_layout = QtWidgets.QVBoxLayout(side)
        side_layout.setContentsMargins(4, 4, 4, 4)
        side_layout.addWidget(QtWidgets.QLabel("Objects"))
        self.object_list = QtWidgets.QListWidget()
        self.object_list.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)  # keys stay with the shortcuts
        self.object_list.itemSelectionChanged.connect(self._on_list_selection)
        side_layout.addWidget(self.object_list, 1)
        side_layout.addWidget(QtWidgets.QLabel("Events"))
        self.event_list = QtWidgets.QListWidget()  # newest first
        self.event_list.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        side_layout.addWidget(self.event_list, 1)
        help_label = QtWidgets.QLabel(HELP)
        help_label.setWordWrap(True)
        side_layout.addWidget(help_label)
        dock = QtWidgets.QDockWidget("Objects", self)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        dock.setTitleBarWidget(QtWidgets.QWidget())
        dock.setWidget(side)
        dock.setMinimumWidth(170)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.statusBar().showMessage("waiting for frames...")

        for keys, slot in ((("N",), self.new_object), (("Escape",), self.deselect),
                           (("Delete", "Backspace"), self.remove_selected), (("R",), self.reset_camera),
                           (("Space",), self.toggle_pause)):
            for key in keys:
                shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self)
                shortcut.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
                shortcut.activated.connect(slot)

    # ------------------------------------------------------------ showing
    @property
    def view(self) -> View | None:
        """The view on screen."""
        return self._view

    def tick(self) -> None:
        """Render timer: take prompt results, then show the newest view (unless paused)."""
        if self.sender is not None:
            for result in self.sender.results():
                self._on_result(result)
        if self.paused:
            return
        view = self.feed.latest_view()
        now = time.monotonic()
        if view is None or (self._view is not None and view.serial == self._view.serial):
            return
        if now - self._last_show < self._min_interval_s * 0.9:
            return
        self._last_show = now
        self._shown_times.append(now)
        self.frames_shown += 1
        self.show_view(view)

    def show_view(self, view: View) -> None:
        self._view = view
        self.image_item.setImage(view.image, autoLevels=False, levels=None)  # uint8 RGB as is: the fast path
        size = (view.width, view.height)
        if size != self._size:  # first frame or a new resolution: fit the whole frame
            self._size = size
            self.viewbox.setRange(xRange=(0, view.width), yRange=(0, view.height), padding=0)
            self.statusBar().showMessage(f"{view.width}x{view.height}")
        self._update_markers()

    def _update_markers(self) -> None:
        now = time.monotonic()
        while self._markers and now - self._markers[0][0] > MARKER_S:
            self._markers.popleft()
        spots = [{"pos": (x, y), "symbol": "+" if pos else "x",
                  "brush": pg.mkBrush((40, 255, 40) if pos else (255, 40, 40)),
                  "pen": pg.mkPen((0, 0, 0), width=1)} for _, x, y, pos in self._markers]
        self.markers.setData(spots)

    def update_hud(self) -> None:
        stats = self.feed.stats()
        serial, ids, scores, areas, states = self.feed.objects()
        if serial != self._objects_serial:
            self._objects_serial = serial
            changed = self.book.set_known(ids)
            self.book.scores.update({i: s for i, s in scores.items() if i in self.book.known})
            self.book.areas.update({i: a for i, a in areas.items() if i in self.book.known})
            self.book.states.update({i: st for i, st in states.items() if i in self.book.known})
            self.refresh_objects(structure=changed)
        self.refresh_events()
        now = time.monotonic()
        shown = [t for t in self._shown_times if now - t <= 2.0]
        fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) >= 2 and shown[-1] > shown[0] else 0.0
        view = self._view
        note = stats.note
        if view is not None and not view.matched and view.frame_index is not None and not note:
            note = "no masks for this frame"
        self.hud.setText(hud_text(HudInfo(
            display_fps=fps, masks_fps=stats.masks_fps, latency_ms=stats.latency_ms, skipped=stats.skipped,
            lost_messages=stats.lost_messages, source=stats.source,
            frame_index=None if view is None else view.frame_index, objects=len(self.book.known),
            paused=self.paused, note=note)))
        if self._markers:
            self._update_markers()

    def hud_text(self) -> str:
        return self.hud.text()

    # ------------------------------------------------------------ objects
    def refresh_objects(self, structure: bool = True) -> None:
        rows = self.book.rows()
        lst = self.object_list
        lst.blockSignals(True)
        try:
            listed = [lst.item(i).data(QtCore.Qt.ItemDataRole.UserRole) for i in range(lst.count())]
            if structure or listed != rows:
                lst.clear()
                for obj_id in rows:
                    item = QtWidgets.QListWidgetItem()
                    item.setData(QtCore.Qt.ItemDataRole.UserRole, obj_id)
                    item.setForeground(QtGui.QBrush(QtGui.QColor(*object_color(obj_id))))
                    lst.addItem(item)
            for i in range(lst.count()):
                item = lst.item(i)
                obj_id = item.data(QtCore.Qt.ItemDataRole.UserRole)
                if obj_id in self.book.known:
                    score = self.book.scores.get(obj_id)
                    state = self.book.states.get(obj_id)
                    text = f"\u25a0 {obj_id}   " + ("" if state is None else f"{state}   ") + \
                           ("" if score is None else f"score {score:+.1f}   ") + f"{self.book.areas.get(obj_id, 0)} px"
                    color = QtGui.QColor(*object_color(obj_id))
                    if state in HIDDEN_STATES:
                        color.setAlpha(110)  # dimmed, as on the picture
                    item.setForeground(QtGui.QBrush(color))
                else:
                    text = f"\u25a1 {obj_id}   new: click or drag"
                item.setText(text)
                item.setSelected(obj_id == self.book.selected)
        finally:
            lst.blockSignals(False)

    def refresh_events(self) -> None:
        """The running event list (newest on top), when the feed has new events."""
        serial, events = self.feed.events()
        if serial == self._events_serial:
            return
        self._events_serial = serial
        self.event_list.clear()
        for ev in reversed(events):
            item = QtWidgets.QListWidgetItem(event_text(ev))
            item.setForeground(QtGui.QBrush(QtGui.QColor(*object_color(ev.obj_id))))
            self.event_list.addItem(item)

    def _on_list_selection(self) -> None:
        items = self.object_list.selectedItems()
        self.select(items[0].data(QtCore.Qt.ItemDataRole.UserRole) if items else None)

    def select(self, obj_id: int | None) -> None:
        self.book.select(obj_id)
        self.feed.set_selected(obj_id)
        if self.paused and self._view is not None:  # the composer no longer feeds the screen
            v = self._view
            self.image_item.setImage(draw_overlay(v.frame, v.objects, self.feed.style, obj_id), autoLevels=False,
                                     levels=None)
        self.refresh_objects(structure=False)

    def new_object(self) -> None:
        obj_id = self.book.new_object()
        self.select(obj_id)
        self.refresh_objects()
        self.statusBar().showMessage(f"new object {obj_id}: left-click it or drag a box around it")

    def deselect(self) -> None:
        self.select(None)
        self.statusBar().showMessage("no object selected: the next click or box starts a new object")

    def remove_selected(self) -> None:
        obj_id = self.book.selected
        if obj_id is None:
            self.statusBar().showMessage("select an object (list or N) before Delete")
            return
        if not self.book.on_segmenter(obj_id):  # never prompted: nothing to remove on the segmenter
            self.book.forget(obj_id)
            self.select(None)
            self.refresh_objects()
            return
        self._send(PromptRequest("remove", self.camera, obj_id))

    def reset_camera(self) -> None:
        self._send(PromptRequest("reset", self.camera))

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.statusBar().showMessage("paused: clicks go to the frame on screen" if self.paused else "live")
        self.update_hud()

    # ------------------------------------------------------------ prompts
    def _target_frame(self) -> tuple[View | None, str]:
        view = self._view
        if view is None:
            return None, "no frame on screen yet"
        if self.sender is None:
            return None, "view only: no control endpoint to send prompts to"
        return view, ""

    def on_click(self, x: float, y: float, positive: bool) -> None:
        view, why = self._target_frame()
        if view is None:
            self.statusBar().showMessage(why)
            return
        if not (0 <= x <= view.width and 0 <= y <= view.height):
            self.statusBar().showMessage(f"click inside the image (got {x:.0f}, {y:.0f} of {view.width}x{view.height})")
            return
        if positive:
            obj_id = self.book.target_positive()
        else:
            target = self.book.target_negative()
            if target is None:
                self.statusBar().showMessage("a right click marks background for the selected object: "
                                             "select one in the list, or left-click an object first")
                return
            obj_id = target
        self.select(obj_id)
        self._markers.append((time.monotonic(), x, y, positive))
        self._update_markers()
        self._send(PromptRequest("add_points", self.camera, obj_id, ((round(x, 1), round(y, 1)),),
                                 (1 if positive else 0,), frame_index=view.frame_index))

    def on_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        view, why = self._target_frame()
        if view is None:
            self.statusBar().showMessage(why)
            return
        x0, x1 = float(np.clip(x0, 0, view.width)), float(np.clip(x1, 0, view.width))
        y0, y1 = float(np.clip(y0, 0, view.height)), float(np.clip(y1, 0, view.height))
        if x1 - x0 < MIN_BOX_PX or y1 - y0 < MIN_BOX_PX:
            self.statusBar().showMessage("box too small: drag across the object")
            return
        obj_id = self.book.target_positive()
        self.select(obj_id)
        self._send(PromptRequest("add_box", self.camera, obj_id,
                                 box=(round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)),
                                 frame_index=view.frame_index))

    def _send(self, request: PromptRequest) -> None:
        if self.sender is None:
            self.statusBar().showMessage("view only: no control endpoint to send prompts to")
            return
        if request.op in ("add_points", "add_box") and request.obj_id is not None:
            self.book.prompted.add(request.obj_id)
        self.sender.send(request)
        self.statusBar().showMessage(f"sent {request.describe()}...")

    def _on_result(self, result: PromptResult) -> None:
        r = result.request
        if result.ok:
            if r.op == "remove" and r.obj_id is not None:
                self.book.forget(r.obj_id)
                self.feed.set_selected(self.book.selected)
            elif r.op == "reset":
                self.book.clear()
                self.feed.set_selected(None)
            if "obj_ids" in result.reply:
                self.book.set_known(result.reply["obj_ids"])
            self.refresh_objects()
        self.statusBar().showMessage(result.describe())

    # ------------------------------------------------------------ closing
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt naming
        self._render_timer.stop()
        self._hud_timer.stop()
        self.feed.stop()
        if self.sender is not None:
            self.sender.stop()
        super().closeEvent(event)
