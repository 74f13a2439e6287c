"""The lifecycle state machine on scripted object-score sequences (no model)."""
from __future__ import annotations

from rtseg.config import LifecycleConfig
from rtseg.pipeline.lifecycle import LifecycleTracker

FPS = 10
BOX = (10.0, 20.0, 30.0, 40.0)


def run(scores, cfg=LifecycleConfig(occluded_after_frames=3, visible_after_frames=2, lost_after_s=1.0,
                                    reacquired_frames=5), obj_id=7):
    """Feed one object's scores at 10 fps; returns (events [(frame, event, state)], states per frame)."""
    tracker = LifecycleTracker(cfg)
    events, states = [], []
    for i, s in enumerate(scores):
        box = BOX if s > 0 else (0.0, 0.0, 0.0, 0.0)
        for t in tracker.update(i, i * 10**9 // FPS, [obj_id], [s], [box]):
            events.append((i, t.event, t.state))
        states.append(tracker.state(obj_id))
    return tracker, events, states


def test_a_new_object_appears_and_tracks():
    _, events, states = run([5.0] * 4)
    assert events == [(0, "appeared", "tracking")]
    assert states == ["tracking"] * 4


def test_flapping_single_frames_change_nothing():
    # one or two hidden frames in a row never reach occluded_after_frames=3
    _, events, states = run([5, -1, 5, -1, -1, 5, 5, -2, 5, -1, -1, 5])
    assert events == [(0, "appeared", "tracking")]
    assert set(states) == {"tracking"}


def test_short_occlusion_then_reappearance_with_hysteresis():
    tracker, events, states = run([5, 5, -1, -1, -1, -1, 5, -1, 5, 5, 5, 5, 5, 5, 5, 5])
    # occluded on the 3rd hidden frame (frame 4); one visible frame (6) is not enough, two (8, 9) are
    assert events == [(0, "appeared", "tracking"), (4, "occluded", "occluded"), (9, "reappeared", "reacquired")]
    assert states[4:9] == ["occluded"] * 5
    assert states[9:14] == ["reacquired"] * 5 and states[14] == "tracking"  # reacquired_frames=5


def test_long_occlusion_becomes_lost_then_reappears():
    scores = [5] * 2 + [-3] * 20 + [4] * 3
    tracker, events, states = run(scores)
    kinds = [(f, e) for f, e, _ in events]
    # hidden from frame 2; occluded at frame 4 but counted from frame 2; lost when > 1 s has passed (frame 13)
    assert kinds == [(0, "appeared"), (4, "occluded"), (13, "lost"), (23, "reappeared")]
    assert states[12] == "occluded" and states[13] == "lost" and states[22] == "lost"
    assert states[23] == "reacquired"


def test_events_carry_times_durations_and_the_last_visible_box():
    tracker = LifecycleTracker(LifecycleConfig(occluded_after_frames=2, visible_after_frames=1, lost_after_s=10))
    out = []
    for i, s in enumerate([3, 3, -1, -1, -1, 2]):
        out += tracker.update(100 + i, i * 10**8, [1], [s], [BOX if s > 0 else (0, 0, 0, 0)])
    occluded, back = out[1], out[2]
    assert (occluded.event, occluded.frame_index, occluded.box, occluded.previous) == ("occluded", 103, BOX, "tracking")
    assert back.event == "reappeared" and back.previous == "occluded"
    assert abs(back.duration_s - 0.3) < 1e-9  # hidden from frame 2 (0.2 s) to frame 5 (0.5 s)


def test_auto_removal_after_lost_is_off_by_default_and_works_when_set():
    scores = [5] + [-1] * 40
    tracker, events, _ = run(scores)
    assert tracker.expired(40 * 10**8) == []  # remove_after_s: None
    cfg = LifecycleConfig(occluded_after_frames=3, visible_after_frames=2, lost_after_s=1.0, remove_after_s=1.5)
    tracker, events, states = run(scores, cfg)
    assert states[-1] == "lost"
    lost_at = next(f for f, e, _ in events if e == "lost")
    assert tracker.expired((lost_at + 15) * 10**8) == []
    assert tracker.expired((lost_at + 16) * 10**8) == [7]
    gone = tracker.remove(7, 41, (lost_at + 16) * 10**8)
    assert (gone.event, gone.previous, gone.state) == ("removed", "lost", "removed")
    assert tracker.state(7) is None


def test_an_object_missing_from_the_engine_result_is_removed():
    tracker = LifecycleTracker()
    tracker.update(0, 0, [1, 2], [1.0, 1.0], [BOX, BOX])
    out = tracker.update(1, 10**8, [2], [1.0], [BOX])
    assert [(t.event, t.obj_id) for t in out] == [("removed", 1)]
    assert tracker.states([2]) == ["tracking"]
