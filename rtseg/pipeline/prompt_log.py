"""The prompt log: every applied prompt, persisted, so a restarted segmenter re-creates its objects.

One JSON object per line, appended and fsync'd before the prompt's reply is sent:
`{"camera", "op": "add"|"remove"|"reset", "obj_id", "kind", "points", "labels", "box", "mask",
"t_wall_ns"}` (mask as COCO RLE). A torn last line (power cut mid-write) is ignored on load.
`remove` and `reset` rewrite the file without the dropped entries (atomically), so the log
stays as small as the set of live objects and their prompts.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedPrompt:
    camera: str
    obj_id: int
    kind: str  # points | box | mask
    payload: dict[str, Any]  # points/labels, box, or mask (COCO RLE)
    t_wall_ns: int


class PromptLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries = self._load()

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries: list[dict[str, Any]] = []
        with self.path.open("r", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("prompt log %s: ignoring unreadable line %d (torn write?)", self.path, n)
                    continue
                entries.append(entry)
        return self._replay(entries)

    @staticmethod
    def _replay(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop what later removes/resets undid; keep 'add' entries only."""
        live: list[dict[str, Any]] = []
        for e in entries:
            op = e.get("op")
            if op == "add":
                live.append(e)
            elif op == "remove":
                live = [x for x in live if not (x["camera"] == e["camera"] and x["obj_id"] == e["obj_id"])]
            elif op == "reset":
                live = [x for x in live if x["camera"] != e["camera"]]
        return live

    def _append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for e in self._entries:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def add(self, camera: str, obj_id: int, kind: str, payload: dict[str, Any]) -> None:
        entry = {"camera": camera, "op": "add", "obj_id": int(obj_id), "kind": kind,
                 "t_wall_ns": time.time_ns(), **payload}
        self._append(entry)
        self._entries.append(entry)

    def remove(self, camera: str, obj_id: int) -> None:
        self._entries = [e for e in self._entries if not (e["camera"] == camera and e["obj_id"] == obj_id)]
        self._rewrite()

    def reset(self, camera: str) -> None:
        self._entries = [e for e in self._entries if e["camera"] != camera]
        self._rewrite()

    def latest_prompts(self, camera: str) -> list[LoggedPrompt]:
        """Per live object of `camera`, its most recent prompt (where the user last said it is),
        in the order the objects were first created."""
        latest: dict[int, dict[str, Any]] = {}
        for e in self._entries:
            if e["camera"] == camera:
                latest[e["obj_id"]] = e  # dict keeps first-insertion order, value = newest
        keys = ("points", "labels", "box", "mask")
        return [
            LoggedPrompt(camera, obj_id, e["kind"], {k: e[k] for k in keys if k in e}, e["t_wall_ns"])
            for obj_id, e in latest.items()
        ]
