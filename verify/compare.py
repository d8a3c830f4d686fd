"""How verify compares two numbers or arrays, in one place (NumPy only: the child imports it without torch).

    x = to_float64(tensor_or_array_or_number)     # a float64 NumPy array on the host
    max_abs, max_rel = errors(got, want)           # max |got - want| and max |got - want| / max |want|
    row = Row("random", "dW", "course", relative_error(got, want), 1e-6, passed)

The relative error is normwise, max |got - want| / max |want|: an entry of want that is exactly 0 (behind an
inactive ReLU) cannot blow it up. NaN or inf in got never passes: the error is then nan or inf.
"""
from dataclasses import dataclass

import numpy as np

NAN = float("nan")


def is_tensor(x):
    """A torch tensor, recognised without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_float64(x):
    """A tensor (any device, any dtype), array or number as a float64 NumPy array on the host."""
    if is_tensor(x):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def errors(got, want):
    """(max |got - want|, max |got - want| / max |want|) in float64; 0 for empty arrays; a NaN in got gives nan,
    an inf gives inf, a nonzero got against an all-zero want gives inf."""
    got, want = to_float64(got), to_float64(want)
    if got.size == 0 or want.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
        max_abs = float(np.nan if np.isnan(diff).any() else diff.max())
    scale = float(np.abs(want).max())
    if scale > 0:
        return max_abs, max_abs / scale
    return max_abs, (0.0 if max_abs == 0 else float("inf"))


def relative_error(got, want):
    """max |got - want| / max |want| (see errors)."""
    return errors(got, want)[1]


@dataclass
class Row:
    """One line of a table of checks: ``quantity`` (loss, dW, ...) of ``case`` under ``check`` ("course": the
    course's definition, "own": the target's own loss, or the self-check's implementation name), with its
    relative error against tol."""

    case: str
    quantity: str
    check: str
    max_rel: float
    tol: float
    passed: bool
    note: str = ""
    max_abs: float = NAN

    @property
    def status(self):
        return "PASS" if self.passed else "FAIL"


def compare(case, check, quantity, got, want, tol, note=""):
    """A Row comparing got with want; PASS when the relative error is at most tol (NaN never passes)."""
    max_abs, max_rel = errors(got, want)
    return Row(case, quantity, check, max_rel, tol, bool(max_rel <= tol), note, max_abs)
