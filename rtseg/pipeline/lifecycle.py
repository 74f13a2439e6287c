"""What each tracked object is doing, from SAM 2's object score, frame by frame (pure Python).

States: `tracking` (visible), `occluded` (not visible for `occluded_after_frames` frames in a
row), `lost` (occluded for longer than `lost_after_s`), `reacquired` (visible again for
`visible_after_frames` frames in a row after occluded or lost; back to `tracking` after
`reacquired_frames` frames), `removed` (by a request, a reset, or auto-removal after
`remove_after_s` lost). Visible means an object score above `score_threshold`. Requiring
several frames in a row before a change is the hysteresis: one noisy frame changes nothing.

Transitions come out as `Transition`s (`appeared`, `occluded`, `reappeared`, `lost`,
`removed`), which the segmenter publishes on `event.<camera>`. Times are the frames' capture
times, so a paused or slow pipeline measures the scene, not the wall clock of processing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rtseg.config import LifecycleConfig

TRACKING, OCCLUDED, LOST, REACQUIRED, REMOVED = "tracking", "occluded", "lost", "reacquired", "removed"
STATES = (TRACKING, OCCLUDED, LOST, REACQUIRED, REMOVED)
APPEARED, REAPPEARED = "appeared", "reappeared"
EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Transition:
    """One state change of one object: `event` is appeared/occluded/reappeared/lost/removed.
    `box` is the object's box now, or its last visible box when it is not visible;
    `duration_s` how long it was in `previous` (None for appeared). Zone events
    (rtseg/pipeline/zones.py) use the same shape with `zone` set."""

    event: str
    obj_id: int
    state: str
    previous: str | None
    frame_index: int
    t_ns: int
    duration_s: float | None
    box: tuple[float, float, float, float]
    score: float
    zone: str | None = None  # entered_zone / left_zone: the zone's name


@dataclass
class _Object:
    state: str
    since_ns: int  # when the current state began
    visible_run: int = 0  # frames in a row visible
    hidden_run: int = 0  # frames in a row not visible
    hidden_since_ns: int = 0  # capture time of the first frame of the current hidden run
    state_frames: int = 0  # frames spent in the current state
    last_box: tuple[float, float, float, float] = EMPTY_BOX
    score: float = 0.0


@dataclass
class LifecycleTracker:
    """Feed it every processed frame (`update`) and every removal (`remove`); read `states`."""

    cfg: LifecycleConfig = field(default_factory=LifecycleConfig)
    objects: dict[int, _Object] = field(default_factory=dict)

    def state(self, obj_id: int) -> str | None:
        obj = self.objects.get(obj_id)
        return None if obj is None else obj.state

    def last_box(self, obj_id: int) -> tuple[float, float, float, float]:
        obj = self.objects.get(obj_id)
        return EMPTY_BOX if obj is None else obj.last_box

    def update(self, frame_index: int, t_ns: int, obj_ids: Sequence[int], scores: Sequence[float],
               boxes: Sequence[Sequence[float]]) -> list[Transition]:
        """One processed frame: every object the engine tracks, its object score and box.
        Objects the tracker has not seen appear; objects missing from `obj_ids` are removed."""
        out: list[Transition] = []
        present = set()
        for obj_id, score, box in zip(obj_ids, scores, boxes, strict=True):
            obj_id, score, box = int(obj_id), float(score), tuple(float(v) for v in box)
            present.add(obj_id)
            obj = self.objects.get(obj_id)
            if obj is None:
                obj = self.objects[obj_id] = _Object(TRACKING, t_ns)
                out.append(Transition(APPEARED, obj_id, TRACKING, None, frame_index, t_ns, None, box, score))
            change = self._step(obj, obj_id, score, box, frame_index, t_ns)  # type: ignore[arg-type]
            if change is not None:
                out.append(change)
        for gone in [i for i in self.objects if i not in present]:
            out.append(self.remove(gone, frame_index, t_ns))
        return out

    def _step(self, obj: _Object, obj_id: int, score: float, box: tuple, frame_index: int,
              t_ns: int) -> Transition | None:
        cfg = self.cfg
        obj.score = score
        obj.state_frames += 1
        if score > cfg.score_threshold:
            obj.visible_run += 1
            obj.hidden_run = 0
            if any(box):
                obj.last_box = box  # type: ignore[assignment]
        else:
            if obj.hidden_run == 0:
                obj.hidden_since_ns = t_ns
            obj.hidden_run += 1
            obj.visible_run = 0
        if obj.state in (TRACKING, REACQUIRED) and obj.hidden_run >= cfg.occluded_after_frames:
            # occluded since the first hidden frame of the run (the hysteresis only delays saying so)
            return self._move(obj, obj_id, OCCLUDED, OCCLUDED, frame_index, t_ns, since_ns=obj.hidden_since_ns)
        if obj.state in (OCCLUDED, LOST) and obj.visible_run >= cfg.visible_after_frames:
            return self._move(obj, obj_id, REACQUIRED, REAPPEARED, frame_index, t_ns)
        if obj.state == OCCLUDED and t_ns - obj.since_ns > cfg.lost_after_s * 1e9:
            return self._move(obj, obj_id, LOST, LOST, frame_index, t_ns)
        if obj.state == REACQUIRED and obj.state_frames >= cfg.reacquired_frames:
            obj.state, obj.since_ns, obj.state_frames = TRACKING, t_ns, 0  # quiet: not an event
        return None

    def _move(self, obj: _Object, obj_id: int, state: str, event: str, frame_index: int, t_ns: int,
              since_ns: int | None = None) -> Transition:
        previous, duration = obj.state, (t_ns - obj.since_ns) / 1e9
        obj.state, obj.since_ns, obj.state_frames = state, t_ns if since_ns is None else since_ns, 0
        return Transition(event, obj_id, state, previous, frame_index, t_ns, max(duration, 0.0), obj.last_box,
                          obj.score)

    def expired(self, t_ns: int) -> list[int]:
        """Objects lost for longer than `remove_after_s` (none when auto-removal is off)."""
        if self.cfg.remove_after_s is None:
            return []
        limit = self.cfg.remove_after_s * 1e9
        return [i for i, o in self.objects.items() if o.state == LOST and t_ns - o.since_ns > limit]

    def remove(self, obj_id: int, frame_index: int, t_ns: int) -> Transition:
        """The object is gone (removed by request, reset, or expired)."""
        obj = self.objects.pop(obj_id)
        return Transition(REMOVED, obj_id, REMOVED, obj.state, frame_index, t_ns,
                          max((t_ns - obj.since_ns) / 1e9, 0.0), obj.last_box, obj.score)

    def states(self, obj_ids: Sequence[int]) -> list[str]:
        return [self.objects[int(i)].state if int(i) in self.objects else TRACKING for i in obj_ids]
