"""Objects found without a click: detector boxes (`add_boxes`) and SAM 2's "everything" mode.

`match_boxes` decides which boxes of an external detector are new: a box whose IoU with a
tracked object's box (or with a box added earlier in the same request) reaches `match_iou`
is that object; the others become new objects while the camera has room (`max_objects`).

`KeyframeSearch` runs sam2's `SAM2AutomaticMaskGenerator` on the video model's own weights
over one frame in a background thread, so tracking goes on meanwhile; `select_new` keeps the
masks that pass the area filter and overlap no tracked or already chosen object (IoU below
`match_iou`). sam2's image predictor hard-codes the backbone feature sizes of image_size
1024; `feature_sizes` derives them from the model, so any image size works.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rtseg.config import AutoPromptConfig

log = logging.getLogger(__name__)

ADDED, MATCHED, LIMIT = "added", "matched", "limit"


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw, ih = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class BoxDecision:
    status: str  # added / matched / limit
    obj_id: int | None  # the new id, the matched object, or None (limit)
    iou: float  # with the matched object (0 for added / limit)


def match_boxes(boxes: Sequence[Sequence[float]], tracked: dict[int, Sequence[float]], *, match_iou: float,
                only_new: bool, room: int, next_id: int) -> list[BoxDecision]:
    """One decision per box, in order. `tracked`: {obj_id: box} of the camera's objects;
    `room`: how many objects may still be added; new ids count up from `next_id`."""
    known = {i: tuple(b) for i, b in tracked.items() if any(b)}
    out = []
    for box in boxes:
        best_id, best = None, 0.0
        if only_new:
            for obj_id, b in known.items():
                iou = box_iou(box, b)
                if iou > best:
                    best_id, best = obj_id, iou
        if best_id is not None and best >= match_iou:
            out.append(BoxDecision(MATCHED, best_id, round(best, 4)))
        elif room <= 0:
            out.append(BoxDecision(LIMIT, None, 0.0))
        else:
            out.append(BoxDecision(ADDED, next_id, 0.0))
            known[next_id] = tuple(box)
            next_id += 1
            room -= 1
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    if inter == 0:
        return 0.0
    return inter / float(np.count_nonzero(a | b))


def select_new(candidates: list[dict[str, Any]], tracked: Sequence[np.ndarray], cfg: AutoPromptConfig,
               room: int) -> list[np.ndarray]:
    """Masks from the generator (dicts with `segmentation`, `area`, `predicted_iou`,
    `stability_score`) -> at most `room` new object masks, best first, none overlapping a
    tracked mask or another chosen one by IoU >= match_iou."""
    ranked = sorted((c for c in candidates if c["area"] >= max(cfg.min_area_px, 1)),
                    key=lambda c: (c["predicted_iou"] * c["stability_score"], c["area"]), reverse=True)
    taken: list[np.ndarray] = [np.asarray(t, bool) for t in tracked]
    chosen: list[np.ndarray] = []
    for c in ranked:
        if len(chosen) >= room:
            break
        m = np.asarray(c["segmentation"], bool)
        if all(mask_iou(m, t) < cfg.match_iou for t in taken):
            chosen.append(m)
            taken.append(m)
    return chosen


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """Backbone feature map sizes of SAM 2's three levels (strides 4, 8, 16): sam2's image
    predictor has them fixed for 1024 ([(256, 256), (128, 128), (64, 64)])."""
    return [(image_size // s, image_size // s) for s in (4, 8, 16)]


def _not_sam2_chatter(record: logging.LogRecord) -> bool:
    """sam2's image predictor logs three INFO lines on the root logger per image."""
    return not (record.levelno <= logging.INFO and record.pathname.endswith("sam2_image_predictor.py"))


def build_generator(model: Any, cfg: AutoPromptConfig) -> Any:
    """sam2's automatic mask generator on `model` (the video model: same weights)."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    root = logging.getLogger()
    if _not_sam2_chatter not in root.filters:
        root.addFilter(_not_sam2_chatter)
    with warnings.catch_warnings():  # sam2's transforms call torch.jit.script, deprecated in torch 2.9
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        gen = SAM2AutomaticMaskGenerator(model, points_per_side=cfg.points_per_side,
                                         points_per_batch=cfg.points_per_batch, pred_iou_thresh=cfg.pred_iou_thresh,
                                         stability_score_thresh=cfg.stability_score_thresh)
    gen.predictor._bb_feat_sizes = feature_sizes(int(model.image_size))
    return gen


@dataclass(frozen=True)
class KeyframeResult:
    frame_index: int  # capture index of the keyframe
    candidates: list[dict[str, Any]]
    tracked: list[np.ndarray]  # the tracked objects' masks on the keyframe
    seconds: float  # how long the generator ran


class KeyframeSearch:
    """Runs the automatic mask generator on a keyframe in a background (daemon) thread; the
    segmenter thread submits frames (`due`, `submit`) and collects results (`poll`). A search
    still running at shutdown does not hold the process up."""

    def __init__(self, model: Any, cfg: AutoPromptConfig, name: str = "") -> None:
        self.cfg = cfg
        self.model = model
        self.name = name
        self._generator: Any = None
        self._thread: threading.Thread | None = None
        self._outcome: KeyframeResult | BaseException | None = None
        self._last_start: float | None = None
        self.runs = 0

    def due(self, now: float) -> bool:
        """No search running, and none yet or the last started `interval_s` ago."""
        return self._thread is None and (self._last_start is None or now - self._last_start >= self.cfg.interval_s)

    def submit(self, frame_index: int, image: np.ndarray, tracked: Sequence[np.ndarray], now: float) -> None:
        import torch  # noqa: F401 - imported here, not in the search thread

        if self._generator is None:  # built here, in the caller's thread (warnings filters are global)
            self._generator = build_generator(self.model, self.cfg)
        self._last_start = now
        self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(frame_index, image, [np.asarray(t, bool) for t in tracked]),
                                        name=f"keyframe-{self.name}", daemon=True)
        self._thread.start()

    def poll(self) -> KeyframeResult | None:
        """The finished search, once (None while running or idle); raises what a failed one raised."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread, outcome, self._outcome = None, self._outcome, None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _run(self, frame_index: int, image: np.ndarray, tracked: list[np.ndarray]) -> None:
        import torch  # already imported by submit(): an import in a thread could stall on the import lock

        t0 = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.inference_mode())
                if self.model.device.type == "cuda":
                    stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
                candidates = self._generator.generate(image)
            self.runs += 1
            self._outcome = KeyframeResult(frame_index, candidates, tracked, time.perf_counter() - t0)
        except BaseException as e:  # handed to the segmenter thread by poll()
            self._outcome = e

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the running search (if any) is done (tests, benchmarks)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        """Forget a running search (its daemon thread ends with the process)."""
        self._thread = None
