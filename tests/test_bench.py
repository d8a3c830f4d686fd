"""benchmarks/bench_step.py runs and writes the JSON rows the Performance issue asks for (no timing asserted).

Run: ``python -m pytest tests/test_bench.py -q``.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_step_writes_rows_with_ratios_to_the_floor(tmp_path):
    out = tmp_path / "rows.json"
    rows = ["numpy_float64", "fused", "front_door", "front_door_autograd"]
    proc = subprocess.run([sys.executable, "benchmarks/bench_step.py", "--num-train", "400", "--hidden", "8",
                           "--steps", "2", "--repeats", "1", "--warmup", "1", "--rows", *rows, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert [r["name"] for r in got] == ["floor", *rows]  # the floor is always timed, first
    for r in got:
        assert set(r) >= {"name", "device", "hidden", "ms_per_step", "ratio_to_floor"}
        assert r["device"] == "cpu" and r["hidden"] == 8 and r["ms_per_step"] > 0
        assert r["ratio_to_floor"] == pytest.approx(r["ms_per_step"] / got[0]["ms_per_step"], rel=1e-2, abs=2e-3)
    assert "front_door_autograd" in proc.stdout and "x floor" in proc.stdout


def test_bench_step_rejects_an_unknown_row():
    proc = subprocess.run([sys.executable, "benchmarks/bench_step.py", "--rows", "warp_drive"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown" in proc.stderr and "warp_drive" in proc.stderr
