"""tools/gpu_check.sh: its arguments, its JSON report, and a dry run on the CPU end to end.

The script is what a GPU machine runs unattended in a few minutes, so what can be checked
here is checked here: bad arguments stop it before it starts anything, the settings it
resolves, the report it writes from what its steps left behind, and the whole run on the CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
REPORT = ROOT / "tools" / "gpu_check_report.py"


def gpu_check(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def plan(*args: str) -> dict:
    done = gpu_check(*args, "--plan")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_gpu_defaults_are_the_issues_check():
    p = plan()
    assert p["device"] == "cuda" and p["models"] == ["sam2.1_hiera_t", "sam2.1_hiera_l"]
    assert (p["objects"], p["frames"], p["source_size"], p["image_size"]) == ([1, 4], 300, "1920x1080", None)
    assert p["tests"] and p["bench"] and p["budget_s"] == 450 and p["out"] == "gpu-check-out"
    assert (p["cameras"], p["compile"]) == ([1], "off")
    p = plan("--objects", "1,8,16", "--cameras", "1,4", "--compile", "graphs")  # issue #11's GPU figures
    assert (p["objects"], p["cameras"], p["compile"]) == ([1, 8, 16], [1, 4], "graphs")


def test_cpu_is_a_dry_run_with_tiny_defaults_that_options_override():
    p = plan("--device", "cpu")
    assert (p["objects"], p["frames"], p["warmup"], p["source_size"], p["image_size"]) == ([1], 4, 1, "320x240", 256)
    assert p["budget_s"] == 1800
    p = plan("--device", "cpu", "--frames", "7", "--objects", "1,2", "--image-size", "128", "--no-tests",
             "--models", "sam2.1_hiera_s", "--out", "/tmp/x", "--budget", "60", "--install", "no")
    assert (p["frames"], p["objects"], p["image_size"], p["tests"], p["bench"]) == (7, [1, 2], 128, False, True)
    assert (p["models"], p["out"], p["budget_s"], p["install"]) == (["sam2.1_hiera_s"], "/tmp/x", 60, "no")


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "--device must be cuda or cpu, got 'tpu'"),
    (["--frames", "0"], "--frames must be a positive integer, got '0'"),
    (["--frames"], "--frames needs a value"),
    (["--frames", "--no-tests"], "--frames needs a value"),
    (["--objects", "1,,4"], "--objects must be counts like 1,4"),
    (["--cameras", "0"], "--cameras must be counts like 1,4"),
    (["--compile", "fast"], "--compile must be off, default or graphs"),
    (["--frames", "3", "--warmup", "2"], "--frames 3 leaves no timed frame after --warmup 2"),
    (["--source-size", "1920"], "--source-size must be WIDTHxHEIGHT"),
    (["--install", "maybe"], "--install must be auto, yes or no"),
    (["--budget", "soon"], "--budget must be a positive number of seconds"),
    (["--models", "a b"], "--models must be names like sam2.1_hiera_t"),
    (["--fast"], "unknown argument: --fast"),
])
def test_bad_arguments_stop_it_before_anything_runs(args, message, tmp_path):
    done = gpu_check(*args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_every_option():
    done = gpu_check("--help")
    assert done.returncode == 0
    for option in ("--device", "--out", "--models", "--objects", "--cameras", "--compile", "--frames", "--warmup", "--source-size",
                   "--image-size", "--install", "--no-tests", "--no-bench", "--budget", "--plan"):
        assert option in done.stdout


def write_step_files(work: Path, out: Path, steps: str) -> None:
    work.mkdir()
    out.mkdir()
    (work / "settings.json").write_text(json.dumps({"device": "cuda", "frames": 300}))
    (work / "environment.json").write_text(json.dumps({"torch": "2.14.1", "gpus": [{"name": "NVIDIA H200"}]}))
    (work / "steps.tsv").write_text(steps)
    (out / "cuda-tests.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="5" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.engine.test_cuda" name="test_a"/>'
        '<testcase classname="tests.engine.test_cuda" name="test_b"><failure message="x">boom</failure></testcase>'
        '</testsuite></testsuites>')
    run = {"model": "sam2.1_hiera_t", "objects": 1, "predictor": "rtseg", "device": "cuda:0", "fps": 95.5,
           "p50_ms": 10.1, "p99_ms": 12.0, "latencies_ms": [10.0] * 5}
    (out / "bench-sam2.1_hiera_t.json").write_text(json.dumps(
        {"machine": {"gpu": "NVIDIA H200"}, "results": [run, {**run, "predictor": "official", "fps": 40.0}]}))


def test_the_report_gathers_steps_tests_and_bench_runs(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_step_files(work, out, "environment\t0\t1.250\ncuda-tests\t1\t61.5\nbench-sam2.1_hiera_t\t0\t100\n")
    done = subprocess.run([sys.executable, str(REPORT), str(work), str(out)], capture_output=True, text=True)
    assert done.returncode == 1, "a failed step makes the check fail"
    assert "cuda-tests" in done.stdout and "FAILED (exit 1)" in done.stdout
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] is False and report["settings"] == {"device": "cuda", "frames": 300}
    assert report["environment"]["gpus"] == [{"name": "NVIDIA H200"}]
    assert report["steps"] == [
        {"name": "environment", "exit": 0, "seconds": 1.25, "ok": True},
        {"name": "cuda-tests", "exit": 1, "seconds": 61.5, "ok": False},
        {"name": "bench-sam2.1_hiera_t", "exit": 0, "seconds": 100.0, "ok": True}]
    assert report["cuda_tests"] == {"tests": 5, "failures": 1, "errors": 0, "skipped": 1,
                                    "failed": ["tests.engine.test_cuda::test_b"]}
    assert [(b["predictor"], b["fps"], b["gpu"]) for b in report["bench"]] == [
        ("rtseg", 95.5, "NVIDIA H200"), ("official", 40.0, "NVIDIA H200")]
    assert "latencies_ms" not in report["bench"][0]


def test_the_report_of_a_clean_run_exits_0(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_step_files(work, out, "environment\t0\t1\n")
    done = subprocess.run([sys.executable, str(REPORT), str(work), str(out)], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads((out / "gpu_check.json").read_text())["ok"] is True


def test_a_dry_run_on_the_cpu_end_to_end(tmp_path):
    out = tmp_path / "out"
    done = gpu_check("--device", "cpu", "--models", "sam2.1_hiera_t", "--frames", "3", "--warmup", "0",
                     "--image-size", "128", "--source-size", "160x120", "--no-tests", "--out", str(out),
                     "--cameras", "1,2", timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and [s["name"] for s in report["steps"]] == ["environment", "bench-sam2.1_hiera_t-1"]
    assert report["environment"]["hole_filling"]["cpu"] == "torch"
    assert sorted((b["cameras"], b["predictor"]) for b in report["bench"]) == [
        (1, "official"), (1, "rtseg"), (2, "official"), (2, "rtseg")]
    assert all(b["fps"] > 0 and b["image_size"] == 128 for b in report["bench"])
    log = (out / "gpu_check.log").read_text()
    assert "=== bench-sam2.1_hiera_t-1" in log and "exit 0" in log
    assert sorted(p.name for p in out.iterdir()) == ["bench-sam2.1_hiera_t-1.json", "gpu_check.json", "gpu_check.log"]
