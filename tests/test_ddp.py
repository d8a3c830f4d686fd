"""DDP on CPU (gloo): ``fit --trainer.strategy ddp --trainer.accelerator cpu --trainer.devices 2`` trains the same
model as one process with the same config, because ``data.batch_size`` is the GLOBAL batch: every rank draws the
same global indices and keeps its contiguous half, the loss is the mean over that half, and DDP averages the two
gradients (hand-written, delivered through manual_backward's autograd hooks) into the full-batch mean. The reg
term's gradient 2 reg W is the same on both ranks, so its average is 2 reg W again.

Run: pytest tests/test_ddp.py   (slow: each 2-process run starts two Python processes with Lightning, ~12 s)
"""
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.helpers import assert_close_report
from train.step_blocks import StepBlock

pytestmark = [pytest.mark.lightning, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""}
# digits, global batch 200, 2 epochs = 14 steps; a larger reg so that its gradient matters in the sum
CONFIG = ["fit", "--config", SMOKE, "--trainer.max_epochs", "2", "--model.reg", "0.05", "--plots.enabled", "false",
          "--trainer.callbacks+=tests.test_ddp.RecordBatches"]
DDP = ["--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]


class RecordBatches(L.Callback):
    """Writes rank<r>.pt: the labels (B_local,) of every training batch this rank saw, in step order."""

    def __init__(self):
        self.labels = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(batch, StepBlock):  # the CLI's default: the labels of each of its steps
            self.labels += [batch.step_batch(j)[1].cpu().clone() for j in range(batch.count)]
        else:
            self.labels.append(batch[1].cpu().clone())

    def on_train_end(self, trainer, pl_module):
        torch.save(self.labels, f"rank{trainer.global_rank}.pt")


def fit(cwd, *args):
    """python -m train CONFIG ARGS in cwd; returns the final last.ckpt's state_dict."""
    proc = subprocess.run([sys.executable, "-m", "train", *CONFIG, *args], cwd=cwd, capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert proc.returncode == 0, f"fit {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    ckpt = Path(cwd) / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return torch.load(ckpt, map_location="cpu", weights_only=False)


# steps_per_call 16 (the CLI's default): one process fuses all but each block's last step, two processes run every
# step through the engine (DDP's all-reduce); 1: every step through the engine in both
@pytest.mark.parametrize("precision,dtype,tol,steps_per_call", [
    ("64-true", torch.float64, {"rtol": 1e-12, "atol": 1e-12}, "16"),
    ("32-true", torch.float32, {"rtol": 1e-6, "atol": 1e-6}, "16"),  # float32 sums in another order: ~1e-7
    ("64-true", torch.float64, {"rtol": 1e-12, "atol": 1e-12}, "1"),
])
def test_two_processes_with_half_batches_equal_one_process(tmp_path, precision, dtype, tol, steps_per_call):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = fit(tmp_path / "one", "--trainer.precision", precision, "--model.steps_per_call", steps_per_call)
    two = fit(tmp_path / "two", "--trainer.precision", precision, "--model.steps_per_call", steps_per_call, *DDP)
    assert one["global_step"] == two["global_step"] == 14
    # the batches: each rank saw its contiguous half of the one-process run's global batch, every step
    whole = torch.load(tmp_path / "one" / "rank0.pt")
    halves = [torch.load(tmp_path / "two" / f"rank{r}.pt") for r in range(2)]
    assert len(whole) == len(halves[0]) == len(halves[1]) == 14
    for step, labels in enumerate(whole):
        assert halves[0][step].shape == halves[1][step].shape == (100,)
        assert torch.equal(torch.cat([halves[0][step], halves[1][step]]), labels), f"step {step}: not the halves"
    for name, want in one["state_dict"].items():
        got = two["state_dict"][name]
        assert got.dtype == want.dtype == dtype
        assert_close_report(f"{name} after 14 steps, 2 processes vs 1", got, want, **tol)
