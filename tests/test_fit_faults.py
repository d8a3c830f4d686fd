"""``python -m train fit`` under faults the resume tests do not cover: a disk that fills up mid-run. The run ends
with one ``error:`` line (exit 2), the checkpoints already written stay intact, and no temporary file is left.

Run: ``python -m pytest tests/test_fit_faults.py -q``. Needs a small tmpfs (mount, as root on Linux); skipped with the
reason elsewhere.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.checkpoint_io import damage

pytestmark = [pytest.mark.lightning, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs, nearly full: room for a run's first files, not for all of them."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {made.stderr.strip()}")
    try:
        (mount / "filler").write_bytes(bytes(330_000))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_mid_run_is_one_error_line_and_keeps_what_was_written(small_disk):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "train", "fit", "--config", SMOKE], cwd=small_disk, env=env,
                          capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: no space left on device") and "Traceback" not in proc.stderr
    files = [p for p in small_disk.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], files
    for ckpt in (p for p in files if p.suffix == ".ckpt"):
        assert damage(ckpt) is None, ckpt  # whatever was written is whole
