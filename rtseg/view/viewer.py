"""The live viewer (`rtseg view`, rtseg.commands.view) and the viewer process `rtseg run` starts (`viewer_main`).

Same host: frames from the camera's shared-memory ring (`--ring NAME`, or `--ring auto` with
`--config` to find the running pipeline's ring). Any host: frames from the JPEG topic
`frame.<camera>` (the segmenter's `network.frame_topic.enabled`). Masks, status and prompt
events come from the publisher either way; prompts go to the control socket.

Reacts to: masks.<camera>, status, prompt.<camera>, event.<camera>, frame.<camera> (without a ring).
Zones (cameras[].zones) come from the config (`rtseg run`, `--config`), else from the
segmenter's `list` reply.
Emits: add_points / add_box / remove / reset requests on the control socket.
The pieces live in rtseg/view/ (overlay, feed, window, ...).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rtseg.config import Config, ConfigError, load_config
from rtseg.proc import EXIT_FATAL, EXIT_OK, ring_name_for, setup_child_logging, stop_on_sigterm
from rtseg.protocol import DEFAULT_CONTROL, DEFAULT_PUB

log = logging.getLogger("rtseg.viewer")



class ViewerError(ValueError):
    """The viewer cannot start; the message says which value is wrong and what to do."""


@dataclass(frozen=True)
class ViewerOptions:
    camera: str
    pub: str
    control: str | None  # None: view only
    ring: str | None = None  # None: frames from the JPEG topic
    frame_buffer: int = 30
    fps: float = 30.0
    mask_alpha: float = 0.45
    curve: Any = None  # rtseg.security.CurveClient
    cluster: bool = False  # pub and control are the directory of `rtseg cluster` (--cluster)
    zones: tuple[tuple[str, tuple], ...] = ()  # (name, polygon) drawn over the picture (from the config)


def connectable(endpoint: str) -> str:
    """A bind address as something to connect to: tcp://*:5555 or tcp://0.0.0.0:5555 ->
    tcp://127.0.0.1:5555 (the viewer of `rtseg run` runs on the segmenter's host)."""
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    return endpoint


def config_and_publisher(config_path: str | None, pub_option: str | None) -> tuple[Config | None, str]:
    """A feed's config (None without one) and the publisher it reads: the option, else the
    config's network.pub (as something to connect to), else the default. Raises ViewerError
    for an invalid config. The viewer and the bridges resolve their feed here."""
    cfg = None
    if config_path:
        try:
            cfg = load_config(config_path)
        except ConfigError as e:
            raise ViewerError(f"invalid config:\n{e}") from None
    return cfg, pub_option or (connectable(cfg.network.pub) if cfg else DEFAULT_PUB)


def _curve_client(client_key: Path | None, server_key: Path | None, curve_required: bool) -> Any:
    if client_key is None and server_key is None and curve_required:
        raise ViewerError("security.curve is on: give the viewer a client key pair and the server's public key "
                          "(viewer.client_key / viewer.server_key, or --client-key / --server-key; "
                          "create them with `rtseg keys`)")
    from rtseg.security import CurveClient, CurveKeyError

    try:
        return CurveClient.from_options(client_key, server_key)
    except (CurveKeyError, OSError) as e:
        raise ViewerError(f"cannot load CURVE keys: {e}") from None


def _camera_of(cfg: Config, camera: str | None) -> str:
    ids = [c.id for c in cfg.cameras]
    camera = camera or cfg.viewer.camera or ids[0]
    if camera not in ids:
        raise ViewerError(f"camera {camera!r} is not in the config; cameras: {ids}")
    return camera


def zones_of(cfg: Config, camera: str) -> tuple[tuple[str, tuple], ...]:
    cam = next(c for c in cfg.cameras if c.id == camera)
    return tuple((z.name, tuple(z.polygon)) for z in cam.zones)


def options_from_config(cfg: Config, ring_names: dict[str, str]) -> ViewerOptions:
    """The viewer of `rtseg run`: same host, frames from the ring of viewer.camera."""
    camera = _camera_of(cfg, None)
    v = cfg.viewer
    return ViewerOptions(camera=camera, pub=connectable(cfg.network.pub), control=connectable(cfg.network.control),
                         ring=ring_names.get(camera), frame_buffer=v.frame_buffer, fps=v.fps,
                         mask_alpha=v.mask_alpha, curve=_pipeline_curve(cfg), zones=zones_of(cfg, camera))


def _pipeline_curve(cfg: Config) -> Any:
    """The viewer's own keys if given, else the pipeline's client identity (security.client_secret_key)."""
    v, sec = cfg.viewer, cfg.security
    if v.client_key is None and v.server_key is None and sec.curve and sec.client_secret_key is not None:
        return _curve_client(sec.client_secret_key, sec.server_secret_key, True)
    return _curve_client(v.client_key, v.server_key, sec.curve)


def running_ring(cfg: Config, camera: str) -> str:
    """The ring of `camera` in the pipeline `rtseg run` started with this config (it writes
    its run id to supervisor.state_dir/processes.json)."""
    from rtseg.ring import ring_segments

    path = Path(cfg.supervisor.state_dir) / "processes.json"
    try:
        run_id = json.loads(path.read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ViewerError(f"--ring auto: no running pipeline found ({path} is missing or unreadable): start "
                          "`rtseg run` with this config on this host, or give --ring NAME") from None
    name = ring_name_for(run_id, camera)
    if not ring_segments(name):
        raise ViewerError(f"--ring auto: ring {name!r} of camera {camera!r} (run {run_id}, from {path}) is not in "
                          "shared memory: is that pipeline still running on this host?")
    return name


def options_from_args(args: argparse.Namespace) -> ViewerOptions:
    cluster = getattr(args, "cluster", None)
    cfg, pub = config_and_publisher(args.config, cluster or args.pub)
    control = None if args.view_only else (cluster or args.control or (
        connectable(cfg.network.control) if cfg else DEFAULT_CONTROL))
    if cluster and not (args.camera or cfg):
        raise ViewerError("--cluster needs --camera (see `rtseg cluster status`)")
    v = cfg.viewer if cfg else None
    curve = _curve_client(args.client_key or (v.client_key if v else None),
                          args.server_key or (v.server_key if v else None), bool(cfg and cfg.security.curve))
    if cfg is not None:
        camera = _camera_of(cfg, args.camera)
    elif args.camera:
        camera = args.camera
    else:
        camera = _ask_camera(control, curve)
    ring = args.ring
    if ring == "auto":
        if cfg is None:
            raise ViewerError("--ring auto needs --config (it finds the pipeline that config runs)")
        ring = running_ring(cfg, camera)
    elif ring:
        from rtseg.ring import RingError, ring_segments
        from rtseg.ring.layout import header_segment

        try:
            header_segment(ring)
        except RingError as e:
            raise ViewerError(str(e)) from None
        if not ring_segments(ring):
            raise ViewerError(f"no ring {ring!r} in shared memory: is the capture running on this host? (`rtseg "
                              "run` names rings RUNID-CAMERA; --ring auto --config CONFIG finds it)")
    frame_buffer = args.frame_buffer or (v.frame_buffer if v else 30)
    if frame_buffer < 1:
        raise ViewerError(f"--frame-buffer must be at least 1, got {frame_buffer}")
    fps = args.fps or (v.fps if v else 30.0)
    if fps <= 0:
        raise ViewerError(f"--fps must be positive, got {fps}")
    zones = zones_of(cfg, camera) if cfg is not None else _ask_zones(None if cluster else control, camera, curve)
    return ViewerOptions(camera=camera, pub=pub, control=control, ring=ring, frame_buffer=frame_buffer, fps=fps,
                         mask_alpha=v.mask_alpha if v else 0.45, curve=curve, zones=zones,
                         cluster=bool(cluster))


def _ask_zones(control: str | None, camera: str, curve: Any) -> tuple[tuple[str, tuple], ...]:
    """Without a config: the camera's zones from the segmenter's `list` reply (none if it does
    not answer within a second: the viewer then draws no zones)."""
    if control is None:
        return ()
    from rtseg.client import ControlError, ControlTimeout, Controller

    try:
        with Controller(control, timeout=1.0, curve=curve) as ctl:
            listed = ctl.list(camera).get("cameras", {}).get(camera, {})
    except (ControlError, ControlTimeout) as e:
        log.info("no zones from %s (%s): none drawn", control, e)
        return ()
    return tuple((z["name"], tuple(tuple(p) for p in z["polygon"])) for z in listed.get("zones", ()))


def _ask_camera(control: str | None, curve: Any) -> str:
    """With neither --camera nor --config: the segmenter's only camera, if it has one."""
    if control is None:
        raise ViewerError("--view-only needs --camera (or --config)")
    from rtseg.client import Controller, ControlError, ControlTimeout

    try:
        with Controller(control, timeout=3.0, curve=curve) as ctl:
            cameras = sorted(ctl.list()["cameras"])
    except (ControlError, ControlTimeout) as e:
        raise ViewerError(f"cannot ask {control} for its cameras ({e}); give --camera") from None
    if len(cameras) != 1:
        raise ViewerError(f"the segmenter at {control} has cameras {cameras}: choose one with --camera")
    return cameras[0]


def display_available() -> bool:
    """False on a Linux box without a display, where Qt would abort the process."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def build_viewer(options: ViewerOptions, context: Any = None) -> Any:
    """A ViewerWindow with its feed and prompt sender started (a QApplication must exist)."""
    from rtseg.view.feed import Feed
    from rtseg.view.overlay import OverlayStyle
    from rtseg.view.prompts import PromptSender
    from rtseg.view.qtfix import guard_bool_refcounts
    from rtseg.view.window import ViewerWindow

    guard_bool_refcounts()  # PySide6 6.12.0 + Python 3.11 would abort after a few thousand signals
    feed = Feed(options.camera, options.pub, ring=options.ring, frame_buffer=options.frame_buffer,
                style=OverlayStyle(alpha=options.mask_alpha), curve=options.curve, context=context,
                zones=options.zones, cluster=options.cluster).start()
    sender = None
    if options.control:
        sender = PromptSender(options.control, curve=options.curve, context=context, cluster=options.cluster).start()
    label = f"ring {options.ring}" if options.ring else f"JPEG frames from {options.pub}"
    return ViewerWindow(feed, sender, options.camera, fps=options.fps, source_label=label)


def release_qt() -> None:
    """Close and delete every window, then the QApplication, while Python is still whole:
    left to the interpreter's final garbage collection, PySide6 objects can crash the
    process on exit ("Fatal Python error: bool_dealloc"). Call once, at the very end."""
    import gc

    from pyqtgraph.Qt import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        return
    for widget in app.topLevelWidgets():
        widget.close()
        widget.deleteLater()
    app.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    app.processEvents()
    gc.collect()
    app.shutdown()


def run_viewer(options: ViewerOptions, *, should_stop: Callable[[], bool] | None = None,
               heartbeat: Any = None) -> int:
    """Show the window until it is closed (exit 0) or `should_stop()` says so (asked 20 times
    a second: a signal handler runs only between Python calls, so this also bounds how long
    Ctrl-C or SIGTERM waits); beat `heartbeat` (a multiprocessing Value 'd') with time.time() meanwhile."""
    from pyqtgraph.Qt import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0], "-name", "rtseg"])
    window = build_viewer(options)
    window.resize(1280, 800)
    window.show()
    log.info("viewer: camera %s, masks from %s, %s, prompts to %s", options.camera, options.pub,
             f"frames from ring {options.ring}" if options.ring else "JPEG frames from the publisher",
             options.control or "nowhere (view only)")

    def beat() -> None:
        if heartbeat is not None:
            heartbeat.value = time.time()
        if should_stop is not None and should_stop():
            window.close()

    beat()
    timer = QtCore.QTimer()
    timer.timeout.connect(beat)
    timer.start(50)
    app.exec()
    timer.stop()
    return EXIT_OK


def viewer_main(cfg: Config, ring_names: dict[str, str], stop_event: Any, heartbeat: Any, log_endpoint: str | None) -> None:
    """Entry point of the viewer process of `rtseg run`: beats `heartbeat` (time.time(),
    20 times a second), closes when `stop_event` is set, exits 0 when the window closes
    (the supervisor then stops the pipeline) and 2 when it cannot start."""
    setup_child_logging(log_endpoint, cfg.log_level)
    terminated = threading.Event()
    stop_on_sigterm(terminated.set)
    try:
        options = options_from_config(cfg, ring_names)
    except ViewerError as e:
        log.error("viewer cannot start: %s", e)
        raise SystemExit(EXIT_FATAL) from None
    if not display_available():
        log.error("viewer cannot start: no display (DISPLAY / WAYLAND_DISPLAY unset); run `rtseg run --headless` "
                  "and `rtseg view` where there is a screen, or set viewer.enabled: false")
        raise SystemExit(EXIT_FATAL)
    code = run_viewer(options, should_stop=lambda: terminated.is_set() or stop_event.is_set(), heartbeat=heartbeat)
    release_qt()
    log.info("viewer closed")
    raise SystemExit(code)
