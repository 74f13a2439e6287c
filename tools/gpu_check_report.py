#!/usr/bin/env python
"""Collect what tools/gpu_check.sh produced into one JSON file (the check's result).

    python tools/gpu_check_report.py WORK_DIR OUT_DIR

WORK_DIR holds settings.json, steps.tsv (name, exit status, seconds per step) and
environment.json; OUT_DIR the JUnit file cuda-tests.xml and bench-<model>.json files. Writes
OUT_DIR/gpu_check.json; exits 1 when a step failed, so the script's exit status says so.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH_FIELDS = ("model", "cameras", "objects", "predictor", "device", "image_size", "frames", "warmup", "weights",
                "fps", "p50_ms", "p99_ms", "first_mask_s", "init_state_s", "peak_mem_bytes", "state_bytes")


def read_steps(path: Path) -> list[dict]:
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, seconds = line.split("\t")
        steps.append({"name": name, "exit": int(rc), "seconds": round(float(seconds), 3), "ok": rc == "0"})
    return steps


def read_junit(path: Path) -> dict | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for s in suites for case in s.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "failed": failed}


def read_bench(out: Path) -> list[dict]:
    runs = []
    for path in sorted(out.glob("bench-*.json")):
        report = json.loads(path.read_text())
        for r in report["results"]:
            runs.append({k: r.get(k) for k in BENCH_FIELDS} | {"gpu": report["machine"].get("gpu")})
    return runs


def build_report(work: Path, out: Path) -> dict:
    steps = read_steps(work / "steps.tsv")
    env_path = work / "environment.json"
    return {
        "settings": json.loads((work / "settings.json").read_text()),
        "environment": json.loads(env_path.read_text()) if env_path.is_file() else None,
        "steps": steps,
        "ok": bool(steps) and all(s["ok"] for s in steps),
        "cuda_tests": read_junit(out / "cuda-tests.xml"),
        "bench": read_bench(out),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/gpu_check_report.py WORK_DIR OUT_DIR", file=sys.stderr)
        return 2
    work, out = Path(argv[0]), Path(argv[1])
    report = build_report(work, out)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    for s in report["steps"]:
        print(f"{s['name']:<28} {'ok' if s['ok'] else 'FAILED (exit %d)' % s['exit']:<16} {s['seconds']:8.1f} s")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
