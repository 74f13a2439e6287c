"""Which object a click goes to, and what the viewer knows about each object (pure Python).

Ids come from the segmenter (masks, prompt events, control replies). A new object gets the
next free id: one above every id seen so far (never reusing the id of a removed object,
whose old masks may still be in flight).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class ObjectBook:
    known: set[int] = field(default_factory=set)  # ids the segmenter tracks now
    scores: dict[int, float] = field(default_factory=dict)  # newest object score per id
    areas: dict[int, int] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)  # lifecycle state per id (segmenter's)
    selected: int | None = None  # where the next click goes; None: a new object
    prompted: set[int] = field(default_factory=set)  # ids this viewer sent prompts for
    _highest: int = 0  # highest id ever seen or handed out

    def next_id(self) -> int:
        return max(self._highest, max(self.known, default=0)) + 1

    def new_object(self) -> int:
        """Hand out a fresh id and select it (key N); it is known once the segmenter says so."""
        obj_id = self.next_id()
        self._highest = obj_id
        self.selected = obj_id
        return obj_id

    def target_positive(self) -> int:
        """The object a left click or a box goes to: the selected one, else a new one."""
        return self.selected if self.selected is not None else self.new_object()

    def target_negative(self) -> int | None:
        """The object a right click (background point) goes to: only the selected one."""
        return self.selected

    def select(self, obj_id: int | None) -> None:
        self.selected = obj_id
        if obj_id is not None:
            self._highest = max(self._highest, obj_id)

    def set_known(self, obj_ids: Iterable[int]) -> bool:
        """The segmenter's current ids (a reply or prompt event). True if the set changed."""
        ids = {int(i) for i in obj_ids}
        changed = ids != self.known
        self.known = ids
        self._highest = max(self._highest, max(ids, default=0))
        for gone in (set(self.scores) | set(self.states)) - ids:
            self.scores.pop(gone, None)
            self.areas.pop(gone, None)
            self.states.pop(gone, None)
        return changed

    def update_from_masks(self, obj_ids: Iterable[int], scores: Iterable[float], areas: Iterable[int]) -> bool:
        """The objects of the newest masks message. True if the set of ids changed."""
        obj_ids = [int(i) for i in obj_ids]
        changed = self.set_known(obj_ids)
        self.scores.update(zip(obj_ids, (float(s) for s in scores)))
        self.areas.update(zip(obj_ids, (int(a) for a in areas)))
        return changed

    def on_segmenter(self, obj_id: int) -> bool:
        """Whether the segmenter has (or is about to have) this object: known, or prompted
        by this viewer with the reply still on its way."""
        return obj_id in self.known or obj_id in self.prompted

    def forget(self, obj_id: int) -> None:
        """An object was removed: deselect it."""
        self.known.discard(obj_id)
        self.prompted.discard(obj_id)
        self.scores.pop(obj_id, None)
        self.areas.pop(obj_id, None)
        self.states.pop(obj_id, None)
        if self.selected == obj_id:
            self.selected = None

    def clear(self) -> None:
        """The camera was reset."""
        self.known.clear()
        self.prompted.clear()
        self.scores.clear()
        self.areas.clear()
        self.states.clear()
        self.selected = None

    def rows(self) -> list[int]:
        """Ids to list: the known ones plus a selected new one the segmenter has not seen yet."""
        ids = set(self.known)
        if self.selected is not None:
            ids.add(self.selected)
        return sorted(ids)
