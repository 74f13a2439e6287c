"""A real Publisher sending the synthetic scene's frames (JPEG topic) with its ground-truth
masks as the segmenter's masks: realistic pictures for screenshots, no model needed."""
from __future__ import annotations

import threading
import time

import numpy as np

from rtseg.pipeline.publisher import Publisher
from rtseg.protocol import FrameMessage, MasksMessage
from rtseg.sources.synthetic import SyntheticScene


class SceneThread(threading.Thread):
    def __init__(self, camera: str = "demo", width: int = 320, height: int = 240, rate_hz: float = 10.0):
        super().__init__(daemon=True)
        self.camera, self.rate_hz = camera, rate_hz
        self.scene = SyntheticScene(width, height, objects=3, seed=1)
        self.ready, self.stopped = threading.Event(), threading.Event()
        self.endpoint = ""

    def run(self) -> None:
        with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
            self.endpoint = pub.endpoint
            self.ready.set()
            i = 0
            while not self.stopped.is_set():
                rgb, gt = self.scene.render(i)
                ids = sorted(gt)
                masks = np.stack([gt[k] for k in ids]) if ids else np.zeros((0, *rgb.shape[:2]), bool)
                boxes = []
                for m in masks:
                    ys, xs = np.nonzero(m)
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if xs.size else [0, 0, 0, 0])
                wall, mono = time.time_ns(), time.monotonic_ns()
                pub.publish(FrameMessage.from_image(self.camera, i, rgb, capture_ns=mono, capture_wall_ns=wall,
                                                    quality=90))
                pub.publish(MasksMessage.from_arrays(self.camera, i, obj_ids=ids, masks=masks,
                                                     scores=[4.0] * len(ids), boxes=np.asarray(boxes).reshape(-1, 4),
                                                     capture_ns=mono, capture_wall_ns=wall, processed_ns=mono))
                i += 1
                time.sleep(1 / self.rate_hz)

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
