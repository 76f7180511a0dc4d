"""The quick benchmark completes and its verification checks hold (never a speed claim)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_completes_and_verifies(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(output.read_text())
    assert result["mode"] == "quick"
    assert result["checks"], "the benchmark verified nothing"
    assert all(result["checks"].values()), result["checks"]
    figures = (
        "tiering x1 / min(raw a, raw b)",
        "tiering x2 / min(raw a, raw b)",
        "e2e latency p99",
        "x1 POST /complaints",
        "x2 POST /complaints",
        "x1 POST /complaints after the breaches",
        "x2 POST /complaints after the breaches",
    )
    for figure in figures:
        assert result["figures"][figure]["value"] > 0
    assert result["figures"]["notifications via sandbox"]["value"] > 0
    spans = [f for name, f in result["figures"].items() if name.startswith("cpu during ")]
    # tiering x1 and x2, latency, on x1 and x2 POST, breaches and POST again, the burst
    assert len(spans) == 10, list(result["figures"])
    assert all(span["by_role"] and span["value"] > 0 for span in spans), spans
    if sys.platform == "linux":  # the run queue's wait is read from /proc
        assert any(span["waiting_by_role"] for span in spans), spans
    speeds = [f for name, f in result["figures"].items() if name.startswith("machine speed ")]
    assert len(speeds) == 8, list(result["figures"])  # before and after each section
    assert all(speed["value"] > 0 for speed in speeds), speeds


def test_broker_probe_completes() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.broker",
            "0",
            "100",
            "--wait",
            "20",
            "200",
            "--partitions",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    measured = [line for line in run.stdout.splitlines() if "stored batches in 3," in line]
    assert len(measured) == 4, run.stdout  # two sizes, two waits each
