"""GradientVerification: during training, checks the hand-written gradients against torch.autograd.

Usage (configs/digits_verify.yaml turns it on)::

    python -m train fit --config configs/digits_verify.yaml
    python -m train fit --trainer.callbacks+=train.verification_callback.GradientVerification \
        --trainer.callbacks.every_n_steps=10

Every ``every_n_steps`` optimizer steps, in ``on_before_optimizer_step`` — which Lightning calls from ``opt.step()``
in manual optimization, after ``manual_backward`` filled ``param.grad`` and before the update — it recomputes the
gradients of the step's batch (the module's ``last_step.batch``, train/steps.py's LastStep) with torch.autograd
(torch_impl/autograd_twin.py) in float64 from the same parameters. It logs ``verify/max_rel_err`` (max over W1, b1,
W2, b2 of max |grad - autograd| / max |autograd|) to the trainer's loggers at that step (metrics.csv of the CSV
logger; ``history`` keeps (step, error) pairs) and raises GradientVerificationError, which ends the run with a
non-zero exit, when that exceeds ``tolerance``; the bad update is never applied.

Tolerance: float32 training gradients differ from float64 autograd by ~1e-7..1e-5 (rounding, accumulation over
the batch); every mistake in the formulas gives O(1e-2..1). The default 1e-4 sits between; use ~1e-9 with
``trainer.precision: 64-true``. Under DDP ``param.grad`` is the all-reduced mean over ranks while the batch here is
this rank's share, so the check only holds with one process. On a fast step path (fused or graph, fit's default
with ``model.steps_per_call`` K > 1) the callback's ``needs_grads`` makes each block's last step go through the
front door, so only that step sets ``.grad``: it is checked when the steps since the previous check include a
multiple of ``every_n_steps`` (the other steps run the same formulas, proven equal by tests/test_step_paths.py).
"""
import lightning as L
import torch

from torch_impl.autograd_twin import two_layer_loss_and_grads_autograd
from torch_impl.neural_net import PARAM_NAMES
from train.steps import Every


class GradientVerificationError(RuntimeError):
    """The manual gradients disagree with autograd beyond the tolerance."""


class GradientVerification(L.Callback):
    """every_n_steps: check every N optimizer steps (step 0 included); tolerance: max relative error allowed."""

    needs_grads = True  # a fast step path then runs each block's last step through the front door (step_blocks.py)

    def __init__(self, every_n_steps: int = 10, tolerance: float = 1e-4):
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive int, got {every_n_steps!r}")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self._every = Every(every_n_steps)  # crossed(step): a multiple of every_n_steps since the latest hook
        self.history = []  # (global_step, max_rel_err) of every check

    def on_train_start(self, trainer, pl_module):
        self._every.start(trainer.global_step - 1)  # the first step checked may be this one

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        """Check this step's ``.grad`` when the steps since the last hook include a multiple of every_n_steps (every
        step hooks on the front door; on a fast path, each block's last step)."""
        if not self._every.crossed(trainer.global_step):
            return
        X, y = pl_module.last_step.batch  # (B, D), (B,): the batch of the step in flight (train/steps.py)
        net = pl_module.net
        manual = {k: getattr(net, k).grad for k in PARAM_NAMES}
        missing = [k for k, g in manual.items() if g is None]
        if missing:
            raise GradientVerificationError(f"gradient verification at step {trainer.global_step}: no gradient "
                                            f"in {', '.join(missing)} before opt.step() (manual_backward not run?)")
        _, want = two_layer_loss_and_grads_autograd(
            X.double(), y, *(getattr(net, k).detach().double() for k in PARAM_NAMES), pl_module.hparams.reg)
        errs = {}
        for k in PARAM_NAMES:
            diff = (manual[k].double() - want[k]).abs().max()  # max abs error (NaN propagates)
            errs[k] = float(diff / want[k].abs().max().clamp_min(torch.finfo(torch.float64).tiny))
        worst = max(errs, key=lambda k: (errs[k] != errs[k], errs[k]))  # NaN counts as the worst
        self.history.append((trainer.global_step, errs[worst]))
        for logger in trainer.loggers:  # at this very step (self.log would repeat it at later logging steps)
            logger.log_metrics({"verify/max_rel_err": errs[worst]}, step=trainer.global_step)
        if not errs[worst] <= self.tolerance:
            detail = ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
            raise GradientVerificationError(
                f"gradient verification failed at step {trainer.global_step}: the manual gradient of {worst} "
                f"differs from torch.autograd by a max relative error of {errs[worst]:.2e} > tolerance "
                f"{self.tolerance:g} ({detail}). Check the backward formulas (python -m train verify).")
