"""Trajectory equivalence: the NumPy reference's TwoLayerNet.train and the Lightning module trained by
Trainer.fit take the same steps.

From identical initial parameters and the identical batch-index sequence (train.batches.batch_indices, fed to the
reference through its ``sample_indices`` hook), in float64 (precision "64-true") with cs231n's lr schedule, the
loss of every step and the final parameters agree to rel 1e-9 over 300 steps and 30 lr decays, both with one
front-door step per training_step and with the 16-step blocks ``python -m train fit`` runs by default (the fused
step path); grad_mode "manual" and "autograd" agree likewise. Run: pytest tests/test_trajectory.py
"""
import math

import lightning as L
import numpy as np
import pytest
import torch

from reference_numpy.neural_net import TwoLayerNet as NumpyTwoLayerNet
from tests.helpers import CUDA, assert_close_report
from train.batches import batch_indices
from train.data import ArrayDataModule, ArraySplits
from train.module import TwoLayerNetModule
from train.step_blocks import StepBlock

pytestmark = [pytest.mark.lightning, pytest.mark.equivalence]

N, D, C, H, B = 1000, 20, 5, 30, 100  # N / B = 10.0: cs231n decays after steps 0, 10, 20, ...
STEPS = 300
HP = {"hidden_size": H, "std": 0.1, "reg": 1e-3, "learning_rate": 0.05, "learning_rate_decay": 0.95}
TOL = {"rtol": 1e-9, "atol": 1e-12}


class TeacherDataModule(ArrayDataModule):
    """N x D Gaussian features labelled by a random linear teacher (learnable, so the trajectory moves)."""

    def load(self):
        g = torch.Generator().manual_seed(1)
        X = torch.randn(N + 200, D, generator=g)  # (N + 200, D)
        y = (X @ torch.randn(D, C, generator=g)).argmax(dim=1)  # (N + 200,)
        return ArraySplits(X[:N], y[:N], X[N:], y[N:])


class StepRecorder(L.Callback):
    """The loss of every training step, the dtype of every batch, the devices of batch and parameters."""

    def __init__(self):
        self.losses, self.dtypes, self.devices = [], set(), set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses += outputs["step_losses"].tolist()  # every SGD step of the training_step
        X = batch.X if isinstance(batch, StepBlock) else batch[0]
        self.dtypes.add(X.dtype)
        self.devices.add((X.device.type, pl_module.net.W1.device.type))


def fit_lightning(grad_mode, accelerator="cpu", steps_per_call=1):
    """Trainer.fit in float64 on ``accelerator`` with ``steps_per_call`` SGD steps per training_step.

    Returns (initial params, final params as NumPy, per-step losses, module, recorder).
    """
    dm = TeacherDataModule(batch_size=B, seed=7)
    model = TwoLayerNetModule(input_size=D, num_classes=C, lr_schedule="cs231n", grad_mode=grad_mode, init_seed=3,
                              steps_per_call=steps_per_call, **HP)
    params0 = model.net.to_numpy()  # float32 draws, exactly representable in float64
    recorder = StepRecorder()
    trainer = L.Trainer(max_steps=STEPS, precision="64-true", accelerator=accelerator, devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(model, datamodule=dm)
    return params0, model.net.to_numpy(), np.array(recorder.losses), model, recorder


def train_reference(params0):
    """The reference's own train loop on the same data and batch sequence; returns (final params, losses)."""
    s = TeacherDataModule().splits
    X, y = s.X_train.double().numpy(), s.y_train.numpy()
    X_val, y_val = s.X_val.double().numpy(), s.y_val.numpy()
    steps_per_epoch = math.ceil(N / B)
    net = NumpyTwoLayerNet(D, H, C)
    net.params = {k: v.copy() for k, v in params0.items()}
    sample = lambda it: batch_indices(7, it // steps_per_epoch, it % steps_per_epoch, N, B).numpy()
    stats = net.train(X, y, X_val, y_val, learning_rate=HP["learning_rate"],
                      learning_rate_decay=HP["learning_rate_decay"], reg=HP["reg"], num_iters=STEPS,
                      batch_size=B, sample_indices=sample)
    return net.params, np.array(stats["loss_history"])


@pytest.fixture(scope="module", params=[1, 16], ids=["front door", "fused, 16 steps per call"])
def manual_run(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GEMMs: one thread is fastest, and immune to a busy machine
    try:
        yield fit_lightning("manual", steps_per_call=request.param)
    finally:
        torch.set_num_threads(threads)


def test_lightning_fit_follows_the_numpy_reference_step_by_step(manual_run):
    params0, params, losses, model, recorder = manual_run
    assert model.step_path == ("front door" if model.hparams.steps_per_call == 1 else "fused")
    ref_params, ref_losses = train_reference(params0)
    assert recorder.dtypes == {torch.float64}
    assert all(p.dtype == torch.float64 for p in model.net.parameters())
    assert len(losses) == STEPS
    assert ref_losses[-1] < 0.8 * ref_losses[0], "the trajectory should move (the test would be vacuous)"
    assert_close_report("loss history", losses, ref_losses, **TOL)
    for name in ("W1", "b1", "W2", "b2"):
        assert not np.allclose(params[name], params0[name]), f"{name} never changed"
        assert_close_report(name, params[name], ref_params[name], **TOL)
    # cs231n's schedule decayed after steps 0, 10, ..., 290: 30 times
    lr = model.optimizers().param_groups[0]["lr"]
    assert_close_report("final lr", lr, HP["learning_rate"] * HP["learning_rate_decay"] ** 30, rtol=1e-12, atol=0)


def test_manual_and_autograd_grad_modes_take_the_same_steps(manual_run):
    params0, params, losses, model, _ = manual_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a_params0, a_params, a_losses, _, _ = fit_lightning("autograd", steps_per_call=model.hparams.steps_per_call)
    finally:
        torch.set_num_threads(threads)
    for name in params0:
        assert_close_report(f"initial {name}", a_params0[name], params0[name], rtol=0, atol=0)
    assert_close_report("loss history (autograd vs manual)", a_losses, losses, **TOL)
    for name in ("W1", "b1", "W2", "b2"):
        assert_close_report(f"{name} (autograd vs manual)", a_params[name], params[name], **TOL)


@pytest.mark.cuda
@CUDA
def test_lightning_fit_on_cuda_follows_the_numpy_reference():
    """The same trajectory with the data and the parameters on the GPU (cuBLAS float64: equal up to rounding)."""
    params0, params, losses, model, recorder = fit_lightning("manual", accelerator="gpu")
    assert recorder.devices == {("cuda", "cuda")}  # during fit (Lightning moves the module back to the CPU after)
    ref_params, ref_losses = train_reference(params0)
    assert_close_report("loss history (cuda)", losses, ref_losses, **TOL)
    for name in ("W1", "b1", "W2", "b2"):
        assert_close_report(f"{name} (cuda)", params[name], ref_params[name], **TOL)
