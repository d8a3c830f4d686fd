"""Step blocks: K SGD steps per Lightning training_step, and the one place those steps are counted."""
import logging
import math

import torch

from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step

log = logging.getLogger(__name__)


def block_batch(block, b):
    """Batch ``b`` of a step block (see train/data.py's WithReplacementBatches): (X_b (B, D), y_b (B,))."""
    idx = block["indices"][b]  # (B,)
    return block["X"].index_select(0, idx), block["y"].index_select(0, idx)


class StepBlockRunner:
    """Runs TwoLayerNetModule's step blocks: ``count`` eager sgd_steps, or one replay of the captured graph on CUDA.

    Step counting: trainer.global_step counts SGD steps, as with one step per training_step. An eager block in
    32/64-bit precision on one device runs its steps without Lightning's per-step hooks: fused_sgd_step
    (torch_impl/fused_step.py, the same math with the update inside the gradient GEMMs) for grad_mode "manual", then
    one opt.step() without gradients for Lightning's hooks, like a replay; for grad_mode "autograd", or when a
    callback needs gradients (``needs_grads``), its last step is sgd_step (manual_backward, the LightningOptimizer
    and its hooks) and the others backward and the torch optimizer. Under DDP or mixed precision every step is
    sgd_step. Each counts as an optimizer step. A replay calls the optimizer once (Lightning's hooks, e.g. the
    divergence guard, see the block's last loss; no ``.grad`` is set, so SGD changes nothing) and counts the other
    count - 1 steps through the LightningOptimizer's step-progress hooks. The LambdaLR advances by ``count``; a
    replay reads each step's lr from a per-epoch device table filled from the same lambda. A block is cut short at
    trainer.max_steps, and the cut is reported to the block's sampler (``block["ran"]``), so a resumed run continues
    after the last step taken.
    """

    def __init__(self, module):
        hp, trainer = module.hparams, module.trainer
        if hp.cuda_graph and trainer.world_size > 1:
            raise ValueError(f"cuda_graph: got True with {trainer.world_size} processes; expected one device "
                             "(the captured step has no gradient all-reduce); use --model.cuda_graph false")
        if hp.cuda_graph and str(trainer.precision) not in ("32-true", "32"):
            raise ValueError(f"cuda_graph: got True with precision {trainer.precision!r}; expected 32-true "
                             "(the captured step has no autocast or grad scaler); use --model.cuda_graph false")
        self.module = module
        self.use_graph = hp.cuda_graph and module.device.type == GraphedSGDSteps.device_type
        if hp.cuda_graph and not self.use_graph:
            log.info("cuda_graph: no CUDA device (training on %s), running the steps eagerly", module.device)
        self.quick_steps = trainer.world_size == 1 and str(trainer.precision) in ("32-true", "32", "64-true", "64")
        # callbacks that read .grad in on_before_optimizer_step (GradientVerification) need a block's last step
        # to go through manual_backward
        self.needs_grads = any(getattr(cb, "needs_grads", False) for cb in trainer.callbacks)
        self.graphed, self._table, self._buffers = None, None, None
        self.losses, self.last_count = None, 0  # the last replay's loss buffer (K,) and its steps

    def __call__(self, block):
        """Train on a block; returns (the losses of its steps (count,), detached; the last step's lr)."""
        m = self.module
        first, count = block["first"], block["count"]
        if m.trainer.max_steps is not None and m.trainer.max_steps >= 0:
            count = min(count, m.trainer.max_steps - m.trainer.global_step)
            if count < block["count"] and "ran" in block:
                block["ran"](first, count)  # the data's saved state counts the steps run, not the block's
        if self.use_graph:
            losses = self._replay(block, first, count)
        else:
            losses = self._eager(block, first, count)
        sched = m.lr_schedulers()
        return losses, sched.base_lrs[0] * sched.lr_lambdas[0](sched.last_epoch - 1)

    def _eager(self, block, first, count):
        """``count`` eager steps as quick steps, except step 0 of a run (torch's lr scheduler warns when its first
        step() comes before any optimizer.step()) and, unless every step is fused, the block's last (sgd_step, so
        that the optimizer hooks see a real step with gradients). Paths are chosen by position, never by "first in
        this process", so a resumed run takes the same ones. Returns the losses (count,)."""
        m = self.module
        opt, sched, step0 = m.optimizers(), m.lr_schedulers(), m.trainer.global_step
        fused = None
        if self.quick_steps and m.hparams.grad_mode == "manual":  # looked up once per block, not per step
            hp, params = m.hparams, list(m.net.params.values())
            fused = (params, hp.reg, hp.momentum, self._momentum_buffers(opt.optimizer))
        all_fused = fused is not None and not self.needs_grads
        losses = []
        for j, b in enumerate(range(first, first + count)):
            X, y = block_batch(block, b)  # (B, D), (B,)
            last, loss = j == count - 1, None
            if self.quick_steps and step0 + j > 0 and (all_fused or not last):
                loss = self._quick_step(X, y, opt, sched, fused, last)
            losses.append(m.sgd_step(X, y) if loss is None else loss)
        return torch.stack(losses)  # (count,)

    def _quick_step(self, X, y, opt, sched, fused, last=False):
        """sgd_step's math on X: (B, D), y: (B,) without Lightning's per-step hooks, counted as an optimizer step.

        fused = (params, reg, momentum, momentum buffers) for grad_mode "manual": torch_impl/fused_step.py's
        fused_sgd_step (no autograd, the update inside the GEMMs); on a CPU it reads the loss first and, when it
        is NaN/Inf, leaves the parameters alone and returns None, so that the caller runs this step as sgd_step,
        where the divergence guard stops it before any update. fused None (grad_mode "autograd"): the autograd
        twin, backward and the torch optimizer. Returns the 0-d loss or None. ``last``: the block's last step, all
        fused: after its update opt.step() runs Lightning's hooks (the divergence guard reads ``last_loss``) and
        counts it; no ``.grad`` is set, so SGD changes nothing.
        """
        if fused is not None:
            params, reg, momentum, buffers = fused
            on_cpu = X.device.type == "cpu"
            loss = fused_sgd_step(X, y, *params, reg, opt.optimizer.param_groups[0]["lr"], momentum, buffers,
                                  finite_only=on_cpu)
            if on_cpu and not math.isfinite(loss):  # the parameters are untouched
                return None
        else:
            loss = self.module.batch_loss(X, y)
            loss.backward()  # what manual_backward does in 32/64-bit precision on one device
            opt.optimizer.step()  # W -= lr * dW
            opt.optimizer.zero_grad(set_to_none=False)
        if last:
            self._hooks_step(opt, loss.detach())
        else:
            opt._on_before_step()  # Lightning's step count, as LightningOptimizer.step does it
            opt._on_after_step()
        sched.step()
        return loss.detach()

    def _hooks_step(self, opt, loss):
        """One opt.step() after the parameters were already updated: Lightning's optimizer hooks (the divergence
        guard reads ``last_loss`` = ``loss``, 0-d) and one step count. The grads are set to None first, so that
        SGD changes nothing (zeros left by an earlier sgd_step would still move the momentum and the weights)."""
        self.module.last_loss = loss
        opt.optimizer.zero_grad(set_to_none=True)
        opt.step()

    def _momentum_buffers(self, opt):
        """The optimizer's momentum buffers (created as zeros: v = 0 momentum + dW = dW, SGD's first step)."""
        if not self.module.hparams.momentum:
            return []
        for p in self.module.net.parameters():
            if opt.state[p].get("momentum_buffer") is None:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return [opt.state[p]["momentum_buffer"] for p in self.module.net.parameters()]

    def _replay(self, block, first, count):
        m, opt, sched = self.module, self.module.optimizers(), self.module.lr_schedulers()
        buffers = self._momentum_buffers(opt.optimizer)
        if self.graphed is None or any(a is not b for a, b in zip(buffers, self._buffers)):  # new, or state reloaded
            self.graphed = GraphedSGDSteps(m.batch_loss, list(m.net.parameters()), block["X"], block["y"],
                                           m.hparams.momentum, buffers)
            self._buffers, self._table = buffers, None
        table = block["indices"]  # (num_batches, B), one object per epoch
        if table is not self._table:
            base, factor, n0 = sched.base_lrs[0], sched.lr_lambdas[0], sched.last_epoch  # step n uses base factor(n)
            lrs = [base * factor(n0 + b - first) if b >= first else 0.0 for b in range(table.shape[0])]
            self.graphed.load_epoch(table, torch.tensor(lrs, dtype=self.graphed.lrs_dtype))
            self._table = table
        self.losses, self.last_count = self.graphed.run(first, count), count  # (count,), overwritten by the next
        losses = self.losses[:count].clone()  # (count,) kept past the next replay
        self._hooks_step(opt, losses[-1])
        for _ in range(count - 1):  # count the rest, as count optimizer steps would
            opt._on_before_step()
            opt._on_after_step()
        sched.last_epoch += count - 1
        sched.step()  # LambdaLR: lr = base factor(last_epoch), the next step's
        return losses
