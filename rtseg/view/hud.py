"""The viewer's heads-up line: fps, end-to-end latency, skipped frames, source state."""
from __future__ import annotations

import re
from dataclasses import dataclass

_RECONNECTING = re.compile(r"^reconnecting(?: \(attempt (\d+)\))?$")


def describe_source(status: str | None, attempt: int = 0, message: str = "") -> str:
    """A capture status (the ring's, or a status message's `source_state` such as
    "reconnecting (attempt 3)") as words for the operator."""
    if not status:
        return "source state unknown"
    m = _RECONNECTING.match(status)
    if m:
        n = int(m.group(1)) if m.group(1) else attempt
        return f"camera lost, reconnecting (attempt {n})" if n else "camera lost, reconnecting"
    text = {
        "connected": "camera connected",
        "starting": "camera starting",
        "lost": "camera lost",
        "ended": "source ended",
        "stopped": "capture stopped",
        "failed": "camera failed",
        "unknown": "source state unknown",
    }.get(status, f"source {status}")
    if status == "failed" and message:
        text += f": {message}"
    return text


@dataclass(frozen=True)
class HudInfo:
    display_fps: float = 0.0
    masks_fps: float = 0.0
    latency_ms: float | None = None  # capture -> masks received
    skipped: int = 0  # frames the segmenter skipped (since it started)
    lost_messages: int = 0  # messages lost between publisher and this viewer
    source: str = "source state unknown"
    frame_index: int | None = None
    objects: int = 0
    paused: bool = False
    note: str = ""  # what is wrong, if anything (no masks, no frames, ...)


def hud_text(info: HudInfo) -> str:
    parts = ["PAUSED (Space resumes)"] if info.paused else []
    parts.append(f"{info.display_fps:4.1f} fps (masks {info.masks_fps:.1f}/s)")
    parts.append("latency --" if info.latency_ms is None else f"latency {info.latency_ms:.0f} ms")
    parts.append(f"skipped {info.skipped}")
    if info.lost_messages:
        parts.append(f"lost msgs {info.lost_messages}")
    parts.append(info.source)
    parts.append("frame --" if info.frame_index is None else f"frame {info.frame_index}")
    parts.append(f"{info.objects} object{'s' if info.objects != 1 else ''}")
    if info.note:
        parts.append(info.note)
    return "  |  ".join(parts)


def event_text(ev) -> str:
    """One line of the event list for an rtseg.protocol.ObjectEvent: frame, object, what happened."""
    what = {"appeared": "appeared", "occluded": "occluded", "reappeared": "reappeared", "lost": "lost",
            "removed": "removed", "entered_zone": f"entered {ev.zone}", "left_zone": f"left {ev.zone}"}.get(
        ev.event, ev.event)
    after = f" after {ev.duration_s:.1f} s" if ev.event in ("reappeared", "lost") and ev.duration_s else ""
    return f"#{ev.frame_index}  object {ev.obj_id} {what}{after}"
