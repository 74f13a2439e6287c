"""The `rtseg cluster` process: place a config's cameras on a Ray cluster and keep them placed.

Once a second (`reconcile`):
1. a segmenter whose node left the cluster is dropped with its captures; its cameras become
   unplaced (their objects stay in the directory's prompt log on the head);
2. unplaced cameras are packed into new segmenters on free slots (rtseg.cluster.placement);
   each new segmenter gets its cameras' capture actors on the same node (hard node affinity);
   what does not fit stays `unplaced`, visibly, until a node joins;
3. state changes the directory saw (running, restarting, failed) are logged.

A segmenter that crashes is restarted in place by Ray (max_restarts=-1; the budget is counted
in the directory). SIGINT/SIGTERM stop every actor this process started: segmenters first,
then captures (which close and remove their rings), then the directory.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rtseg.cluster.directory import NAME, NAMESPACE, RUNNING, STARTING, UNPLACED, Directory
from rtseg.cluster.placement import NewSegmenter, pack, segmenter_resource
from rtseg.config import Config
from rtseg.proc import ring_name_for

log = logging.getLogger("rtseg.cluster")

TICK_S = 1.0
HEAD_RESOURCE = "node:__internal_head__"


@dataclass
class Group:
    """One segmenter actor and the capture actors of its cameras, on one node."""

    id: str
    node: str
    host: str
    cameras: tuple[str, ...]
    rings: dict[str, str]
    segmenter: Any = None
    captures: dict[str, Any] = field(default_factory=dict)

    def actors(self) -> list[Any]:
        return [a for a in (self.segmenter, *self.captures.values()) if a is not None]


def alive_nodes() -> dict[str, dict[str, Any]]:
    import ray

    return {n["NodeID"]: {"host": n["NodeManagerAddress"], "resources": n.get("Resources", {})}
            for n in ray.nodes() if n.get("Alive")}


def connectable(endpoint: str, host: str) -> str:
    """tcp://0.0.0.0:P (every interface) -> tcp://HOST:P, for printing where clients connect."""
    return endpoint.replace("tcp://0.0.0.0:", f"tcp://{host}:").replace("tcp://*:", f"tcp://{host}:")


class ClusterManager:
    def __init__(self, cfg: Config, checkpoint: str | None, *, address: str = "auto",
                 run_id: str | None = None) -> None:
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.address = address
        self.run_id = run_id or f"rtsegc{os.getpid()}"
        self.cameras = {c.id: c for c in cfg.cameras}
        self.groups: dict[str, Group] = {}
        self.directory: Any = None
        self.locate_endpoint: str | None = None
        self._gen = itertools.count(1)
        self._stopping = threading.Event()
        self._shown: dict[str, tuple] = {}  # camera -> what was last logged about it
        self._unplaced_note: dict[str, str] = {}

    # ------------------------------------------------------------- start
    def start(self) -> None:
        import ray

        from rtseg.cluster.actors import CaptureActor, SegmenterActor

        ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=True)
        self._capture_cls, self._segmenter_cls = ray.remote(CaptureActor), ray.remote(SegmenterActor)
        try:  # a directory left by an earlier `rtseg cluster` that was killed: replace it
            ray.kill(ray.get_actor(NAME, namespace=NAMESPACE), no_restart=True)
            log.warning("replaced the directory of an earlier rtseg cluster (its prompt log is kept on disk)")
            time.sleep(1.0)
        except ValueError:
            pass
        head = next((n for n in alive_nodes().values() if HEAD_RESOURCE in n["resources"]), None)
        sup = self.cfg.supervisor
        self.directory = ray.remote(Directory).options(
            name=NAME, namespace=NAMESPACE, lifetime="detached", num_cpus=0, max_restarts=0,
            resources={HEAD_RESOURCE: 0.001}, max_concurrency=64,
        ).remote(list(self.cameras), str(sup.state_dir), self.cfg.cluster.directory,
                 restart_budget=sup.restart_budget, restart_window_s=sup.restart_window_s)
        endpoint = ray.get(self.directory.endpoint.remote(), timeout=60)
        self.locate_endpoint = connectable(endpoint, head["host"] if head else "127.0.0.1")
        log.info("directory up on the head: clients use --cluster %s", self.locate_endpoint)

    # --------------------------------------------------------- reconcile
    def _cameras_of(self) -> dict[str, str]:
        return {cam: g.id for g in self.groups.values() for cam in g.cameras}

    def reconcile(self) -> None:
        import ray

        nodes = alive_nodes()
        for g in list(self.groups.values()):
            if g.node not in nodes:
                log.warning("node %s (%s) left the cluster: moving cameras %s", g.node[:12], g.host, list(g.cameras))
                for cam in g.cameras:
                    ray.get(self.directory.place.remote(cam, state=UNPLACED, node=None, host=None, segmenter=None,
                                                        message=f"node {g.host} {g.node[:12]} lost; moving"),
                            timeout=30)
                self._drop(g)
        placed = self._cameras_of()
        waiting = [cam for cam in self.cameras if cam not in placed]
        if waiting:
            free = {}
            for node_id, n in nodes.items():
                _, slots = segmenter_resource(n["resources"])
                free[node_id] = slots - sum(1 for g in self.groups.values() if g.node == node_id)
            new, left = pack(waiting, self.cfg.cluster.weights, self.cfg.cluster.cameras_per_segmenter, free)
            for ns in new:
                self._start_group(ns, nodes[ns.node])
            for cam in left:
                heavy = self.cfg.cluster.weights.get(cam, 1.0) > self.cfg.cluster.cameras_per_segmenter
                note = ("weighs more than one segmenter carries (cluster.cameras_per_segmenter)" if heavy
                        else "no free segmenter slot (GPU or rtseg_segmenter) in the cluster: waiting for capacity")
                if self._unplaced_note.get(cam) != note:
                    self._unplaced_note[cam] = note
                    ray.get(self.directory.place.remote(cam, state=UNPLACED, node=None, host=None, segmenter=None,
                                                        message=note), timeout=30)
        self._log_changes()

    def _start_group(self, ns: NewSegmenter, node: dict[str, Any]) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        gen = next(self._gen)
        gid = f"seg{gen}"
        host = node["host"]
        rings = {cam: ring_name_for(self.run_id, f"{cam}-{gen}") for cam in ns.cameras}
        g = Group(gid, ns.node, host, ns.cameras, rings)
        self.groups[gid] = g
        for cam in ns.cameras:
            self._unplaced_note.pop(cam, None)
            ray.get(self.directory.place.remote(cam, state=STARTING, node=ns.node, host=host, segmenter=gid,
                                                message=""), timeout=30)
        pin = NodeAffinitySchedulingStrategy(ns.node, soft=False)
        paced = self.cfg.segmenter.frame_policy == "every"  # as `rtseg run`: files set no pace of their own
        budget = self.cfg.supervisor.restart_budget
        cams = []
        for cam in ns.cameras:
            camera = self.cameras[cam].model_copy(update={"paced": True}) if paced else self.cameras[cam]
            cams.append(camera)
            g.captures[cam] = self._capture_cls.options(
                name=f"{self.run_id}-capture-{cam}-{gen}", num_cpus=0, max_restarts=budget,
                scheduling_strategy=pin).remote(camera, rings[cam], self.cfg.log_level)
        endpoint = f"tcp://{host}:*"
        seg_cfg = self.cfg.model_copy(update={
            "cameras": cams, "network": self.cfg.network.model_copy(update={"pub": endpoint, "control": endpoint})})
        kind, _ = segmenter_resource(node["resources"])
        needs = {"num_gpus": 1} if kind == "GPU" else {"resources": {kind: 1}}
        g.segmenter = self._segmenter_cls.options(
            name=f"{self.run_id}-{gid}", num_cpus=0, max_restarts=-1, max_task_retries=0,
            scheduling_strategy=pin, **needs).remote(gid, seg_cfg, self.checkpoint, rings, self.directory)
        log.info("%s on node %s (%s, %s): cameras %s", gid, ns.node[:12], host, kind, list(ns.cameras))

    def _drop(self, g: Group) -> None:
        import ray

        for actor in g.actors():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone with its node
                pass
        del self.groups[g.id]

    def _log_changes(self) -> None:
        import ray

        for cam, e in ray.get(self.directory.locate.remote(), timeout=30).items():
            shown = (e["state"], e["segmenter"], e["pub"], e["message"])
            if self._shown.get(cam) == shown:
                continue
            self._shown[cam] = shown
            if e["state"] == RUNNING:
                log.info("camera %s running on %s (%s, %s): masks on %s", cam, e["host"], e["segmenter"],
                         e["device"], e["pub"])
            else:
                log.info("camera %s %s%s", cam, e["state"], f": {e['message']}" if e["message"] else "")

    # --------------------------------------------------------------- run
    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            for s in old:  # ray.init installs its own handlers, which abort the process: ours again
                signal.signal(s, self._on_signal)
            while not self._stopping.is_set():
                self.reconcile()
                self._stopping.wait(TICK_S)
        finally:
            self.shutdown()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("%s received: stopping every actor of this cluster run", signal.Signals(signum).name)
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()

    def shutdown(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        timeout = self.cfg.supervisor.shutdown_timeout_s
        for kind in ("segmenter", "captures"):
            refs = []
            for g in self.groups.values():
                actors = [g.segmenter] if kind == "segmenter" else list(g.captures.values())
                refs += [a.stop.remote(timeout * 0.6) for a in actors if a is not None]
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for g in list(self.groups.values()):
            self._drop(g)
        if self.directory is not None:
            try:
                ray.get(self.directory.close.remote(), timeout=timeout)
            except Exception as e:
                log.warning("directory did not close cleanly: %s", e)
            ray.kill(self.directory, no_restart=True)
            self.directory = None
        ray.shutdown()
        log.info("cluster run stopped")
