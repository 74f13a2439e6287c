"""`rtseg cluster` on a real multi-node Ray cluster on this machine (tests/cluster/netns_scenario.py).

Ray advertises the machine's outward address, so the scenario runs inside a private network
namespace this test creates (`unshare --net`, then `lo` up): there only loopback exists, and
every Ray and ZeroMQ packet stays on it. Needs root (or CAP_SYS_ADMIN), as on the CI machines.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("netns_scenario.py")


@pytest.mark.timeout(600)
def test_cluster_scenario_in_a_private_network(tmp_path):
    # Ray's session files (logs, sockets) in a short folder of this run's own: "auto" finds no
    # other cluster there, and unix socket paths stay short
    ray_tmp = Path(tempfile.mkdtemp(prefix="rtseg-ray-"))
    inner = (f'ip link set lo up && exec "{sys.executable}" -m pytest -x -q -p no:cacheprovider --durations=0 '
             f'--basetemp "{tmp_path / "inner"}" "{SCENARIO}"')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "RAY_USAGE_STATS_ENABLED": "0", "RTSEG_CLUSTER_TIMINGS": str(tmp_path / "timings.json"),
           "RAY_TMPDIR": str(ray_tmp)}
    t0 = time.monotonic()
    proc = subprocess.Popen(["unshare", "--net", "--", "sh", "-c", inner], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=580)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the Ray nodes too: they are in the same session
        stdout, stderr = proc.communicate()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    took = time.monotonic() - t0
    print(stdout[-3000:])
    if (tmp_path / "timings.json").exists():
        print("cluster timings:", (tmp_path / "timings.json").read_text())
    assert proc.returncode == 0, f"cluster scenario failed after {took:.0f} s:\n{stdout[-12000:]}\n{stderr[-4000:]}"
    assert "7 passed" in stdout, stdout[-3000:]
