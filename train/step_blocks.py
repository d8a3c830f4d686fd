"""Step blocks: K SGD steps per Lightning training_step, the step path that runs them, and the one place they are
counted.

Usage (TwoLayerNetModule does this at fit start; the data module yields StepBlocks when the model's
``train_block_size`` K >= 1)::

    path, why = choose_step_path(module.hparams, trainer, module.device)   # "front door" | "fused" | "graph"
    runner = StepBlockRunner(module, path)
    step_losses = runner(block)                                            # (count,), one per SGD step

The three step paths, chosen once per fit and named in one log line:

    front door   loss = TwoLayerLoss.apply(...); manual_backward(loss); opt.step(); sched.step()   (sgd_step)
                 the gradients reach ``.grad`` through the autograd engine, where DDP, AMP and callbacks see them
    fused        torch_impl/fused_step.py's fused_sgd_step: no autograd, the update inside the GEMMs
    graph        torch_impl/cuda_graph.py: the block's steps replayed from one captured CUDA graph

A fast path (fused, graph) takes the block's steps without Lightning; finish_block then does Lightning's part for
both in one order: it counts the steps, and the block's last step fires Lightning's optimizer hooks at its own
step number, either through the front door (a callback that reads ``.grad`` declares ``needs_grads``; on a CPU,
also the rest of a block whose fused step met a NaN/Inf loss, so the divergence guard stops it before its update)
or as one opt.step() without gradients after the fast path updated the parameters.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step
from train.schedule import lr_at, set_step

STEP_PATHS = ("front door", "fused", "graph")
FULL_PRECISIONS = ("32-true", "32", "64-true", "64")  # no autocast, no grad scaler: the fast paths' arithmetic


@dataclass
class StepBlock:
    """The batches of ``count`` consecutive SGD steps, as train/data.py's WithReplacementBatches yields them.

    X: (N, D), y: (N,): the whole device-resident training split; indices: (num_batches, B) int64, the epoch's batch
    indices on the device (one table per epoch, the same object for each of its blocks); first: the block's first
    batch of the epoch; count: its batches; ran: ``ran(first, count)``, called by a consumer that runs fewer than
    ``count`` (the data's saved state then counts the batches stepped), or None.
    """

    X: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    first: int
    count: int
    ran: Callable[[int, int], None] | None = None

    def step_batch(self, j):
        """The batch of the block's step ``j`` (0-based): X_b (B, D), y_b (B,)."""
        idx = self.indices[self.first + j]  # (B,)
        return self.X.index_select(0, idx), self.y.index_select(0, idx)


def steps_crossed(before, after, every):
    """Whether a multiple of ``every`` lies in (before, after]: a count that moved from ``before`` to ``after``
    reached one. With step blocks a count jumps by up to K, so ``after % every == 0`` alone would miss most."""
    return after // every > before // every


def choose_step_path(hparams, trainer, device):
    """The step path of this fit and why: ("front door" | "fused" | "graph", a few words).

    hparams: the module's (steps_per_call, cuda_graph, grad_mode); trainer: world_size, precision; device: the
    module's. Raises ValueError for cuda_graph with several processes or another precision than 32-true.
    """
    precision = str(trainer.precision)
    if hparams.cuda_graph and trainer.world_size > 1:
        raise ValueError(f"cuda_graph: got True with {trainer.world_size} processes; expected one device "
                         "(the captured step has no gradient all-reduce); use --model.cuda_graph false")
    if hparams.cuda_graph and precision not in ("32-true", "32"):
        raise ValueError(f"cuda_graph: got True with precision {trainer.precision!r}; expected 32-true "
                         "(the captured step has no autocast or grad scaler); use --model.cuda_graph false")
    if hparams.cuda_graph and device.type == GraphedSGDSteps.device_type:
        return "graph", "cuda_graph"
    no_graph = f"cuda_graph: no CUDA device, training on {device.type}; " if hparams.cuda_graph else ""
    if hparams.steps_per_call == 1 and not hparams.cuda_graph:
        return "front door", "steps_per_call 1"
    if trainer.world_size > 1:
        return "front door", f"{no_graph}{trainer.world_size} processes: DDP all-reduces .grad"
    if precision not in FULL_PRECISIONS:
        return "front door", f"{no_graph}precision {precision}: autocast and the grad scaler act on the engine"
    if hparams.grad_mode != "manual":
        return "front door", f"{no_graph}grad_mode {hparams.grad_mode}"
    return "fused", f"{no_graph}one device, precision {precision}, hand-written gradients"


def momentum_buffers(optimizer, params, momentum):
    """torch.optim.SGD's momentum buffers of ``params``, created as zeros where missing (SGD's first step gives
    v = 0 momentum + dW = dW as well), so that every path updates the optimizer's own state; [] without momentum."""
    if not momentum:
        return []
    for p in params:
        if optimizer.state[p].get("momentum_buffer") is None:
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return [optimizer.state[p]["momentum_buffer"] for p in params]


class StepBlockRunner:
    """Runs TwoLayerNetModule's step blocks on one step path; trainer.global_step and the LambdaLR count SGD steps.

    module: the TwoLayerNetModule (its optimizer, scheduler and sgd_step); path: one of STEP_PATHS. With a
    callback that declares ``needs_grads`` (GradientVerification), a fast path leaves each block's last step to the
    front door, so that the callback sees that step's ``.grad``.
    """

    def __init__(self, module, path):
        if path not in STEP_PATHS:
            raise ValueError(f"path: got {path!r}; expected one of {STEP_PATHS}")
        self.module, self.path = module, path
        self.last_through_front_door = path != "front door" and any(
            getattr(cb, "needs_grads", False) for cb in module.trainer.callbacks)
        self.graphed, self._buffers, self._table = None, None, None

    def __call__(self, block):
        """Train on ``block``; returns the detached losses of its steps (count,), each computed before its update."""
        count = self.steps_to_run(block)
        fast = 0 if self.path == "front door" else count - self.last_through_front_door
        if self.path == "fused":
            fast_losses = self._fused(block, fast)
        elif self.path == "graph":
            fast_losses = self._replay(block, fast)
        else:
            fast_losses = block.X.new_empty(0)
        return self.finish_block(block, count, fast_losses)

    def steps_to_run(self, block):
        """The block's count, cut at trainer.max_steps; a cut is reported to the block's sampler (``block.ran``), so
        a resumed run continues right after the last step taken."""
        trainer = self.module.trainer
        count = block.count
        if trainer.max_steps is not None and trainer.max_steps >= 0:
            count = min(count, trainer.max_steps - trainer.global_step)
            if count < block.count and block.ran is not None:
                block.ran(block.first, count)
        return count

    def finish_block(self, block, count, fast_losses):
        """Lightning's part of a block whose first len(fast_losses) steps a fast path took, the same for both.

        Counts those steps, then either runs the block's remaining steps through the front door (sgd_step: each
        fires the optimizer hooks with its ``.grad``), or, when the fast path took them all, fires the hooks once
        for the last step, at its step number and with its loss, by an opt.step() without gradients. Returns the
        losses of the block's steps (count,).
        """
        m = self.module
        opt, sched, step0 = m.optimizers(), m.lr_schedulers(), m.trainer.global_step
        fast = len(fast_losses)
        if count == 0:  # max_steps already reached
            return fast_losses
        hooks_only = fast == count  # the fast path took every step
        counted = fast - 1 if hooks_only else fast  # steps counted without hooks
        for _ in range(counted):
            # private Lightning API (2.6): the LightningOptimizer's step count (trainer.global_step) without
            # running a step; the public opt.step() per step would add every optimizer hook (~50 us) per step
            opt._on_before_step()
            opt._on_after_step()
        set_step(sched, step0 + counted)  # the optimizer's lr: that of the next step through opt.step()
        if hooks_only:
            m.last_loss = fast_losses[-1]  # the divergence guard reads the last step's loss
            opt.optimizer.zero_grad(set_to_none=True)  # no .grad: SGD's step changes nothing (zeros move momentum)
            opt.step()  # Lightning's optimizer hooks and step count for the block's last step
            sched.step()
            return fast_losses
        rest = [m.sgd_step(*block.step_batch(j)) for j in range(fast, count)]  # (B, D), (B,); each steps the lr
        return torch.cat([fast_losses, torch.stack(rest)]) if fast else torch.stack(rest)  # (count,)

    def _fused(self, block, count):
        """``count`` fused steps from the block's first; returns their losses (<= count,). On a CPU it stops before a
        step with a NaN/Inf loss, parameters untouched, and leaves that step and the rest of the block to the front
        door, where the divergence guard stops it before its update."""
        m = self.module
        hp, params = m.hparams, list(m.net.parameters())
        sched, step0 = m.lr_schedulers(), m.trainer.global_step
        buffers = momentum_buffers(m.optimizers().optimizer, params, hp.momentum)
        on_cpu = block.X.device.type == "cpu"
        losses = []
        for j in range(count):
            X, y = block.step_batch(j)  # (B, D), (B,)
            loss = fused_sgd_step(X, y, *params, hp.reg, lr_at(sched, step0 + j), hp.momentum, buffers,
                                  finite_only=on_cpu)
            if on_cpu and not math.isfinite(loss):
                break
            losses.append(loss)
        return torch.stack(losses) if losses else block.X.new_empty(0)

    def _replay(self, block, count):
        """``count`` steps from the block's first in one replay of the captured graph; returns their losses (count,)."""
        if count == 0:
            return block.X.new_empty(0)
        m = self.module
        sched, step0 = m.lr_schedulers(), m.trainer.global_step
        buffers = momentum_buffers(m.optimizers().optimizer, list(m.net.parameters()), m.hparams.momentum)
        if self.graphed is None or any(a is not b for a, b in zip(buffers, self._buffers)):  # new, or state reloaded
            self.graphed = GraphedSGDSteps(m.batch_loss, list(m.net.parameters()), block.X, block.y,
                                           m.hparams.momentum, buffers)
            self._buffers, self._table = buffers, None
        if block.indices is not self._table:  # a new epoch: its batch table and the lr of each of its batches
            lrs = [lr_at(sched, step0 + b - block.first) if b >= block.first else 0.0
                   for b in range(block.indices.shape[0])]
            self.graphed.load_epoch(block.indices, torch.tensor(lrs, dtype=self.graphed.lrs_dtype))
            self._table = block.indices
        return self.graphed.run(block.first, count).clone()  # (count,), kept past the next replay
