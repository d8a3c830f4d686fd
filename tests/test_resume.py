"""Crash-safe exact resume through ``python -m train fit``: SIGKILL a run at several points (mid-epoch included),
``--ckpt_path last`` continues it, and the final parameters, optimizer state and counters equal an uninterrupted
run's bit for bit on CPU; a truncated last.ckpt is named and the other checkpoint still resumes.

Run: pytest tests/test_resume.py   (marked slow: every subprocess imports Lightning, ~5 s each)

The kill points are made deterministic by PauseAtStep, a callback that stops the run at the start of a given step
(after the checkpoints of the steps before it) and waits to be killed; the kill itself is a real SIGKILL.
"""
import io
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tests.helpers import assert_close_report
from train.batches import WithReplacementBatches
from train.cli import run_cli
from train.module import TwoLayerNetModule

pytestmark = [pytest.mark.lightning, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")
# smoke: digits, 7 steps per epoch, 3 epochs = 21 steps; momentum so that the optimizer state matters;
# last.ckpt every 2 steps and at every epoch end; one SGD step per training_step unless a test adds K3
RUN = ["fit", "--config", SMOKE, "--model.momentum", "0.5", "--step_checkpoint.every_n_train_steps", "2",
       "--plots.enabled", "false", "--model.steps_per_call", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""}


class PauseAtStep(L.Callback):
    """At the start of optimizer step ``step``: write ``marker`` (the folder's ``paused_at_<step>``) and sleep."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            Path(f"paused_at_{self.step}").write_text(str(os.getpid()))
            time.sleep(600)


def start(cwd, *args):
    return subprocess.Popen([sys.executable, "-m", "train", *RUN, *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"fit failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    return err


def kill_at(cwd, step, *args):
    """Start fit (args added), wait until it pauses at ``step``, SIGKILL it."""
    proc = start(cwd, "--trainer.callbacks+=tests.test_resume.PauseAtStep", "--trainer.callbacks.step", str(step),
                 *args)
    marker = Path(cwd) / f"paused_at_{step}"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, f"fit ended before step {step}:\n{proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"fit never reached step {step}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return proc


def last_ckpt(cwd):
    """The newest last.ckpt of all the runs in cwd."""
    found = sorted(Path(cwd).glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    assert found, f"no last.ckpt under {cwd}"
    return found[-1]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_bit_identical(got, want):
    """Parameters, SGD momentum buffers, lr scheduler and counters of two checkpoint dicts, exactly."""
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"])
    assert set(got["state_dict"]) == set(want["state_dict"])
    for key, tensor in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], tensor), f"{key} differs after resuming"
    for (i, a), b in zip(got["optimizer_states"][0]["state"].items(), want["optimizer_states"][0]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"]), f"momentum buffer {i} differs"
    assert got["optimizer_states"][0]["param_groups"][0]["lr"] == want["optimizer_states"][0]["param_groups"][0]["lr"]
    assert got["lr_schedulers"][0]["last_epoch"] == want["lr_schedulers"][0]["last_epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run: its final last.ckpt as a dict, and its folder."""
    cwd = tmp_path_factory.mktemp("straight")
    finish(start(cwd))
    return load(last_ckpt(cwd)), cwd


def test_killed_three_times_mid_epoch_resumes_bit_identical(straight, tmp_path):
    """Kills at steps 5 (epoch 0, last.ckpt of step 4), 11 (epoch 1, step 10) and 15 (epoch 2, right after the
    epoch-end checkpoint of step 14 with its validation); each resume continues from the newest last.ckpt."""
    want, _ = straight
    kill_at(tmp_path, 5)
    assert load(last_ckpt(tmp_path))["global_step"] == 4
    kill_at(tmp_path, 11, "--ckpt_path", "last")
    ckpt = load(last_ckpt(tmp_path))
    assert ckpt["global_step"] == 10 and ckpt["epoch"] == 1
    assert "rng_states" in ckpt and ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0] == \
        {"epoch": 1, "next_batch": 3, "seed": 0}  # the sampler: epoch 1 continues at its batch 3 (step 10)
    kill_at(tmp_path, 15, "--ckpt_path", "last")
    assert load(last_ckpt(tmp_path))["global_step"] == 14
    err = finish(start(tmp_path, "--ckpt_path", "last"))
    assert "--ckpt_path last: resuming from" in err
    assert_bit_identical(load(last_ckpt(tmp_path)), want)


def test_kill_at_a_random_moment_then_resume_is_bit_identical(straight, tmp_path):
    """No pause: SIGKILL as soon as the first last.ckpt appears (wherever the run is by then, even finished)."""
    want, _ = straight
    proc = start(tmp_path)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert load(last_ckpt(tmp_path))["global_step"] >= 1  # whatever moment the kill hit, last.ckpt is whole
    finish(start(tmp_path, "--ckpt_path", "last"))
    assert_bit_identical(load(last_ckpt(tmp_path)), want)


def test_a_damaged_last_checkpoint_is_refused_by_name_and_passed_over_by_last(straight, tmp_path, monkeypatch,
                                                                              capsys):
    """A torn last.ckpt given by name: one error line naming it and the intact checkpoint beside it, exit 2.
    ``--ckpt_path last``: the newest intact checkpoint of the run (the best one), said on stderr."""
    _, done = straight
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    for ckpt in (done / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"):
        (folder / ckpt.name).write_bytes(ckpt.read_bytes())
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn copy, as a non-atomic writer leaves
    best = sorted(folder.glob("best-*.ckpt"))
    assert len(best) == 1
    monkeypatch.chdir(tmp_path)
    assert run_cli([*RUN, "--trainer.max_epochs", "4", "--ckpt_path", str(last)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: checkpoint") and str(last) in err and "unreadable" in err
    assert best[0].name in err  # the message points at the intact checkpoint
    assert run_cli([*RUN, "--trainer.max_epochs", "4", "--ckpt_path", "last"]) == 0
    err = capsys.readouterr().err
    assert f"{last} is damaged" in err and f"using the newest intact checkpoint of its run, {best[0]}" in err
    resumed = load(last_ckpt(tmp_path))
    assert resumed["global_step"] == 28 and torch.isfinite(resumed["state_dict"]["net.W1"]).all()


def test_checkpoints_carry_the_rng_states_and_restore_them():
    """TwoLayerNetModule adds torch/numpy/random states (tensors and ints: torch.load(weights_only=True) reads them)."""
    model, checkpoint = TwoLayerNetModule(input_size=4, num_classes=3), {}
    model.on_save_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    first = (torch.rand(3), np.random.rand(3), random.random())
    model.on_load_checkpoint(restored)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


def test_last_ckpt_is_the_final_state_even_when_val_acc_did_not_improve(tmp_path, monkeypatch):
    """Lightning 2.6 rewrites last.ckpt at an epoch end only together with a top-k save; LastCheckpoint does it
    always, so last.ckpt holds the final step although the best val/acc came earlier."""
    monkeypatch.chdir(tmp_path)
    # a learning rate so high that val/acc peaks early (epoch 0 here) and then drops: the best is not the last
    assert run_cli(["fit", "--config", SMOKE, "--model.learning_rate", "0.8", "--plots.enabled", "false",
                    "--trainer.max_epochs", "4", "--step_checkpoint.every_n_train_steps", "1000"]) in (0, None)
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["global_step"] == 28 and last["epoch"] == 3
    best = [torch.load(p, weights_only=False)["global_step"] for p in folder.glob("best-*.ckpt")]
    assert best and max(best) < 28, "the scenario needs a best checkpoint before the last step"


# Step blocks (--model.steps_per_call 3): blocks of 3, 3, 1 batches per epoch, so trainer.global_step after each
# block is 3, 6, 7 | 10, 13, 14 | 17, 20, 21; last.ckpt after each block that reached or crossed a multiple of 2
# (3, 6, 10, 13, 17, 20) and at every epoch end
K3 = ["--model.steps_per_call", "3"]


@pytest.fixture(scope="module")
def straight_blocks(tmp_path_factory):
    """The uninterrupted run with 3 SGD steps per training_step: its final last.ckpt as a dict."""
    cwd = tmp_path_factory.mktemp("straight_blocks")
    finish(start(cwd, *K3))
    return load(last_ckpt(cwd))


def sampler_state(ckpt):
    return ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


def test_step_blocks_killed_mid_epoch_resume_bit_identical(straight_blocks, straight, tmp_path):
    """Kills at the start of the blocks at steps 10 (last.ckpt of step 10: epoch 1, batch 3) and 20 (resumed from
    10; last.ckpt of step 20: epoch 2, batch 6); the resumed block run equals the straight block run bit for bit
    and the one-step run to float32 rounding (a block fuses its first steps' updates into the GEMMs)."""
    kill_at(tmp_path, 10, *K3)
    ckpt = load(last_ckpt(tmp_path))
    assert ckpt["global_step"] == 10 and sampler_state(ckpt) == {"epoch": 1, "next_batch": 3, "seed": 0}
    kill_at(tmp_path, 20, *K3, "--ckpt_path", "last")
    ckpt = load(last_ckpt(tmp_path))
    assert ckpt["global_step"] == 20 and sampler_state(ckpt) == {"epoch": 2, "next_batch": 6, "seed": 0}
    finish(start(tmp_path, *K3, "--ckpt_path", "last"))
    assert_bit_identical(load(last_ckpt(tmp_path)), straight_blocks)
    for key, want in straight[0]["state_dict"].items():  # K steps per call: the same SGD steps
        assert_close_report(key, load(last_ckpt(tmp_path))["state_dict"][key], want, rtol=1e-5, atol=1e-6)


def test_step_blocks_cut_at_max_steps_resume_after_the_last_step_taken(straight_blocks, tmp_path):
    """max_steps 11 cuts the block of epoch 1's batches 3-5 after one step, max_steps 19 the block of epoch 2's
    batches 3-5 after two; the sampler state counts the steps taken (batch 4, then 5), not the blocks handed out
    (batch 6 both times, which skipped 2 and 1 batches), and the final run equals the uninterrupted one.

    last.ckpt every step, so it is written at the cut step's batch end: one written only when fit stops there
    (Lightning's on_train_epoch_end after max_steps) marks the epoch as processed, and Lightning (K = 1 as well)
    then resumes one epoch short."""
    every_step = [*K3, "--step_checkpoint.every_n_train_steps", "1"]
    finish(start(tmp_path, *every_step, "--trainer.max_steps", "11"))
    ckpt = load(last_ckpt(tmp_path))
    assert ckpt["global_step"] == 11 and sampler_state(ckpt) == {"epoch": 1, "next_batch": 4, "seed": 0}
    finish(start(tmp_path, *every_step, "--trainer.max_steps", "19", "--ckpt_path", "last"))
    ckpt = load(last_ckpt(tmp_path))
    assert ckpt["global_step"] == 19 and sampler_state(ckpt) == {"epoch": 2, "next_batch": 5, "seed": 0}
    finish(start(tmp_path, *every_step, "--ckpt_path", "last"))
    assert_bit_identical(load(last_ckpt(tmp_path)), straight_blocks)


def blocks_from(start, num_batches=7, K=3):
    """(first, count) of each block WithReplacementBatches yields when an epoch resumes at batch ``start``."""
    sampler = WithReplacementBatches(torch.zeros(num_batches, 1), torch.zeros(num_batches, dtype=torch.int64), 1,
                                     seed=0, block_size=K)
    sampler.load_state_dict({"epoch": 0, "next_batch": start, "seed": 0})
    return [(b.first, b.count) for b in sampler]


def test_a_resume_inside_a_block_runs_its_rest_with_the_next_block():
    """Lightning counts ceil(ceil(N / B) / K) blocks per epoch, the cut block among the done ones: the rest of a cut
    block joins the next block, so the resumed epoch hands out exactly the blocks Lightning still expects."""
    assert blocks_from(0) == [(0, 3), (3, 3), (6, 1)]
    assert blocks_from(3) == [(3, 3), (6, 1)]  # a whole block done: the usual layout
    assert blocks_from(1) == [(1, 5), (6, 1)]  # batches 1, 2 of the cut block with the block of 3, 4, 5
    assert blocks_from(4) == [(4, 3)]
    assert blocks_from(5, num_batches=9) == [(5, 4)]


def test_a_resume_inside_an_epochs_last_block_warns_that_the_rest_is_skipped():
    with pytest.warns(UserWarning, match=r"resuming epoch 0 at batch 4, inside its last step block .* batches 4\.\.5"):
        blocks_from(4, num_batches=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks_from(4, num_batches=7)  # batch 6 is a block of its own: nothing is skipped
        blocks_from(3, num_batches=6)
