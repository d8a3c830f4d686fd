"""Counting SGD steps: the one place a step count moves, is read, or is asked whether it reached a multiple.

Usage::

    every = Every(100); every.start(trainer.global_step)
    if every.crossed(trainer.global_step): ...      # a multiple of 100 was reached since the last call
    lr_at(sched, n)                                  # the lr of SGD step n (0-based), fit's LambdaLR
    set_step(sched, n)                               # the optimizer's lr becomes lr_at(sched, n)
    count_steps(opt, sched, first, n)                # Lightning's step counter and the LambdaLR move on n steps
    count_logged_steps(trainer, n)                   # and the loggers' step (metrics.csv's step column)

trainer.global_step counts SGD steps on every step path. A step block (train/step_blocks.py) moves it by up to K
at once, so ``count % n == 0`` alone would miss most multiples: the callbacks that act every n steps (the
divergence guard's host reads, LastCheckpoint, GradientVerification) ask ``Every(n).crossed(count)`` instead.
LastStep is the record of the step in flight that those callbacks read as ``pl_module.last_step``.
"""
from dataclasses import dataclass

import torch


@dataclass
class LastStep:
    """The SGD step in flight: its loss (0-d, detached, computed before its update) and its batch X (B, D), y (B,).

    Written before the step's optimizer hooks run; read there by DivergenceGuard (the loss) and
    GradientVerification (the batch). ``batch`` is None when the step path did not gather it.
    """

    loss: torch.Tensor
    batch: tuple | None = None


def steps_crossed(before, after, every):
    """Whether a multiple of ``every`` lies in (before, after]: a count that moved from ``before`` to ``after``
    reached one."""
    return after // every > before // every


class Every:
    """Whether a step count reached a multiple of ``n`` since it was last seen (step blocks jump over multiples).

    ``start(count)`` sets the count seen last; ``crossed(count)`` answers for (that count, count] and remembers
    ``count``. Before any start the count seen last is taken as ``count - 1`` (the call answers for this count alone).
    """

    def __init__(self, n):
        self.n, self.seen = n, None

    def start(self, count):
        self.seen = count

    def crossed(self, count):
        seen, self.seen = (count - 1 if self.seen is None else self.seen), count
        return steps_crossed(seen, count, self.n)


def lr_at(scheduler, step):
    """The learning rate of SGD step ``step`` (0-based) under ``scheduler``, fit's LambdaLR: base lr times its factor.

    The one place the lr of step n is computed: the fused steps, the graph's lr table, the logged lr and set_step.
    """
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step)


def set_step(scheduler, step):
    """Leave the LambdaLR and its optimizer as ``step`` calls of scheduler.step() would: last_epoch = step, and the
    lr of SGD step ``step`` in the optimizer. Unlike scheduler.step() it never warns that no optimizer.step() came
    first, and it jumps over the steps of a block in one move."""
    scheduler.last_epoch = step
    for group in scheduler.optimizer.param_groups:
        group["lr"] = lr_at(scheduler, step)
    # private torch attribute: what get_last_lr() returns and state_dict() saves; step() would set it the same way
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def count_steps(optimizer, scheduler, first, n):
    """Count ``n`` SGD steps that a fast path took, from step ``first``, without running them: Lightning's step
    counter (trainer.global_step) moves on n, and the LambdaLR and its optimizer's lr stand at step first + n.

    optimizer: the LightningOptimizer (module.optimizers()); scheduler: its LambdaLR.
    """
    for _ in range(n):
        # private Lightning API (2.6): the LightningOptimizer's step count (trainer.global_step) without running a
        # step; the public opt.step() per step would add every optimizer hook (~50 us) per step
        optimizer._on_before_step()
        optimizer._on_after_step()
    set_step(scheduler, first + n)  # the optimizer's lr: that of the next step through opt.step()


def count_logged_steps(trainer, n):
    """Move Lightning's logging step on ``n`` SGD steps beyond the one it counts per training_step, so that the
    ``step`` of metrics.csv (and of every logger) and log_every_n_steps count SGD steps as global_step does."""
    # private Lightning attribute (2.6): the loop's count of training_steps that stepped, the loggers' step; it is
    # saved in checkpoints, so a resumed run continues it
    trainer.fit_loop.epoch_loop._batches_that_stepped += n
