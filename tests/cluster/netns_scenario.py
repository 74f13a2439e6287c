"""The cluster scenario on a real 3-node Ray cluster; run ONLY inside the private network
namespace that tests/cluster/test_cluster.py creates (its file name keeps pytest from
collecting it on its own; `test_runs_in_a_private_network` refuses any other network).

Head (directory, no segmenter slot) + two worker nodes with `rtseg_segmenter: 2` each;
4 synthetic cameras, cluster.cameras_per_segmenter 2, SAM 2 tiny at image_size 256 with the
test checkpoint (object score head forced on: masks are never empty by accident). The tests
run in order on one `rtseg cluster` process, as one story.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rtseg.client import Controller, Masks, Subscriber
from rtseg.locate import Locator
from tests.helpers.engine import write_test_checkpoint
from tests.helpers.net import free_port
from tests.helpers.pipeline import write_config

CAMERAS = ["cam0", "cam1", "cam2", "cam3"]
WORKER = {"num_cpus": 1, "resources": {"rtseg_segmenter": 2}}
BOX = [40, 30, 110, 90]


def test_runs_in_a_private_network():
    """Only loopback exists here: no Ray or ZeroMQ packet can leave the machine."""
    assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()


def test_no_ray_cluster_is_a_clear_error(tmp_path):
    """Before the cluster exists: `rtseg cluster` says what to start instead of a traceback."""
    config = write_config(tmp_path, None, policy="latest")
    out = subprocess.run([sys.executable, "-m", "rtseg.cli", "cluster", str(config)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "cannot reach a Ray cluster at 'auto'" in out.stderr and "ray start --head" in out.stderr
    assert "Traceback" not in out.stderr


class Scenario:
    def __init__(self, tmp: Path):
        import ray
        from ray.cluster_utils import Cluster

        self.tmp = tmp
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        self.workers = [self.cluster.add_node(**WORKER), self.cluster.add_node(**WORKER)]
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, namespace="rtseg-test", log_to_driver=False)
        self.directory = f"tcp://127.0.0.1:{free_port()}"
        checkpoint = write_test_checkpoint(tmp / "test256.pt", 256)
        cams = [{"id": c, "source": f"synthetic://160x120@4?objects=2&seed={i}"} for i, c in enumerate(CAMERAS)]
        self.config = write_config(tmp, checkpoint, policy="latest", cameras=cams, extra={
            "model": {"image_size": 256},
            "cluster": {"cameras_per_segmenter": 2, "directory": self.directory},
            "supervisor": {"shutdown_timeout_s": 10},
        })
        self.log = open(tmp / "cluster.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "rtseg.cli", "cluster", str(self.config), "--address",
                                      self.cluster.address], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.run_id = f"rtsegc{self.proc.pid}"
        self.locator = Locator(self.directory, timeout=5.0)
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}  # written for tests/cluster/test_cluster.py to print

    def took(self, what: str, since: float) -> None:
        self.timings[what] = round(time.monotonic() - since, 1)
        out = os.environ.get("RTSEG_CLUSTER_TIMINGS")
        if out:
            Path(out).write_text(json.dumps(self.timings, indent=1))

    def output(self) -> str:
        self.log.flush()
        return (self.tmp / "cluster.log").read_text()[-8000:]

    def locate(self) -> dict:
        return self.locator.locate()

    def wait(self, what: str, ok, timeout_s: float = 150.0) -> dict:
        deadline = time.monotonic() + timeout_s
        where = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"rtseg cluster exited:\n{self.output()}"
            try:
                where = self.locate()
            except Exception as e:  # directory not up yet
                where = {"error": str(e)}
            else:
                if ok(where):
                    return where
            time.sleep(0.5)
        raise AssertionError(f"not {what} within {timeout_s} s: {where}\n{self.output()}")

    def node_id(self, node) -> str:
        return node.node_id

    def close(self) -> None:
        import ray

        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "subscriber", None) is not None:
            self.subscriber.close()
        self.locator.close()
        ray.shutdown()
        self.cluster.shutdown()
        self.log.close()


def running(where: dict, cameras=CAMERAS) -> bool:
    return all(where.get(c, {}).get("state") == "running" for c in cameras)


def masks_with(sub: Subscriber, camera: str, obj_id: int, timeout_s: float = 120.0, after_ns: int = 0) -> Masks:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = sub.recv(timeout=1.0)
        if (isinstance(m, Masks) and m.camera == camera and obj_id in m.obj_ids and m.received_ns > after_ns
                and m.mask_of(obj_id).any()):
            return m
    raise AssertionError(f"no masks of object {obj_id} on {camera} within {timeout_s} s")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    s = Scenario(tmp_path_factory.mktemp("cluster"))
    try:
        yield s
    finally:
        s.close()


def test_cameras_spread_over_both_workers(scenario):
    where = scenario.wait("all running", running)
    scenario.took("start_to_all_running_s", scenario.t0)
    rss = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        for actor in ("Directory", "CaptureActor", "SegmenterActor"):
            if title.startswith(f"ray::{actor}"):
                rss.setdefault(actor, []).append(p.memory_info().rss)
    for actor, values in rss.items():
        scenario.timings[f"rss_mib_{actor}"] = round(max(values) / 2**20)
    nodes = {where[c]["node"] for c in CAMERAS}
    assert nodes == {scenario.node_id(w) for w in scenario.workers}, where
    assert len({where[c]["segmenter"] for c in CAMERAS}) == 2  # 2 cameras per segmenter
    for c in CAMERAS:
        assert where[c]["pub"].startswith("tcp://127.0.0.1:") and where[c]["control"].startswith("tcp://127.0.0.1:")


def test_prompts_come_back_after_a_node_is_lost(scenario):
    where = scenario.locate()
    first, moved = "cam0", next(c for c in CAMERAS if where[c]["node"] != where["cam0"]["node"])
    with Controller(None, cluster=scenario.directory, timeout=30) as ctl:
        for cam in (first, moved):
            reply = ctl.add_box(cam, obj_id=1, box=BOX)
            assert reply["obj_ids"] == [1]
        ctl.add_points(moved, obj_id=2, points=[[120, 60]])
    sub = Subscriber(None, cameras=[moved], cluster=scenario.directory, follow_s=1.0)
    scenario.subscriber, scenario.moved = sub, moved  # kept open across the node loss: it must resume by itself
    masks_with(sub, moved, 2)
    lost = next(w for w in scenario.workers if w.node_id == where[moved]["node"])
    old_pub = where[moved]["pub"]
    t_loss, t = time.monotonic_ns(), time.monotonic()
    scenario.cluster.remove_node(lost)
    scenario.workers.remove(lost)
    survivor = scenario.workers[0].node_id
    where = scenario.wait("moved to the surviving node",
                          lambda w: running(w) and all(w[c]["node"] == survivor for c in CAMERAS))
    scenario.took("node_lost_to_running_elsewhere_s", t)
    assert where[moved]["moves"] == 1 and where[moved]["pub"] != old_pub
    # the same Subscriber, never restarted, gets the moved camera's masks with both objects
    m = masks_with(sub, moved, 1, after_ns=t_loss)
    assert set(m.obj_ids) == {1, 2} and m.mask_of(2).any()
    where = scenario.wait("objects reported", lambda w: w[moved]["objects"] == [1, 2] and w[first]["objects"] == [1])
    with Controller(None, cluster=scenario.directory, timeout=30) as ctl:
        listed = ctl.list()["cameras"]
    assert listed[moved]["obj_ids"] == [1, 2] and listed[first]["obj_ids"] == [1]
    status = subprocess.run([sys.executable, "-m", "rtseg.cli", "cluster", "status", "--cluster", scenario.directory],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith(moved))
    assert "running" in row and "1,2" in row, status.stdout


def test_segmenter_crash_restarts_in_place(scenario):
    where = scenario.locate()
    pid, node, moves = where["cam0"]["pid"], where["cam0"]["node"], where["cam0"]["moves"]
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    where = scenario.wait("restarted", lambda w: running(w) and w["cam0"]["pid"] not in (None, pid))
    scenario.took("segmenter_killed_to_running_again_s", t)
    assert where["cam0"]["node"] == node and where["cam0"]["moves"] == moves  # in place, not moved
    with Subscriber(None, cameras=["cam0"], cluster=scenario.directory) as sub:
        masks_with(sub, "cam0", 1)


def test_short_capacity_leaves_cameras_unplaced_until_a_node_joins(scenario):
    last = scenario.workers.pop()
    scenario.cluster.remove_node(last)
    where = scenario.wait("unplaced", lambda w: all(w[c]["state"] == "unplaced" for c in CAMERAS), 60)
    assert "no free segmenter slot" in where["cam0"]["message"]
    status = subprocess.run([sys.executable, "-m", "rtseg.cli", "cluster", "status", "--cluster", scenario.directory],
                            capture_output=True, text=True, timeout=60)
    assert status.stdout.count("unplaced") >= 4, status.stdout
    t = time.monotonic()
    scenario.workers.append(scenario.cluster.add_node(**WORKER))
    new = scenario.workers[-1].node_id
    scenario.wait("placed on the new node", lambda w: running(w) and all(w[c]["node"] == new for c in CAMERAS))
    scenario.took("node_joined_to_all_running_s", t)
    m = masks_with(scenario.subscriber, scenario.moved, 2)
    assert set(m.obj_ids) == {1, 2}


def test_sigterm_stops_every_actor_and_leaves_no_shared_memory(scenario):
    import ray

    scenario.subscriber.close()
    t0 = time.monotonic()
    scenario.proc.send_signal(signal.SIGTERM)
    assert scenario.proc.wait(60) == 0, scenario.output()
    took = time.monotonic() - t0
    scenario.took("sigterm_to_exit_s", t0)
    mine = [a for a in ray.util.list_named_actors(all_namespaces=True)
            if scenario.run_id in a["name"] or a["name"] == "rtseg-directory"]
    assert mine == [], mine
    assert [n for n in os.listdir("/dev/shm") if scenario.run_id in n] == []
    assert took < 40, took
    print(f"rtseg cluster stopped in {took:.1f} s")
