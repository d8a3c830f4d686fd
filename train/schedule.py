"""The learning rate of SGD step n: EpochDecay (the LambdaLR factor fit uses), lr_at and set_step.

Usage (TwoLayerNetModule.configure_optimizers builds the scheduler; the step paths read it)::

    sched = torch.optim.lr_scheduler.LambdaLR(opt, EpochDecay(0.95, num_train=49000, batch_size=200, schedule="epoch"))
    lr_at(sched, n)       # the lr of step n, 0-based
    set_step(sched, n)    # the optimizer's lr becomes lr_at(sched, n), as n calls of sched.step() leave it
"""
import math
from fractions import Fraction


class EpochDecay:
    """LambdaLR factor ``decay ** (number of decays in the first n steps)``, a picklable callable.

    schedule "epoch": a decay after every ``steps_per_epoch`` = ceil(N / B) steps -> n // steps_per_epoch.
    schedule "cs231n": a decay after step i whenever ``i % max(N / B, 1) == 0`` (Python float modulo, exact).
    For integers i that holds iff i is a multiple of p, the numerator of the float N / B as an exact fraction
    p / q in lowest terms (i = k p / q needs q | k); so the count is ceil(n / p).
    """

    def __init__(self, decay, num_train, batch_size, schedule):
        if schedule not in ("epoch", "cs231n"):
            raise ValueError(f"lr_schedule must be 'epoch' or 'cs231n', got {schedule!r}")
        self.decay, self.schedule = decay, schedule
        if schedule == "epoch":
            self.period = math.ceil(num_train / batch_size)
        else:
            self.period = Fraction(max(num_train / batch_size, 1)).numerator

    def num_decays(self, n):
        """How many decays happened in steps 0 .. n - 1."""
        if self.schedule == "epoch":
            return n // self.period
        return -(-n // self.period)  # ceil(n / p): steps 0, p, 2p, ... below n

    def __call__(self, n):
        return self.decay ** self.num_decays(n)


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
