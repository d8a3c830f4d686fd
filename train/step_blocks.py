"""Step blocks and the step path that runs them: K SGD steps per Lightning training_step.

Usage (TwoLayerNetModule does this at fit start, and hands K to the data module, which then yields StepBlocks)::

    path, why = choose_step_path(module.hparams, trainer, module.device, data_takes_blocks=True)
    runner = StepBlockRunner(path, trainer=trainer, optimizer=opt, scheduler=sched, loss_fn=module.batch_loss,
                             backward=module.manual_backward, params=list(module.net.parameters()), reg=0.25)
    step_losses = runner(block)                 # (count,), one per SGD step; runner.last_step: the latest step
    step_losses = runner(StepBlock.of_batch(X, y))   # a plain (X, y) batch is a block of one step

The three step paths, chosen once per fit and named in one log line:

    front door   loss = loss_fn(X, y); backward(loss); opt.step(); sched.step()   (StepBlockRunner.sgd_step)
                 the gradients reach ``.grad`` through the autograd engine, where DDP, AMP and callbacks see them
    fused        torch_impl/fused_step.py's fused_sgd_step: no autograd, the update inside the GEMMs
    graph        torch_impl/cuda_graph.py: the block's steps replayed from one captured CUDA graph

A fast path (fused, graph) takes the block's steps without Lightning; finish_block then does Lightning's part for
both in one order: it counts the steps (train/steps.py's count_steps), and the block's last step fires Lightning's
optimizer hooks at its own step number, either through the front door (a callback that reads ``.grad`` declares
``needs_grads``; on a CPU, also the rest of a block whose fused step met a NaN/Inf loss, so the divergence guard
stops it before its update) or as one opt.step() without gradients after the fast path updated the parameters.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step
from train.steps import LastStep, count_logged_steps, count_steps, lr_at

STEP_PATHS = ("front door", "fused", "graph")
FULL_PRECISIONS = ("32-true", "32", "64-true", "64")  # no autocast, no grad scaler: the fast paths' arithmetic


@dataclass
class StepBlock:
    """The batches of ``count`` consecutive SGD steps, as train/data.py's WithReplacementBatches yields them.

    X: (N, D), y: (N,): the whole device-resident training split; indices: (num_batches, B) int64, the epoch's batch
    indices on the device (one table per epoch, the same object for each of its blocks); first: the block's first
    batch of the epoch; count: its batches; ran: ``ran(first, count)``, called by a consumer that runs fewer than
    ``count`` (the data's saved state then counts the batches stepped), or None. A block of one plain batch
    (``of_batch``) has indices None: X, y are that batch.
    """

    X: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor | None
    first: int
    count: int
    ran: Callable[[int, int], None] | None = None

    @classmethod
    def of_batch(cls, X, y):
        """The one-step block of a plain batch X (B, D), y (B,) (a DataLoader's, or the data without blocks)."""
        return cls(X, y, None, 0, 1)

    def step_batch(self, j):
        """The batch of the block's step ``j`` (0-based): X_b (B, D), y_b (B,)."""
        if self.indices is None:
            return self.X, self.y
        idx = self.indices[self.first + j]  # (B,)
        return self.X.index_select(0, idx), self.y.index_select(0, idx)


def choose_step_path(hparams, trainer, device, data_takes_blocks=True):
    """The step path of this fit and why: ("front door" | "fused" | "graph", a few words).

    hparams: the module's (steps_per_call, cuda_graph, grad_mode); trainer: world_size, precision; device: the
    module's; data_takes_blocks: whether the training data can yield step blocks (an ArrayDataModule; a plain
    DataLoader yields (X, y) batches, which only the front door takes). Raises ValueError for cuda_graph with
    several processes or another precision than 32-true.
    """
    precision = str(trainer.precision)
    if hparams.cuda_graph and trainer.world_size > 1:
        raise ValueError(f"cuda_graph: got True with {trainer.world_size} processes; expected one device "
                         "(the captured step has no gradient all-reduce); use --model.cuda_graph false")
    if hparams.cuda_graph and precision not in ("32-true", "32"):
        raise ValueError(f"cuda_graph: got True with precision {trainer.precision!r}; expected 32-true "
                         "(the captured step has no autocast or grad scaler); use --model.cuda_graph false")
    if hparams.steps_per_call == 1 and not hparams.cuda_graph:
        return "front door", "steps_per_call 1"
    if not data_takes_blocks:
        return "front door", "the training data yields (X, y) batches, not step blocks"
    if hparams.cuda_graph and device.type == GraphedSGDSteps.device_type:
        return "graph", "cuda_graph"
    no_graph = f"cuda_graph: no CUDA device, training on {device.type}; " if hparams.cuda_graph else ""
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
    """Runs step blocks on one step path; trainer.global_step and the LambdaLR count SGD steps.

    path: one of STEP_PATHS; trainer: its global_step and max_steps; optimizer: the LightningOptimizer (its hooks
    and step count); scheduler: its LambdaLR; loss_fn(X, y): the differentiable 0-d loss of a batch; backward(loss):
    gradients into ``.grad`` (LightningModule.manual_backward); params: [W1, b1, W2, b2]; reg, momentum: the SGD
    settings of the fast paths. last_through_front_door: a fast path leaves each block's last step to the front
    door, so that a callback that reads ``.grad`` (GradientVerification) sees that step's gradients.
    ``last_step`` (train/steps.py's LastStep) is the step in flight, written before its optimizer hooks run.
    """

    def __init__(self, path, *, trainer, optimizer, scheduler, loss_fn, backward, params, reg, momentum=0.0,
                 last_through_front_door=False):
        if path not in STEP_PATHS:
            raise ValueError(f"path: got {path!r}; expected one of {STEP_PATHS}")
        self.path, self.trainer, self.optimizer, self.scheduler = path, trainer, optimizer, scheduler
        self.loss_fn, self.backward, self.params, self.reg, self.momentum = loss_fn, backward, params, reg, momentum
        self.last_through_front_door = path != "front door" and last_through_front_door
        # the fast path's function, bound once: (block, steps) -> their losses (<= steps,)
        self.fast_steps = {"front door": self._no_fast_steps, "fused": self._fused, "graph": self._replay}[path]
        self.last_step = None  # LastStep of the step in flight (read by the callbacks before its update)
        self.graphed, self._buffers, self._table = None, None, None

    def __call__(self, block):
        """Train on ``block``; returns the detached losses of its steps (count,), each computed before its update."""
        count = self.steps_to_run(block)
        fast_losses = self.fast_steps(block, max(count - self.last_through_front_door, 0))
        step_losses = self.finish_block(block, count, fast_losses)
        if count > 1:  # Lightning's loop counts one logged step per training_step
            count_logged_steps(self.trainer, count - 1)
        return step_losses

    # [bridge:lightning-sgd-step]
    def sgd_step(self, X, y):
        """One front-door SGD step on X: (B, D), y: (B,): loss, gradients through autograd, update, lr schedule.

        Returns the detached loss (computed before the update).
        """
        loss = self.loss_fn(X, y)
        self.last_step = LastStep(loss.detach(), (X, y))  # read by the callbacks in opt.step(), before the update
        self.backward(loss)  # hand-written (or autograd) gradients into .grad, via the engine
        self.optimizer.step()  # W -= lr * dW (SGD, optionally with momentum)
        self.optimizer.zero_grad(set_to_none=False)
        self.scheduler.step()  # lr for the next step
        return loss.detach()
    # [/bridge:lightning-sgd-step]

    def steps_to_run(self, block):
        """The block's count, cut at trainer.max_steps; a cut is reported to the block's sampler (``block.ran``), so
        a resumed run continues right after the last step taken."""
        trainer = self.trainer
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
        fast = len(fast_losses)
        if count == 0:  # max_steps already reached
            return fast_losses
        hooks_only = fast == count  # the fast path took every step
        counted = fast - 1 if hooks_only else fast  # steps counted without hooks
        if counted:
            count_steps(self.optimizer, self.scheduler, self.trainer.global_step, counted)
        if hooks_only:
            self.last_step = LastStep(fast_losses[-1])  # the divergence guard reads the last step's loss
            self.optimizer.optimizer.zero_grad(set_to_none=True)  # no .grad: SGD's step changes nothing
            self.optimizer.step()  # Lightning's optimizer hooks and step count for the block's last step
            self.scheduler.step()
            return fast_losses
        rest = [self.sgd_step(*block.step_batch(j)) for j in range(fast, count)]  # (B, D), (B,); each steps the lr
        return torch.cat([fast_losses, torch.stack(rest)]) if fast else torch.stack(rest)  # (count,)

    def _no_fast_steps(self, block, count):
        return block.X.new_empty(0)

    def _fused(self, block, count):
        """``count`` fused steps from the block's first; returns their losses (<= count,). On a CPU it stops before a
        step with a NaN/Inf loss, parameters untouched, and leaves that step and the rest of the block to the front
        door, where the divergence guard stops it before its update."""
        step0 = self.trainer.global_step
        buffers = momentum_buffers(self.optimizer.optimizer, self.params, self.momentum)
        on_cpu = block.X.device.type == "cpu"
        losses = []
        for j in range(count):
            X, y = block.step_batch(j)  # (B, D), (B,)
            loss = fused_sgd_step(X, y, *self.params, self.reg, lr_at(self.scheduler, step0 + j), self.momentum,
                                  buffers, finite_only=on_cpu)
            if on_cpu and not math.isfinite(loss):
                break
            losses.append(loss)
        return torch.stack(losses) if losses else block.X.new_empty(0)

    def _replay(self, block, count):
        """``count`` steps from the block's first in one replay of the captured graph; returns their losses (count,)."""
        if count == 0:
            return block.X.new_empty(0)
        step0 = self.trainer.global_step
        buffers = momentum_buffers(self.optimizer.optimizer, self.params, self.momentum)
        if self.graphed is None or any(a is not b for a, b in zip(buffers, self._buffers)):  # new, or state reloaded
            self.graphed = GraphedSGDSteps(self.loss_fn, self.params, block.X, block.y, self.momentum, buffers)
            self._buffers, self._table = buffers, None
        if block.indices is not self._table:  # a new epoch: its batch table and the lr of each of its batches
            lrs = [lr_at(self.scheduler, step0 + b - block.first) if b >= block.first else 0.0
                   for b in range(block.indices.shape[0])]
            self.graphed.load_epoch(block.indices, torch.tensor(lrs, dtype=self.graphed.lrs_dtype))
            self._table = block.indices
        return self.graphed.run(block.first, count).clone()  # (count,), kept past the next replay
