"""DivergenceGuard: stop training at the step whose loss or gradient is NaN/Inf, before that update is applied.

Usage::

    trainer = L.Trainer(callbacks=[DivergenceGuard()])
    try:
        trainer.fit(model, datamodule=dm)
    except TrainingDiverged as err:          # train/cli.py: print(err) as one line, exit status 3
        print(f"error: {err}", file=sys.stderr); sys.exit(TrainingDiverged.exit_code)

Contract with the LightningModule (manual optimization)::

    loss = TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg)
    self.last_step = LastStep(loss.detach(), (X, y))   # train/steps.py; read by the guard (without it only the
    self.manual_backward(loss)                         # gradients are checked)
    opt.step()                          # Lightning calls on_before_optimizer_step inside, before the update

``on_before_optimizer_step`` runs inside ``opt.step()`` after the (no-op) closure and before
``torch.optim.SGD.step``, so raising there leaves the parameters as they were: the NaN update never happens.

On CPU the per-step check reads only the loss (one float of a 0-d tensor): a non-finite gradient, or a finite
step whose update overflows W - lr dW, leaves a non-finite parameter, and every parameter feeds every score (IEEE
0 * Inf = NaN), so the next step's loss is NaN/Inf and the run stops before that step's update. Only then are the
gradients and parameters scanned, to name the first bad step: the step itself ("no update was applied") when the
parameters are still finite, else the step before ("its update made net.W1 non-finite"). The parameters are also
scanned before every validation, at the end of training and before every checkpoint save, so no diverged state is
validated or saved. Without ``last_step`` the gradients and parameters are checked every step.

On an accelerator reading a flag means a host sync, so the per-step work stays on the device (the first bad step,
its loss) and the host reads it every ``sync_every_n_steps`` steps (whenever the step count crosses a multiple of
it, so also with K-step blocks that skip the multiple itself) and before every checkpoint save; the run then
stops at that check and the message names the first bad step. A checkpoint is never written of a diverged state:
``on_save_checkpoint`` raises before the file is opened (this also stops
``ModelCheckpoint(save_on_exception=True)``), so the last good checkpoint on disk stays the newest. Under 16-mixed
the GradScaler skips steps with Inf gradients by design, so only the loss is checked there. With several processes
(DDP) the decision is all-reduced, so all ranks stop.
"""
import math
import os

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from torch_impl.validation import check_positive_int
from train.steps import Every


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/Inf; the message is one line (step, loss, learning rate, a hint)."""

    exit_code = 3  # python -m train fit exits with this status


class DivergenceGuard(L.Callback):
    """Raises TrainingDiverged at the first step with a NaN/Inf loss (``pl_module.last_step.loss``) or gradient.

    Args:
        check_grads: also check the gradients (skipped automatically under a GradScaler).
        sync_every_n_steps: on an accelerator, how often the host reads the device-side flag (CPU: every step).
    """

    def __init__(self, check_grads: bool = True, sync_every_n_steps: int = 50):
        self.check_grads = check_grads
        self.sync_every_n_steps = check_positive_int("sync_every_n_steps", sync_every_n_steps)
        self.diverged = None  # the TrainingDiverged raised, once raised
        self._pending = None  # accelerator: (first bad step, its loss) as device tensors, step -1 = none yet
        self._lrs = {}  # accelerator: step -> learning rate since the last read
        self._step_lr = None  # (step, learning rate) of the latest optimizer step
        self._previous_loss = None  # CPU: the loss of the latest step that completed
        self._sync = Every(self.sync_every_n_steps)  # accelerator: the periodic host reads of the step count

    def on_train_start(self, trainer, pl_module):
        self.diverged, self._pending, self._lrs, self._step_lr = None, None, {}, None
        self._previous_loss = None
        self._sync.start(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        loss = last_loss(pl_module)
        step, lr = trainer.global_step, optimizer.param_groups[0]["lr"]
        previous, self._step_lr = self._step_lr, (step, lr)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = []
        if self.check_grads and getattr(trainer.precision_plugin, "scaler", None) is None:
            grads = [p.grad for p in params if p.grad is not None]
        if params and params[0].device.type == "cpu":
            self._check_cpu_step(trainer, pl_module, step, lr, loss, grads, params, previous)
            return
        values = ([torch.as_tensor(loss)] if loss is not None else []) + grads + params
        ok = torch.stack([torch.isfinite(v).all() for v in values]).all()  # 0-d bool on the device
        # accelerator: remember the first bad step on the device, read it only now and then
        loss_value = torch.as_tensor(loss if loss is not None else math.nan, device=ok.device).float()
        if self._pending is None:
            self._pending = (torch.full((), -1, device=ok.device), torch.full((), math.nan, device=ok.device))
        first_step, first_loss = self._pending
        is_first = ~ok & (first_step < 0)
        self._pending = (torch.where(is_first, step, first_step), torch.where(is_first, loss_value, first_loss))
        self._lrs[step] = lr
        if self._sync_due(step):
            self.check_pending(trainer, pl_module)

    def _sync_due(self, step):
        """Whether the step count, step + 1 after step ``step``, crossed a multiple of sync_every_n_steps since the
        last read: with K-step blocks the hook sees one step per block, so the multiple itself may never come."""
        return self._sync.crossed(step + 1)

    def _check_cpu_step(self, trainer, pl_module, step, lr, loss, grads, params, previous):
        """CPU, before step ``step``'s update: the loss alone (see the module docstring), or without a recorded loss
        the gradients and parameters; on a bad verdict name the first bad step and raise."""
        if loss is not None:
            bad = not math.isfinite(float(loss))  # a 0-d tensor: no device to wait for
        else:
            bad = not bool(torch.stack([torch.isfinite(v).all() for v in grads + params]).all())
        if not self._decide(trainer, bad):
            return
        bad_params = self._nonfinite_parameters(pl_module)
        if bad_params and previous is not None and previous[0] == step - 1:  # the previous update did it
            self._raise(trainer, pl_module, previous[0], self._previous_loss, [], previous[1],
                        f"its update made {', '.join(bad_params)} non-finite")
        if bad_params:  # an update before this step (inside a step block, or unchecked) did it
            self._raise(trainer, pl_module, step, loss, [], lr,
                        f"{', '.join(bad_params)} already non-finite before it; no update was applied")
        self._raise(trainer, pl_module, step, loss, grads, lr, "no update was applied")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Keeps the latest checked step's loss (the message's "loss" when the next step finds its update bad)."""
        self._previous_loss = last_loss(pl_module)

    def _nonfinite_parameters(self, pl_module):
        """Names of the parameters holding a NaN/Inf (one isfinite pass over each; the host reads the flags)."""
        return [name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(p).all())]

    def check_parameters(self, trainer, pl_module, when="", collective=True):
        """CPU: scan the parameters now (before validation, a save, the end); raise naming the latest step's update
        if one is non-finite (on an accelerator: read the device-side record, check_pending). collective: decide
        with every rank (all of them must call it), else on this rank's parameters alone."""
        params = list(pl_module.parameters())
        if not params or params[0].device.type != "cpu":
            self.check_pending(trainer, pl_module)
            return
        bad = self._nonfinite_parameters(pl_module)
        if self._decide(trainer, bool(bad)) if collective else bad:
            step, lr = self._step_lr or (trainer.global_step, math.nan)
            self._raise(trainer, pl_module, step, last_loss(pl_module), [], lr,
                        f"its update made {', '.join(bad) or 'a parameter on another rank'} non-finite{when}")

    def check_pending(self, trainer, pl_module):
        """Accelerator: read the device-side record (one host sync); raise if a step diverged since the last read."""
        if self._pending is None:
            return
        first_step, first_loss = int(self._pending[0]), float(self._pending[1])  # the host sync
        if not self._decide(trainer, first_step >= 0):
            self._lrs.clear()
            return
        lr = self._lrs.get(first_step, math.nan)
        self._raise(trainer, pl_module, first_step, first_loss, [], lr,
                    f"detected at step {trainer.global_step}, no checkpoint was written after step {first_step}")

    def _decide(self, trainer, bad):
        """One rank's verdict, or any rank's when several processes train (all of them must stop together)."""
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        return bad

    def _raise(self, trainer, pl_module, step, loss, grads, lr, what_happened):
        hint = divergence_hint(getattr(pl_module, "hparams", {}), lr)
        loss_text = "not recorded" if loss is None else f"{float(loss):g}"
        grad_text = ""
        if grads:
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
            grad_text = f", gradient norm {norm:g}"
        self.diverged = TrainingDiverged(
            f"training diverged at step {step} (epoch {trainer.current_epoch}): loss {loss_text}{grad_text}, "
            f"learning rate {lr:g}; {what_happened}; {kept_checkpoint_text(trainer)}; {hint}")
        raise self.diverged

    def on_train_epoch_end(self, trainer, pl_module):
        self.check_pending(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == TrainerFn.FITTING:  # not in a plain `validate` of a loaded checkpoint
            self.check_parameters(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.check_parameters(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        """Runs while the checkpoint dict is built, before any file is opened: refuse a diverged state."""
        if self.diverged is not None:
            raise self.diverged
        self.check_pending(trainer, pl_module)
        # one isfinite pass per parameter per save; on an accelerator reached only if a step was not checked
        self.check_parameters(trainer, pl_module, "; caught when a checkpoint was about to be written",
                              collective=False)  # a save may run on one rank only


def last_loss(pl_module):
    """The loss of the step in flight (``pl_module.last_step.loss``), or None when the module records none."""
    last = getattr(pl_module, "last_step", None)
    return None if last is None else last.loss


def divergence_hint(hparams, lr):
    """What to change. At a step size lr, SGD's L2 term multiplies W by (1 - 2 lr reg) every step: above
    2 lr reg = 1 that factor is negative (W flips sign each step) and beyond 2 it grows |W|, so a strong reg makes
    a high lr diverge faster; then lowering reg (or lr) helps, raising reg would not."""
    if "learning_rate" not in hparams:
        return "lower the learning rate"
    hint = f"lower --model.learning_rate (now {hparams['learning_rate']:g})"
    reg = hparams.get("reg")
    if reg is not None and math.isfinite(lr) and 2 * lr * reg > 1:
        hint += (f", or lower --model.reg (now {reg:g}): at this learning rate the L2 term multiplies W by "
                 f"1 - 2 lr reg = {1 - 2 * lr * reg:.3g} each step")
    return hint


def kept_checkpoint_text(trainer):
    """'the last good checkpoint PATH is kept' when a checkpoint of this run (or the one it resumed from) exists,
    else 'no checkpoint was written before it'."""
    for name in ("last_model_path", "best_model_path"):  # last.ckpt first: the newest good state
        paths = [getattr(cb, name, "") for cb in trainer.checkpoint_callbacks]
        existing = [p for p in paths if p and os.path.isfile(p)]
        if existing:
            return f"the last good checkpoint {max(existing, key=os.path.getmtime)} is kept"
    if trainer.ckpt_path and os.path.isfile(trainer.ckpt_path):
        return f"the checkpoint it resumed from, {trainer.ckpt_path}, is kept"
    return "no checkpoint was written before it"
