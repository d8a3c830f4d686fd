"""The learning-rate schedule: EpochDecay, the LambdaLR factor fit and the sweep use.

Usage (TwoLayerNetModule.configure_optimizers builds the scheduler; train/steps.py's lr_at reads it)::

    sched = torch.optim.lr_scheduler.LambdaLR(opt, EpochDecay(0.95, num_train=49000, batch_size=200, schedule="epoch"))
    lr_at(sched, n)       # the lr of step n, 0-based (train/steps.py)
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
