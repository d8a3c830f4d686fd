"""DivergenceGuard: a learning rate of 1e3 stops the run with one message; the checkpoints on disk stay finite.

Run: ``.venv/bin/python -m pytest tests/test_divergence.py -q``. The module under test is a tiny LightningModule
that follows the contract of train/module.py (TwoLayerNet in ``self.net``, manual optimization,
``TwoLayerLoss.apply`` + ``manual_backward``, ``self.last_step`` (train/steps.py's LastStep) stored before the step).
"""
import math
import os

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from torch_impl.neural_net import TwoLayerLoss, TwoLayerNet
from train.checkpoint_io import AtomicCheckpointIO
from train.divergence import DivergenceGuard, TrainingDiverged
from train.steps import LastStep

pytestmark = pytest.mark.lightning

N, D, H, C, B = 64, 8, 16, 3, 16


class ContractModule(L.LightningModule):
    """Manual SGD on TwoLayerLoss, as the project's TwoLayerNetModule; ``nan_at_step`` poisons one batch."""

    def __init__(self, learning_rate=1e-2, reg=0.25, nan_at_step=None, record_loss=True, overflow_at_step=None):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = TwoLayerNet(D, H, C, std=1e-1, generator=torch.Generator().manual_seed(0))

    def training_step(self, batch, batch_idx):
        X, y = batch  # (B, D), (B,)
        if self.global_step == self.hparams.nan_at_step:
            X = X.clone()
            X[0, 0] = math.nan
        opt = self.optimizers()
        net = self.net
        loss = TwoLayerLoss.apply(X, y, net.W1, net.b1, net.W2, net.b2, self.hparams.reg)
        if self.hparams.record_loss:
            self.last_step = LastStep(loss.detach(), (X, y))  # the contract: the guard reads it before the update
        self.manual_backward(loss)
        opt.step()
        if self.global_step - 1 == self.hparams.overflow_at_step:  # an update that overflowed W1
            with torch.no_grad():
                net.W1[0, 0] = math.inf
        opt.zero_grad()
        return loss.detach()

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=self.hparams.learning_rate)


def loader():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)  # (N, D), (N,)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=B)


def fit(tmp_path, model, **checkpoint_kwargs):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2, save_top_k=-1,
                                 **checkpoint_kwargs)
    trainer = L.Trainer(max_steps=400, accelerator="cpu", plugins=[AtomicCheckpointIO()], logger=False,
                        callbacks=[DivergenceGuard(), checkpoint], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=True)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(model, loader())
    return trainer, str(info.value)


def saved_checkpoints(tmp_path):
    io = AtomicCheckpointIO()
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".ckpt"))
    assert "last.ckpt" in names, names
    return {n: io.load_checkpoint(tmp_path / n) for n in names}


def assert_all_finite(checkpoints, before_step):
    for name, ckpt in checkpoints.items():
        assert ckpt["global_step"] < before_step, (name, ckpt["global_step"], before_step)
        for key, value in ckpt["state_dict"].items():
            assert torch.isfinite(value).all(), (name, key)


def test_learning_rate_1e3_stops_with_one_message_and_keeps_good_checkpoints(tmp_path):
    model = ContractModule(learning_rate=1e3)
    trainer, msg = fit(tmp_path, model)
    step = trainer.global_step
    assert 2 <= step < 400, msg  # it ran a few steps, then stopped
    assert "\n" not in msg
    assert msg.startswith("training diverged at step "), msg
    assert "learning rate 1000" in msg and "lower --model.learning_rate (now 1000), or lower --model.reg (now 0.25)" \
        in msg, msg  # 2 lr reg = 500: the L2 term alone flips and grows W, so reg must come down, not up
    assert "the last good checkpoint " in msg and "last.ckpt is kept" in msg, msg
    checkpoints = saved_checkpoints(tmp_path)
    assert_all_finite(checkpoints, before_step=step)
    net = TwoLayerNet(D, H, C)
    net.load_state_dict({k.removeprefix("net."): v for k, v in checkpoints["last.ckpt"]["state_dict"].items()})
    assert torch.isfinite(net(torch.randn(4, D))).all()


def test_nan_loss_stops_before_the_update(tmp_path):
    model = ContractModule(nan_at_step=5)
    trainer, msg = fit(tmp_path, model)
    assert msg.startswith("training diverged at step 5 (epoch 1): loss nan, gradient norm nan"), msg
    assert "no update was applied" in msg, msg
    assert trainer.global_step == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step was never applied
    assert_all_finite(saved_checkpoints(tmp_path), before_step=5)


def test_update_that_overflows_a_parameter_stops_before_the_next_checkpoint(tmp_path):
    model = ContractModule(overflow_at_step=3)  # step 3 is the last of epoch 0; checkpoints every 2 steps
    trainer, msg = fit(tmp_path, model)
    assert msg.startswith("training diverged at step 3 (epoch 0): loss "), msg
    assert "its update made net.W1 non-finite" in msg, msg
    assert_all_finite(saved_checkpoints(tmp_path), before_step=3)


@pytest.mark.parametrize("reg", [0.25, 0.0])  # the overflow reaches the next loss through reg W*W, or the scores
def test_update_that_overflows_mid_epoch_stops_at_the_next_step_naming_the_overflowing_step(tmp_path, reg):
    model = ContractModule(overflow_at_step=4, reg=reg)  # no checkpoint between step 4 and step 5's check
    trainer, msg = fit(tmp_path, model)
    assert msg.startswith("training diverged at step 4 (epoch 1): loss "), msg
    assert "its update made net.W1 non-finite" in msg and "\n" not in msg, msg
    assert trainer.global_step == 5  # step 5's update never ran
    assert_all_finite(saved_checkpoints(tmp_path), before_step=5)


def test_save_on_exception_cannot_save_the_diverged_state(tmp_path):
    trainer, msg = fit(tmp_path, ContractModule(learning_rate=1e3), save_on_exception=True)
    assert msg.startswith("training diverged at step "), msg
    assert_all_finite(saved_checkpoints(tmp_path), before_step=trainer.global_step)


def test_guard_without_last_step_checks_gradients(tmp_path):
    trainer, msg = fit(tmp_path, ContractModule(nan_at_step=3, record_loss=False))
    assert msg.startswith("training diverged at step 3 (epoch 0): loss not recorded, gradient norm nan"), msg
    assert_all_finite(saved_checkpoints(tmp_path), before_step=3)


def test_sync_every_n_steps_is_validated():
    with pytest.raises(ValueError, match="^sync_every_n_steps: got 0"):
        DivergenceGuard(sync_every_n_steps=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_deferred_check_names_the_first_bad_step(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=7, save_top_k=-1)
    trainer = L.Trainer(max_steps=400, accelerator="cuda", devices=1, plugins=[AtomicCheckpointIO()], logger=False,
                        callbacks=[DivergenceGuard(sync_every_n_steps=10), checkpoint], enable_progress_bar=False,
                        enable_model_summary=False)
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(ContractModule(nan_at_step=13), loader())
    msg = str(info.value)
    assert msg.startswith("training diverged at step 13 (epoch "), msg
    assert "detected at step " in msg and "learning rate 0.01" in msg, msg
    assert_all_finite(saved_checkpoints(tmp_path), before_step=13)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_per_step_check_does_not_sync():
    from types import SimpleNamespace

    net = TwoLayerNet(D, H, C, device="cuda")
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    module = SimpleNamespace(last_step=LastStep(torch.tensor(1.0, device="cuda")), hparams={})
    trainer = SimpleNamespace(precision_plugin=None, global_step=0, world_size=1, current_epoch=0)
    guard = DivergenceGuard(sync_every_n_steps=1000)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync raises
    try:
        for step in range(3):
            trainer.global_step = step
            guard.on_before_optimizer_step(trainer, module, opt)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    module.last_step = LastStep(torch.tensor(math.inf, device="cuda"))
    trainer.global_step = 3
    guard.on_before_optimizer_step(trainer, module, opt)
    with pytest.raises(TrainingDiverged, match="^training diverged at step 3 .*loss inf"):
        guard.check_pending(trainer, module)


@pytest.mark.parametrize("start, block, want", [
    (0, 1, [9, 19, 29, 39]),  # one step per hook: exactly the multiples of 10, as before
    (0, 3, [11, 20, 29]),  # K = 3 (eager blocks: the hook sees steps 2, 5, 8, ...): 10 and 20 are never seen
    (0, 16, [15, 31]),  # blocks longer than the sync interval: one read per crossing block
    (7, 3, [9, 21, 30, 39]),  # resumed at step 7 (hooks at 9, 12, ...): the count starts at the resumed step
])
def test_deferred_check_fires_whenever_the_step_count_crosses_a_multiple(monkeypatch, start, block, want):
    """The accelerator path of on_before_optimizer_step (parameters on the meta device: no CPU branch, no data),
    with the host read stubbed: it happens at the first hook whose step count passes a multiple of 10."""
    from types import SimpleNamespace

    net = TwoLayerNet(D, H, C, device="meta")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    module = SimpleNamespace(last_step=LastStep(torch.tensor(1.0, device="meta")), hparams={})
    trainer = SimpleNamespace(precision_plugin=None, global_step=start, world_size=1, current_epoch=0)
    guard = DivergenceGuard(sync_every_n_steps=10)
    reads = []
    monkeypatch.setattr(guard, "check_pending", lambda trainer, module: reads.append(trainer.global_step))
    guard.on_train_start(trainer, module)
    for step in range(start + block - 1, 40, block):
        trainer.global_step = step
        guard.on_before_optimizer_step(trainer, module, opt)
    assert reads == want
