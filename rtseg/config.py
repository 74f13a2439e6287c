"""rtseg configuration: pydantic v2 models loaded from YAML.

Every section forbids unknown keys, so a typo is an error that names the key and its line
(`rtseg validate-config CONFIG`). sam2's own Hydra config stays inside sam2: `model.name`
is passed through to it.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rtseg.protocol import DEFAULT_CONTROL, DEFAULT_PUB


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(StrictModel):
    """Which SAM 2 to run, and where."""

    name: str = "sam2.1_hiera_t"
    checkpoint: Path | None = None  # None: checkpoints/<official file name for `name`>
    weights: Literal["checkpoint", "random"] = "checkpoint"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")  # auto | cpu | cuda | cuda:N
    image_size: int | None = Field(default=None, ge=64, multiple_of=16)
    max_corrections: int = Field(default=8, ge=0)

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from rtseg.engine.models import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; choose one of {sorted(MODELS)}")
        return v


class EngineConfig(StrictModel):
    """How the engine computes (README: "Device and precision", "Hole filling") and runs its
    per-frame step (README: "The streaming engine")."""

    # auto: bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 on 7.x, else fp32; fp32 on the CPU
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    fill_holes: bool = True  # fill mask holes <= 8 low-res px as sam2 does; off: masks differ from sam2's
    # compile the per-frame step: off | default (torch.compile) | graphs (CUDA graphs; on the CPU
    # the same as default). Compiling takes minutes at the first frame and after a capacity grows.
    compile: Literal["off", "default", "graphs"] = "off"
    object_capacity: int = Field(default=4, ge=1)  # objects per camera before its memory doubles
    prompt_capacity: int = Field(default=1, ge=1)  # prompted frames per object before they double
    # objects per batch of the step; None (auto): all of a camera's objects in one batch on a GPU,
    # one at a time on the CPU, where batching measured slower (README "Measured (CPU)")
    object_chunk: int | None = Field(default=None, ge=1)


class ReconnectConfig(StrictModel):
    """Exponential backoff for a lost camera: initial_s, then *factor, capped at max_s. Between
    attempts a network camera is probed every probe_s (a TCP connect, nothing decoded): the
    moment it answers again it is reopened and the backoff starts over, so a camera is back
    within about probe_s + its open time whatever the outage length. None: backoff only."""

    initial_s: float = Field(default=0.5, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=10.0, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)  # None: retry forever
    probe_s: float | None = Field(default=1.0, gt=0)


class LifecycleConfig(StrictModel):
    """When an object counts as occluded, lost, back or gone (rtseg/pipeline/lifecycle.py).

    Visible means SAM 2's object score is above `score_threshold`. Counting frames in a row
    is the hysteresis: one noisy frame does not flap the state."""

    score_threshold: float = 0.0
    occluded_after_frames: int = Field(default=3, ge=1)  # not visible this many frames in a row -> occluded
    visible_after_frames: int = Field(default=2, ge=1)  # visible this many in a row -> reacquired
    reacquired_frames: int = Field(default=15, ge=1)  # reacquired shows this long, then tracking again
    lost_after_s: float = Field(default=5.0, gt=0)  # occluded longer than this -> lost
    remove_after_s: float | None = Field(default=None, gt=0)  # lost longer than this -> removed; None: never


class ZoneConfig(StrictModel):
    """A named polygon in source pixels; an object is inside when at least `min_overlap` of its
    mask area is."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    polygon: list[tuple[float, float]] = Field(min_length=3)
    min_overlap: float = Field(default=0.5, gt=0, le=1)
    frames: int = Field(default=2, ge=1)  # inside (or outside) this many frames in a row to enter (leave)

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in v:
            if x < 0 or y < 0:
                raise ValueError(f"polygon point {[x, y]} has a negative coordinate: points are source pixels")
        crossing = self_intersection(v)
        if crossing is not None:
            i, j = crossing
            raise ValueError(f"polygon is self-intersecting: edge {i} ({list(v[i])} -> {list(v[(i + 1) % len(v)])}) "
                             f"crosses edge {j} ({list(v[j])} -> {list(v[(j + 1) % len(v)])}); list the points "
                             f"in order around the area")
        if abs(polygon_area(v)) == 0:
            raise ValueError("polygon has no area (its points lie on one line)")
        return v


def polygon_area(points: list[tuple[float, float]]) -> float:
    """Signed shoelace area."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_cross(p1, p2, q1, q2) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a, b, c) -> bool:  # c on segment a-b, given collinear
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return ((d1 == 0 and on(q1, q2, p1)) or (d2 == 0 and on(q1, q2, p2))
            or (d3 == 0 and on(p1, p2, q1)) or (d4 == 0 and on(p1, p2, q2)))


def self_intersection(points: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges (i, j) that touch or cross; None for a simple polygon."""
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a corner
            if _segments_cross(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return i, j
    return None


class CleanMasksConfig(StrictModel):
    """Morphological clean-up of published masks (rtseg/pipeline/cleanup.py); 0 turns a step off.
    SAM 2's own memory keeps the raw masks."""

    remove_islands_px: int = Field(default=0, ge=0)  # drop connected pieces smaller than this
    fill_holes_px: int = Field(default=0, ge=0)  # fill background holes smaller than this
    open_px: int = Field(default=0, ge=0)  # opening with a square kernel of this size (removes specks, thin bits)
    close_px: int = Field(default=0, ge=0)  # closing with a square kernel of this size (bridges thin gaps)

    @property
    def enabled(self) -> bool:
        return any((self.remove_islands_px, self.fill_holes_px, self.open_px, self.close_px))


class AutoPromptConfig(StrictModel):
    """Objects found without a click (rtseg/pipeline/auto_prompt.py). `boxes`: the `add_boxes`
    control request is accepted (an external detector); `everything`: SAM 2's automatic mask
    generator runs on a keyframe at start and every `interval_s`."""

    mode: Literal["off", "boxes", "everything"] = "off"
    max_objects: int = Field(default=8, ge=1)  # objects the camera may track; auto prompts stop there
    match_iou: float = Field(default=0.3, gt=0, le=1)  # overlap with a tracked object at or above this: not new
    interval_s: float = Field(default=30.0, gt=0)  # everything: seconds between keyframes
    points_per_side: int = Field(default=16, ge=1, le=64)  # everything: grid of point prompts
    points_per_batch: int = Field(default=64, ge=1)
    pred_iou_thresh: float = Field(default=0.8, ge=0, le=1)
    stability_score_thresh: float = Field(default=0.92, ge=0, le=1)
    min_area_px: int = Field(default=64, ge=0)  # everything: smaller masks are not objects


class CameraConfig(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    source: str
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    fps: float | None = Field(default=None, gt=0)
    ring_slots: int = Field(default=8, ge=2, le=256)
    # a file/folder/synthetic source waits for the segmenter instead of overwriting frames it
    # has not taken yet; `rtseg run` turns it on for every camera when frame_policy is `every`
    paced: bool = False
    open_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)
    reconnect: ReconnectConfig = ReconnectConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    zones: list[ZoneConfig] = Field(default_factory=list)
    clean_masks: CleanMasksConfig = CleanMasksConfig()
    auto_prompt: AutoPromptConfig = AutoPromptConfig()

    @model_validator(mode="after")
    def _zones_fit(self) -> CameraConfig:
        names = [z.name for z in self.zones]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"zone names must be unique per camera; repeated: {dup}")
        size = self.frame_size()
        if size is not None:
            w, h = size
            for k, zone in enumerate(self.zones):
                for x, y in zone.polygon:
                    if x > w or y > h:
                        raise ValueError(f"zones.{k} ({zone.name!r}): point {[x, y]} lies outside the "
                                         f"{w}x{h} frame; x must be in [0, {w}], y in [0, {h}]")
        return self

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) known from the config (width/height, or a synthetic:// URL); else None."""
        if self.width and self.height:
            return self.width, self.height
        m = re.match(r"^synthetic://(\d+)x(\d+)", self.source)
        return (int(m.group(1)), int(m.group(2))) if m else None


class SegmenterConfig(StrictModel):
    frame_policy: Literal["latest", "every"] = "latest"
    # frames a late prompt may still target; each costs ~3 MiB per camera and ~0.75 MiB per object
    # at image_size 1024 (constant: memory still never grows)
    recent_frames: int = Field(default=15, ge=1)
    # `every`: before the first frame, wait this long for a masks subscriber (recorder, viewer,
    # client) so the start of a file is not published to nobody; 0 starts at once
    wait_for_subscriber_s: float = Field(default=10.0, ge=0)
    # frames of cameras that are ready together go through the image encoder as one batch
    # (at most max_batch; unset: 8 on a GPU, 1 on the CPU, where a batch is slower); a late
    # camera is waited for at most batch_wait_s (0: never)
    batch_cameras: bool = False
    max_batch: int | None = Field(default=None, ge=1)
    batch_wait_s: float = Field(default=0.0, ge=0)


class FrameTopicConfig(StrictModel):
    enabled: bool = False
    fps: float = Field(default=5.0, gt=0)
    quality: int = Field(default=80, ge=1, le=100)


ENDPOINT = r"^(tcp://[^\s:]+:(\d+|\*)|ipc://\S+|inproc://\S+)$"


class NetworkConfig(StrictModel):
    pub: str = Field(default=DEFAULT_PUB, pattern=ENDPOINT)  # tcp://HOST:PORT, ipc://PATH
    control: str = Field(default=DEFAULT_CONTROL, pattern=ENDPOINT)
    hwm: int = Field(default=20, ge=1)
    status_interval_s: float = Field(default=1.0, gt=0)
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    frame_topic: FrameTopicConfig = FrameTopicConfig()


    @model_validator(mode="after")
    def _distinct_endpoints(self) -> NetworkConfig:
        if self.pub == self.control and not self.pub.endswith(":*"):
            raise ValueError(f"network.pub and network.control are both {self.pub!r}: give them different ports")
        return self


class SecurityConfig(StrictModel):
    curve: bool = False
    server_secret_key: Path | None = None  # a zmq.auth .key_secret file
    authorized_clients: Path | None = None  # folder of client .key files
    # the key pair the pipeline's own recorder/viewer use as CURVE clients (its public .key
    # must be in authorized_clients); None: they cannot subscribe while curve is on
    client_secret_key: Path | None = None

    @model_validator(mode="after")
    def _keys_when_curve(self) -> SecurityConfig:
        if self.curve and (self.server_secret_key is None or self.authorized_clients is None):
            raise ValueError(
                "security.curve is on: set server_secret_key and authorized_clients "
                "(generate them with `rtseg keys`)"
            )
        return self


class ViewerConfig(StrictModel):
    """The live viewer (`rtseg view`, or started by `rtseg run` when enabled)."""

    enabled: bool = False
    camera: str | None = None  # which camera to show; None: the first one in `cameras`
    fps: float = Field(default=30.0, gt=0, le=240)  # at most this many frames shown per second
    frame_buffer: int = Field(default=30, ge=1, le=600)  # recent frames kept to meet their masks (6 MB each at 1080p)
    mask_alpha: float = Field(default=0.45, ge=0, le=1)  # mask opacity
    client_key: Path | None = None  # security.curve: this viewer's NAME.key_secret (`rtseg keys`)
    server_key: Path | None = None  # security.curve: the server's public server.key


class RecorderConfig(StrictModel):
    enabled: bool = False
    directory: Path = Path("recordings")
    segment_seconds: float = Field(default=60.0, gt=0)
    retention_gb: float | None = Field(default=None, gt=0)
    retention_hours: float | None = Field(default=None, gt=0)
    video: Literal["none", "raw", "overlay"] = "none"  # MP4 per segment from the frame topic
    frames: bool = False  # record the frame topic even without MP4 (video raw/overlay records it anyway)
    foxglove: bool = True  # also write Foxglove channels (CompressedImage, ImageAnnotations, JSON) per record
    fsync_interval_s: float = Field(default=1.0, ge=0)  # power loss loses at most this much; 0: every record


class FoxgloveConfig(StrictModel):
    """The live Foxglove WebSocket server `rtseg run` starts as its `foxglove` child."""

    enabled: bool = False
    host: str = "127.0.0.1"  # 0.0.0.0: every interface (Foxglove has no authentication: trusted networks only)
    port: int = Field(default=8765, ge=0, le=65535)
    frames: Literal["ring", "topic"] = "ring"  # ring: the cameras' shared memory; topic: network.frame_topic
    fps: float = Field(default=10.0, gt=0, le=120)  # ring frames sent per second and camera, at most
    quality: int = Field(default=80, ge=1, le=100)  # JPEG quality of ring frames


class SupervisorConfig(StrictModel):
    heartbeat_s: float = Field(default=1.0, gt=0)
    heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    restart_budget: int = Field(default=5, ge=0)  # restarts allowed per window, per child
    restart_window_s: float = Field(default=300.0, gt=0)
    shutdown_timeout_s: float = Field(default=5.0, gt=0)
    # prompt log and processes.json; a config file loaded by path defaults to
    # $XDG_STATE_HOME/rtseg/<config name> (~/.local/state/...), the same from any directory
    state_dir: Path = Path("runs")


class ClusterConfig(StrictModel):
    """`rtseg cluster`: cameras spread over the GPUs of a Ray cluster (docs/CLUSTER.md)."""

    # what one segmenter (one GPU, or one `rtseg_segmenter` resource on a CPU node) carries,
    # in camera weights; a camera weighs 1 unless `weights` says otherwise
    cameras_per_segmenter: float = Field(default=4.0, gt=0)
    weights: dict[str, float] = {}
    # the directory's ZeroMQ front door on the head node (`locate`, docs/PROTOCOL.md)
    directory: str = Field(default="tcp://0.0.0.0:5570", pattern=ENDPOINT)

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not w > 0}
        if bad:
            raise ValueError(f"camera weights must be > 0, got {bad}")
        return v


class Config(StrictModel):
    cameras: list[CameraConfig] = Field(min_length=1)
    model: ModelConfig = ModelConfig()
    engine: EngineConfig = EngineConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    network: NetworkConfig = NetworkConfig()
    security: SecurityConfig = SecurityConfig()
    viewer: ViewerConfig = ViewerConfig()
    recorder: RecorderConfig = RecorderConfig()
    foxglove: FoxgloveConfig = FoxgloveConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    cluster: ClusterConfig = ClusterConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> Config:
        ids = [c.id for c in self.cameras]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"camera ids must be unique; repeated: {dup}")
        unknown = sorted(set(self.cluster.weights) - set(ids))
        if unknown:
            raise ValueError(f"cluster.weights names unknown camera(s) {unknown}")
        return self

    @model_validator(mode="after")
    def _video_needs_frames(self) -> Config:
        rec = self.recorder
        if (rec.video != "none" or rec.frames) and not self.network.frame_topic.enabled:
            what = f"recorder.video is {rec.video!r}" if rec.video != "none" else "recorder.frames is on"
            raise ValueError(f"{what} but the segmenter publishes no frames: set network.frame_topic.enabled: true, "
                             "or recorder.video: none and recorder.frames: false")
        return self


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, line, key and value."""


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), node)
            if node is None:
                return None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def _key_node(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The node of the last key in loc (for 'extra key' errors the value node does not exist)."""
    parent = _node_at(root, loc[:-1])
    if isinstance(parent, yaml.MappingNode):
        for k, _ in parent.value:
            if k.value == loc[-1]:
                return k
    return parent


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            node = _key_node(root, loc) if loc else root
            where = f"line {node.start_mark.line + 1}" if node is not None else "?"
            key = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            shown = "" if isinstance(value, dict | list) or err["type"] == "missing" else f" (got {value!r})"
            lines.append(f"{source}:{where}: {key}: {msg}{shown}")
        raise ConfigError("\n".join(lines)) from None


def default_state_dir(config_path: Path) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "rtseg" / config_path.stem


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    cfg = parse_config(text, str(path))
    raw = yaml.safe_load(text)
    if "state_dir" not in (raw.get("supervisor") or {}):
        cfg = cfg.model_copy(update={"supervisor": cfg.supervisor.model_copy(
            update={"state_dir": default_state_dir(path)})})
    return cfg


def load_or_report(path: str | Path) -> Config | None:
    """The config at `path`, or None after printing what is wrong with it to stderr (for commands)."""
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"invalid config:\n{e}", file=sys.stderr)
        return None
