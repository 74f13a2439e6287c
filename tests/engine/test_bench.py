"""`rtseg bench` works end to end (a smoke test of the tool, not a timing assertion)."""
from __future__ import annotations

import json

import pytest

from rtseg.cli import main


@pytest.mark.parametrize("mode", [[], ["--interleave", "--cameras", "2"]], ids=["sequential", "interleaved-2-cameras"])
def test_bench_runs_both_predictors_and_writes_sane_numbers(tmp_path, capsys, mode):
    out = tmp_path / "bench.json"
    argv = ["bench", "--image-size", "128", "--frames", "3", "--warmup", "0", "--objects", "1",
            "--source-size", "320x240", "--checkpoint-dir", str(tmp_path), "--json", str(out), *mode]
    assert main(argv) == 0
    runs = {r["predictor"]: r for r in json.loads(out.read_text())["results"]}
    assert sorted(runs) == ["official", "rtseg"]
    for name, r in runs.items():
        cameras = 2 if mode else 1
        assert (r["model"], r["objects"], r["cameras"], r["image_size"], r["frames"]) == \
            ("sam2.1_hiera_t", 1, cameras, 128, 3), name
        assert len(r["latencies_ms"]) == 2 and min(r["latencies_ms"]) > 0, name
        assert r["fps"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 and r["first_mask_s"] > 0, name
        assert r["state_bytes"] > 0, name
        if mode:
            assert r["peak_mem_bytes"] is None, name  # both run at once: no per-predictor peak
        else:
            assert r["peak_mem_bytes"] >= 0, name  # RSS growth can be 0 when freed memory is reused
    assert runs["official"]["init_state_s"] > 0 and runs["official"]["video_bytes"] > 0
    assert runs["rtseg"]["init_state_s"] is None
    table = capsys.readouterr().out
    assert "official" in table and "rtseg" in table and "p99 ms" in table and "x official" in table


def test_bench_rejects_too_few_frames_with_a_clear_message(caplog):
    assert main(["bench", "--frames", "2", "--warmup", "1"]) == 2
    assert "need frames >= warmup + 2" in caplog.text


@pytest.mark.parametrize("option", ["--chunk", "--encoder-batch"])
def test_bench_rejects_a_batch_below_one(option, caplog):
    assert main(["bench", option, "0"]) == 2
    assert f"{option} 0: must be at least 1" in caplog.text


def test_tools_bench_engine_is_rtseg_bench(tmp_path):
    """tools/bench_engine.py (the name the engine issue uses) runs the same bench, as a script."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[2] / "tools" / "bench_engine.py"
    proc = subprocess.run([sys.executable, str(script), "--image-size", "64", "--frames", "2", "--warmup", "0",
                           "--objects", "1", "--cameras", "1", "--source-size", "64x48",
                           "--checkpoint-dir", str(tmp_path), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(r["predictor"] for r in json.loads(out.read_text())["results"]) == ["official", "rtseg"]
    assert "x official" in proc.stdout


def test_paired_speedup_of_interleaved_runs():
    from rtseg.engine.bench import RunResult, format_table, paired_speedup

    def run(name, latencies, interleaved=True):
        return RunResult(model="m", objects=1, cameras=1, predictor=name, device="cpu", image_size=64, frames=9,
                         warmup=0, weights="random", first_mask_s=1.0, init_state_s=None, latencies_ms=latencies,
                         peak_mem_bytes=None, peak_mem_kind="-", state_bytes_after_prompt=1, state_bytes=1,
                         video_bytes=0, interleaved=interleaved)

    official = [100.0, 300.0, 200.0, 150.0]
    fast = run("rtseg", [x / 2 for x in official])
    assert paired_speedup(fast, run("official", official)) == pytest.approx((2.0, 2.0, 2.0))
    noisy = run("rtseg", [50.0, 160.0, 95.0, 75.0])
    mean, low, high = paired_speedup(noisy, run("official", official))
    assert low < mean < high and low < 2.0 < high
    assert paired_speedup(fast, run("official", official, interleaved=False)) is None  # not paired frame by frame
    table = format_table([fast, run("official", official)])
    assert "paired x (95% CI)" in table and "2.00 (2.00-2.00)" in table


def test_t_quantile_beyond_the_table():
    from rtseg.engine.bench import _t975

    assert _t975(9) == 2.262 and _t975(30) == 2.042
    assert abs(_t975(38) - 2.0244) < 0.0005 and abs(_t975(120) - 1.9799) < 0.0005  # Student's t, two-sided 95%
