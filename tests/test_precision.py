"""Lightning precisions with the hand-written gradients: 64-true, 32-true and bf16-mixed train like grad_mode
"autograd" at the matching tolerance; 16-mixed on CUDA goes through the GradScaler (the scaled loss through
manual_backward, the gradients unscaled before the step); on CPU the CLI refuses it (tests/test_bad_inputs_cli.py).

Run: pytest tests/test_precision.py

Tolerances, on the parameters after 10 SGD steps, relative to the largest |parameter|:
- 64-true 1e-12 (measured ~2e-16): the same math in another order.
- 32-true 1e-6 (measured ~1.3e-7): float32 rounding, as for every float32 comparison here.
- bf16-mixed 3e-2 (measured ~1e-2): under autocast both paths run their matrix products in bfloat16 (8 significant
  bits, 2^-8 ~ 4e-3 per product) and the softmax/cross-entropy in float32; TwoLayerLoss keeps autocast on purpose
  (bf16 GEMMs are what bf16-mixed is for) and finishes its backward in the parameters' float32, while autograd
  runs the backward GEMMs in bfloat16. Each is ~1e-2 from the float64 run, so they agree to the same order.
"""
import lightning as L
import pytest
import torch

from tests.helpers import CUDA, assert_close_report
from torch_impl.autograd_twin import two_layer_loss_and_grads_autograd
from train.data import DigitsDataModule
from train.module import TwoLayerNetModule

pytestmark = pytest.mark.lightning

PARAMS = ("W1", "b1", "W2", "b2")


def fit(precision, grad_mode, accelerator="cpu", steps=10, callbacks=()):
    """10 SGD steps on the digits; returns the module."""
    torch.set_num_threads(1)
    model = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=32, std=0.01, learning_rate=0.2, reg=0.01,
                              grad_mode=grad_mode)
    trainer = L.Trainer(max_steps=steps, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=200))
    return model


def assert_params_close(name, got, want, rel):
    """Every parameter within rel * max |want| of want (float64 comparison)."""
    for p in PARAMS:
        a, b = getattr(got.net, p).detach().double().cpu(), getattr(want.net, p).detach().double().cpu()
        assert_close_report(f"{name}: {p}", a, b, rtol=0, atol=rel * float(b.abs().max()))


@pytest.fixture(scope="module")
def float64_run():
    return fit("64-true", "autograd")


@pytest.mark.parametrize("precision,dtype,rel", [
    ("64-true", torch.float64, 1e-12),
    ("32-true", torch.float32, 1e-6),
    ("bf16-mixed", torch.float32, 3e-2),
])
def test_manual_gradients_train_like_autograd(precision, dtype, rel, float64_run):
    manual, autograd = fit(precision, "manual"), fit(precision, "autograd")
    assert manual.net.W1.dtype == dtype
    assert_params_close(f"{precision} manual vs autograd", manual, autograd, rel)
    assert_params_close(f"{precision} manual vs the float64 run", manual, float64_run, rel)


def test_bf16_mixed_really_runs_the_products_in_bfloat16(float64_run):
    """The bf16 comparison above is not float32 in disguise: the run is ~1e-2 away from float64, not ~1e-7."""
    manual = fit("bf16-mixed", "manual")
    gap = (manual.net.W1.detach().double() - float64_run.net.W1).abs().max() / float64_run.net.W1.abs().max()
    assert gap > 1e-4


class UnscaledGradCheck(L.Callback):
    """In on_before_optimizer_step (after the GradScaler's unscale_): the .grads vs float64 autograd."""

    def __init__(self):
        self.batch, self.errors, self.scales = None, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        X, y = self.batch
        net = pl_module.net
        _, want = two_layer_loss_and_grads_autograd(X.double(), y, *(getattr(net, p).detach().double()
                                                                      for p in PARAMS), pl_module.hparams.reg)
        self.scales.append(float(trainer.precision_plugin.scaler.get_scale()))
        self.errors.append(max(float((getattr(net, p).grad.double() - want[p]).abs().max() / want[p].abs().max())
                               for p in PARAMS))


@pytest.mark.cuda
@CUDA
def test_16_mixed_on_cuda_unscales_before_the_step_and_trains_like_autograd(float64_run):
    check = UnscaledGradCheck()
    manual = fit("16-mixed", "manual", accelerator="cuda", callbacks=[check])
    autograd = fit("16-mixed", "autograd", accelerator="cuda")
    assert check.scales and min(check.scales) > 1  # a GradScaler was active (the loss was scaled)
    assert max(check.errors) < 1e-2, check.errors  # unscaled: float16 rounding, not a factor of the scale
    assert_params_close("16-mixed manual vs autograd", manual, autograd, 3e-2)
    assert_params_close("16-mixed manual vs the float64 run", manual, float64_run, 3e-2)
