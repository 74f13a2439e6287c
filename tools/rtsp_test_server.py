#!/usr/bin/python3
"""A real RTSP camera on your machine, for tests and demos (Debian's GStreamer RTSP server).

Serves a moving test pattern (or a video file) as H.264 over RTSP:

    /usr/bin/python3 tools/rtsp_test_server.py --port 8554
    rtseg ... source: rtsp://127.0.0.1:8554/test

It needs PyGObject and the GStreamer RTSP server from Debian, which import under the
system Python only (not inside the venv):

    sudo apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
        gstreamer1.0-libav        # libav only for --file

With --user/--password the server asks for HTTP basic credentials, like a real camera.
Prints one line `READY rtsp://HOST:PORT/PATH` (credentials never printed) on stdout once it
accepts connections, then serves until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
import sys


def _pipeline(args: argparse.Namespace) -> str:
    encode = (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, int(args.fps))} "
        "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if args.file:
        source = (
            f'filesrc location="{args.file}" ! decodebin ! videoconvert ! videoscale '
            f"! video/x-raw,format=I420,width={args.width},height={args.height}"
        )
    else:
        source = (
            f"videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,format=I420,width={args.width},height={args.height},"
            f"framerate={int(args.fps)}/1 ! timeoverlay"
        )
    return f"( {source} ! {encode} )"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8554, help="TCP port (default 8554)")
    p.add_argument("--path", default="/test", help="stream path (default /test)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--pattern", default="ball", help="videotestsrc pattern (default ball)")
    p.add_argument("--file", help="serve this video file instead of the test pattern")
    p.add_argument("--user", help="require basic auth with this user name")
    p.add_argument("--password", help="password for --user")
    args = p.parse_args(argv)
    if bool(args.user) != bool(args.password):
        p.error("give --user and --password together")
    if not args.path.startswith("/"):
        p.error(f"--path must start with '/', got {args.path!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as e:
        print(
            f"error: GStreamer RTSP server not importable under {sys.executable} ({e}); run this "
            "with /usr/bin/python3 and install gir1.2-gst-rtsp-server-1.0 python3-gi",
            file=sys.stderr,
        )
        return 2

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_pipeline(args))
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on {args.host}:{args.port} (port in use?); pick another --port",
              file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://{args.host}:{args.port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
