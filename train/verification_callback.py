"""GradientVerification: during training, checks the hand-written gradients against torch.autograd.

Usage (configs/digits_verify.yaml turns it on)::

    python -m train fit --config configs/digits_verify.yaml
    python -m train fit --trainer.callbacks+=train.verification_callback.GradientVerification \
        --trainer.callbacks.every_n_steps=10

Every ``every_n_steps`` optimizer steps it takes the step's batch (captured in ``on_train_batch_start``) and, in
``on_before_optimizer_step`` — which Lightning calls from ``opt.step()`` in manual optimization, after
``manual_backward`` filled ``param.grad`` and before the update — recomputes the gradients with torch.autograd
(torch_impl/autograd_twin.py) in float64 from the same parameters. It logs ``verify/max_rel_err`` (max over W1, b1,
W2, b2 of max |grad - autograd| / max |autograd|) to the trainer's loggers at that step (metrics.csv of the CSV
logger; ``history`` keeps (step, error) pairs) and raises GradientVerificationError, which ends the run with a
non-zero exit, when that exceeds ``tolerance``; the bad update is never applied.

Tolerance: float32 training gradients differ from float64 autograd by ~1e-7..1e-5 (rounding, accumulation over
the batch); every mistake in the formulas gives O(1e-2..1). The default 1e-4 sits between; use ~1e-9 with
``trainer.precision: 64-true``. Under DDP ``param.grad`` is the all-reduced mean over ranks while the batch here is
this rank's share, so the check only holds with one process. With step blocks (``model.steps_per_call`` K > 1,
fit's default) only a block's last step goes through ``opt.step()``; that step is checked whenever the block holds
a multiple of ``every_n_steps`` (the other steps run torch_impl/fused_step.py, the same formulas, whose equality
with this path tests/test_fused_step.py proves).
"""
import lightning as L
import torch

from torch_impl.autograd_twin import two_layer_loss_and_grads_autograd
from train.step_blocks import block_batch

PARAMS = ("W1", "b1", "W2", "b2")


class GradientVerificationError(RuntimeError):
    """The manual gradients disagree with autograd beyond the tolerance."""


class GradientVerification(L.Callback):
    """every_n_steps: check every N optimizer steps (step 0 included); tolerance: max relative error allowed."""

    needs_grads = True  # tells step blocks (train/step_blocks.py) to run their last step through backward

    def __init__(self, every_n_steps: int = 10, tolerance: float = 1e-4):
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive int, got {every_n_steps!r}")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        self.every_n_steps = every_n_steps
        self.tolerance = tolerance
        self._batch, self._step = None, None
        self.history = []  # (global_step, max_rel_err) of every check

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(batch, dict):  # a step block: only its last step goes through opt.step() and this hook
            count = batch["count"]
            if trainer.max_steps is not None and trainer.max_steps >= 0:
                count = min(count, trainer.max_steps - trainer.global_step)
            n, first = self.every_n_steps, trainer.global_step
            due = count >= 1 and (first + count - 1) // n > (first - 1) // n  # a multiple of n in the block
            self._batch = block_batch(batch, batch["first"] + count - 1) if due else None
            self._step = first + count - 1  # the step whose opt.step() this check waits for
            return
        self._batch = batch if trainer.global_step % self.every_n_steps == 0 else None
        self._step = trainer.global_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self._batch is None or trainer.global_step != self._step:  # another step of the block (e.g. a run's first)
            return
        X, y = self._batch[0], self._batch[1]  # (B, D), (B,)
        self._batch = None  # one check per step, even if the module steps twice
        net = pl_module.net
        manual = {k: getattr(net, k).grad for k in PARAMS}
        missing = [k for k, g in manual.items() if g is None]
        if missing:
            raise GradientVerificationError(f"gradient verification at step {trainer.global_step}: no gradient "
                                            f"in {', '.join(missing)} before opt.step() (manual_backward not run?)")
        _, want = two_layer_loss_and_grads_autograd(
            X.double(), y, *(getattr(net, k).detach().double() for k in PARAMS), pl_module.hparams.reg)
        errs = {}
        for k in PARAMS:
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
