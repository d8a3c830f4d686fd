"""Exact resume in every precision, and no float64 run silently passing through float32.

``python -m train fit`` with the default config (configs/digits.yaml, fused step blocks of 16) is stopped (gracefully,
or by a real SIGKILL) and resumed with ``--ckpt_path last``; its final last.ckpt equals an uninterrupted run's bit for
bit (torch.equal): parameters, momentum buffers, lr, scheduler and counters. Cases: 64-true and 32-true, the fused
default and ``--model.steps_per_call 1`` (every step through the optimizer), momentum, both lr schedules, a kill
mid-epoch. Then a 64-true checkpoint keeps every bit through ``export`` (.npz), ``TwoLayerNet.from_npz``,
``load_from_checkpoint``, ``validate``/``test`` and the loss plot's history.

Run: pytest tests/test_resume_precision.py   (marked slow: ~10 short digits fits of 4 epochs = 28 steps)

The fits run in this process through the CLI's own entry point (train.cli.build_cli, what ``python -m train``
calls); the ones that are killed run as ``python -m train`` subprocesses, paused by PauseAtStep at the start of a
given step (after the checkpoints of the steps before it) and then sent SIGKILL.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train.callbacks
from reference_numpy.neural_net import TwoLayerNet as NumpyNet
from tests.helpers import assert_close_report
from torch_impl.neural_net import TwoLayerNet as TorchNet
from train.callbacks import TrainingPlots
from train.cli import build_cli
from train.data import DigitsDataModule
from train.export_cmd import main as export_main
from train.module import TwoLayerNetModule

pytestmark = [pytest.mark.lightning, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning"),  # argv is pytest's
              pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")]  # a resume logs anew

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 4  # digits: 7 steps per epoch (one fused block of 7), 28 steps
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# the fused default with its epoch-end checkpoints; momentum makes the optimizer state matter
FUSED_64 = ["--trainer.precision", "64-true", "--model.momentum", "0.9"]
# every step through the optimizer, the article's cs231n lr schedule, last.ckpt every 3 steps (mid-epoch too)
STEPWISE_64 = ["--trainer.precision", "64-true", "--model.steps_per_call", "1", "--model.lr_schedule", "cs231n",
               "--model.momentum", "0.5", "--step_checkpoint.every_n_train_steps", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""}


def fit(cwd, *args, epochs=EPOCHS, plots=False):
    """``python -m train fit`` (the default config) in cwd, in this process; returns the LightningCLI."""
    threads = torch.get_num_threads()  # the config sets 1; the other tests keep theirs
    Path(cwd).mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        try:
            return build_cli(["fit", "--trainer.max_epochs", str(epochs), "--plots.enabled", str(plots).lower(),
                              *QUIET, *args])
        finally:
            torch.set_num_threads(threads)


def kill_at(cwd, step, *args):
    """``python -m train fit`` in a subprocess, SIGKILLed at the start of ``step``; returns the last.ckpt dict."""
    proc = subprocess.Popen([sys.executable, "-m", "train", "fit", "--trainer.max_epochs", str(EPOCHS),
                             "--plots.enabled", "false", *QUIET, *args,
                             "--trainer.callbacks+=tests.test_resume.PauseAtStep",
                             "--trainer.callbacks.step", str(step)],
                            cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker, deadline = Path(cwd) / f"paused_at_{step}", time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, f"fit ended before step {step}:\n{proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"fit never reached step {step}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return load(last_ckpt(cwd))


def last_ckpt(cwd):
    """The newest last.ckpt of all the runs in cwd."""
    found = sorted(Path(cwd).glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    assert found, f"no last.ckpt under {cwd}"
    return found[-1]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_bit_identical(got, want, dtype):
    """Counters, parameters (all of ``dtype``), momentum buffers, lr and scheduler of two checkpoints, exactly."""
    assert (got["global_step"], got["epoch"]) == (want["global_step"], want["epoch"]) == (7 * EPOCHS, EPOCHS - 1)
    assert set(got["state_dict"]) == set(want["state_dict"])
    for key, tensor in want["state_dict"].items():
        if key.startswith("net."):
            assert tensor.dtype == got["state_dict"][key].dtype == dtype, key
        assert torch.equal(got["state_dict"][key], tensor), \
            f"{key} differs after resuming by {(got['state_dict'][key] - tensor).abs().max().item():.3e}"
    got_opt, want_opt = got["optimizer_states"][0], want["optimizer_states"][0]
    assert got_opt["state"].keys() == want_opt["state"].keys()
    for i, state in want_opt["state"].items():
        buffer = state.get("momentum_buffer")
        assert (buffer is None) == (got_opt["state"][i].get("momentum_buffer") is None)
        if buffer is not None:
            assert torch.equal(got_opt["state"][i]["momentum_buffer"], buffer), f"momentum buffer {i} differs"
    assert got_opt["param_groups"][0]["lr"] == want_opt["param_groups"][0]["lr"]
    assert got["lr_schedulers"][0]["last_epoch"] == want["lr_schedulers"][0]["last_epoch"]


@pytest.fixture(scope="module")
def straight_64(tmp_path_factory):
    """The uninterrupted fused 64-true run (plots on): its folder, last.ckpt dict and LightningCLI."""
    cwd = tmp_path_factory.mktemp("straight_64")
    cli = fit(cwd, *FUSED_64, plots=True)
    return cwd, load(last_ckpt(cwd)), cli


@pytest.mark.parametrize("precision", ["64-true", "32-true"])
def test_graceful_stop_then_resume_is_bit_identical(precision, straight_64, tmp_path):
    """Stop after 2 of 4 epochs, then ``--max_epochs 4 --ckpt_path last`` (fused blocks), against a straight fit."""
    args = [*FUSED_64[2:], "--trainer.precision", precision]
    if precision == "64-true":
        want = straight_64[1]
    else:
        fit(tmp_path / "straight", *args)
        want = load(last_ckpt(tmp_path / "straight"))
    fit(tmp_path / "resumed", *args, epochs=2)
    assert load(last_ckpt(tmp_path / "resumed"))["global_step"] == 14
    fit(tmp_path / "resumed", *args, "--ckpt_path", "last")
    dtype = {"64-true": torch.float64, "32-true": torch.float32}[precision]
    assert_bit_identical(load(last_ckpt(tmp_path / "resumed")), want, dtype)


def test_sigkill_between_fused_blocks_then_resume_is_bit_identical(straight_64, tmp_path):
    """SIGKILL at the start of step 14's block (last.ckpt: the epoch-end checkpoint of step 14)."""
    assert kill_at(tmp_path, 14, *FUSED_64)["global_step"] == 14
    fit(tmp_path, *FUSED_64, "--ckpt_path", "last")
    assert_bit_identical(load(last_ckpt(tmp_path)), straight_64[1], torch.float64)


def test_sigkill_mid_epoch_one_step_per_call_then_resume_is_bit_identical(tmp_path):
    """Steps one by one, cs231n schedule: SIGKILL at step 11, mid-epoch 1 (last.ckpt: step 9, its batch 2)."""
    fit(tmp_path / "straight", *STEPWISE_64)
    (tmp_path / "resumed").mkdir()
    ckpt = kill_at(tmp_path / "resumed", 11, *STEPWISE_64)
    assert (ckpt["global_step"], ckpt["epoch"]) == (9, 1)
    fit(tmp_path / "resumed", *STEPWISE_64, "--ckpt_path", "last")
    assert_bit_identical(load(last_ckpt(tmp_path / "resumed")), load(last_ckpt(tmp_path / "straight")),
                         torch.float64)


def test_export_and_from_npz_keep_every_bit_of_a_64_true_checkpoint(straight_64, tmp_path):
    """python -m train export -> .npz -> NumPy's load_params and torch's TwoLayerNet.from_npz: the same float64s."""
    cwd, ckpt, _ = straight_64
    path = last_ckpt(cwd)
    assert export_main(["--ckpt_path", str(path), "--out", str(tmp_path / "net.npz")]) == 0
    numpy_net = NumpyNet(1, 1, 1).load_params(tmp_path / "net.npz")
    torch_net = TorchNet.from_npz(tmp_path / "net.npz")
    for name in ("W1", "b1", "W2", "b2"):
        saved = ckpt["state_dict"][f"net.{name}"]
        assert saved.dtype == torch.float64
        assert torch.equal(torch.from_numpy(numpy_net.params[name]), saved), f"NumPy {name}"
        assert torch.equal(getattr(torch_net, name).detach(), saved), f"from_npz {name}"


def test_load_from_checkpoint_keeps_the_checkpoint_dtype(straight_64):
    cwd, ckpt, _ = straight_64
    model = TwoLayerNetModule.load_from_checkpoint(last_ckpt(cwd), map_location="cpu")
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(model.net, name).detach(), ckpt["state_dict"][f"net.{name}"]), name


def test_loss_history_plot_keeps_the_float64_losses(straight_64, monkeypatch, tmp_path):
    """The loss plot draws the run's float64 losses as they are (not rounded to float32)."""
    cwd, _, cli = straight_64
    plots = next(c for c in cli.trainer.callbacks if isinstance(c, TrainingPlots))
    losses = torch.cat(plots.losses)  # (28,)
    assert losses.dtype == torch.float64 and losses.numel() == 7 * EPOCHS
    assert not torch.equal(losses.float().double(), losses)  # float32 would have rounded them
    figures = []
    new_figure = train.callbacks.new_figure
    monkeypatch.setattr(train.callbacks, "new_figure", lambda *a, **k: figures.append(new_figure(*a, **k)) or
                        figures[-1])
    plots.plot_loss(tmp_path / "loss_history.png")
    drawn = figures[0][1].lines[0].get_ydata()
    assert drawn.dtype == np.float64 and np.array_equal(drawn, losses.numpy())


def evaluate(cwd, subcommand, ckpt_path, *args):
    """``python -m train validate|test --ckpt_path CKPT`` in cwd, in this process; returns its callback_metrics."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        try:
            return build_cli([subcommand, "--ckpt_path", str(ckpt_path), *QUIET, *args]).trainer.callback_metrics
        finally:
            torch.set_num_threads(threads)


def float64_loss(state, X, y, reg):
    """The module's evaluation loss (cross-entropy + reg (||W1||^2 + ||W2||^2)) from a state_dict, in float64."""
    W1, b1, W2, b2 = (state[f"net.{name}"] for name in ("W1", "b1", "W2", "b2"))
    scores = torch.clamp_min(X @ W1 + b1, 0) @ W2 + b2  # (n, C)
    return torch.nn.functional.cross_entropy(scores, y) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))


@pytest.mark.parametrize("subcommand,split", [("validate", "val"), ("test", "test")])
def test_validate_and_test_in_64_true_evaluate_the_checkpoint_in_float64(subcommand, split, straight_64, tmp_path):
    """The logged loss equals the float64 loss of the saved parameters (float32 parameters would be ~1e-8 off)."""
    cwd, ckpt, _ = straight_64
    metrics = evaluate(tmp_path, subcommand, last_ckpt(cwd), "--trainer.precision", "64-true")
    splits = DigitsDataModule().splits
    X, y = getattr(splits, f"X_{split}").double(), getattr(splits, f"y_{split}")
    want = float64_loss(ckpt["state_dict"], X, y, ckpt["hyper_parameters"]["reg"])
    assert_close_report(f"{split}/loss", metrics[f"{split}/loss"], want, rtol=1e-14, atol=0)


def test_a_64_true_checkpoint_validated_in_32_true_warns_that_it_is_rounded(straight_64, tmp_path):
    cwd, _, _ = straight_64
    with pytest.warns(UserWarning, match=r"float64 but trainer.precision 32-true runs in torch.float32"):
        evaluate(tmp_path, "validate", last_ckpt(cwd), "--trainer.precision", "32-true")


def test_a_64_true_checkpoint_is_validated_in_its_own_precision_by_default(straight_64, tmp_path):
    """The run's precision comes with its checkpoint: without --trainer.precision, validate runs in 64-true."""
    cwd, ckpt, _ = straight_64
    metrics = evaluate(tmp_path, "validate", last_ckpt(cwd))
    splits = DigitsDataModule().splits
    want = float64_loss(ckpt["state_dict"], splits.X_val.double(), splits.y_val, ckpt["hyper_parameters"]["reg"])
    assert_close_report("val/loss", metrics["val/loss"], want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("precision, dtype", [("64-true", torch.float64), ("32-true", torch.float32)])
def test_the_data_reaches_the_run_in_its_dtype_from_float64_preprocessing(precision, dtype):
    """The digits are preprocessed in float64 and cast once, in setup, to the run's dtype: a 64-true run trains
    on the float64 mean-subtracted features, not on features first rounded to float32."""
    from types import SimpleNamespace

    from sklearn.datasets import load_digits

    dm = DigitsDataModule()
    dm.trainer = SimpleNamespace(precision=precision, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup("fit")
    X_train = dm._device_splits.X_train
    order = np.random.default_rng(0).permutation(1797)
    rows = load_digits().data[order[:1797 - 250 - 250]]  # (1297, 64) float64, the train split
    expected = rows - rows.mean(axis=0, keepdims=True)  # the mean image subtracted in float64
    assert X_train.dtype == dtype
    assert_close_report("X_train", X_train, torch.from_numpy(expected).to(dtype), rtol=1e-13, atol=1e-13)
