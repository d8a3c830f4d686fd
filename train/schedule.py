"""The learning-rate schedule of fit: EpochDecay, the LambdaLR factor of SGD step n."""
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
