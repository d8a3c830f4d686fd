"""What a target's rows mean for the student: the hints beyond the mistake models (verify/hints.py), the one line
of a template left half-finished, and the verdict.

    hints = explain_rows(kind, cases, metas, fitted, rows, shape_notes, "full")   # {quantity: [hint, ...]}
    result = verdict(result)      # PASS only with at least one computed row, every row passing, no stability hint
"""
import numpy as np

from verify.cases import LARGE
from verify.hints import UNIMPLEMENTED, diagnose, shared_causes
from verify.kinds import KINDS

PSEUDO = ("call", "inputs", "unfinished")  # row quantities that are not outputs: their note is the whole story
NOTHING_CHECKED = "nothing was checked: no case gave a quantity to compare (verify never counts that as a PASS)"
NETS = ("two_layer", "fc_net")
OVERFLOW = ("raised OverflowError at logits ~1e3 (math.exp overflows past ~709): no max subtraction? subtract "
            "each row's max score before exp (softmax is unchanged by it)")

__all__ = ["UNIMPLEMENTED", "NOTHING_CHECKED", "explain_rows", "looks_unimplemented", "unfinished_line",
           "unfinished_quantities", "verdict"]


def verdict(result):
    """Sets result.status: PASS when it has rows, every row passed and there is no stability hint; an empty row
    list is never a PASS."""
    if not result.rows:
        result.status, result.message = "FAIL", result.message or NOTHING_CHECKED
        return result
    passed = all(r.passed for r in result.rows) and "stability" not in result.hints
    result.status = "PASS" if passed else "FAIL"
    return result


def looks_unimplemented(kind, metas, outputs):
    """Every case that ran returned only 0, zeros or None: cs231n's untouched template."""
    ran = [out for m, out in zip(metas, outputs) if not m.get("note")]
    return bool(ran) and not any(out.get(q) is not None and np.any(out[q])
                                 for out in ran for q in KINDS[kind].quantities)


def unfinished_quantities(kind, metas, outputs, skip_scores=False):
    """The quantities still None (or absent, or exactly 0) in every case that ran while others are filled in:
    a template finished only in part, e.g. the forward pass written and ``loss = None``, ``grads = {}``."""
    ran = [out for m, out in zip(metas, outputs) if not m.get("note")]
    qs = [q for q in KINDS[kind].quantities if not (q == "scores" and skip_scores)]
    left = [q for q in qs if ran and all(out.get(q) is None or not np.any(out[q]) for out in ran)]
    return left if len(left) < len(qs) else []


def _join(names):
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _to_do(kind, left):
    """What is left to write, in the course's words."""
    grads = [q for q in left if q in KINDS[kind].params.values()]
    todo = []
    if "scores" in left or "out" in left:
        todo.append(f"the forward pass ({'scores' if 'scores' in left else 'out'})")
    if "loss" in left:
        todo.append("the loss (softmax of the scores, plus the regularization)" if kind in NETS else "the loss")
    if grads and kind in NETS:
        todo.append(f"the backward pass ({_join([f'grads[{q!r}]' for q in grads])})")
    elif grads:
        todo.append(f"the gradient{'s' if len(grads) > 1 else ''} {_join(grads)}")
    return todo


def unfinished_line(kind, left, metas):
    """One line: which quantities are still None, absent or 0, and what is left to do."""
    ran = [m for m in metas if not m.get("note")]
    absent = [q for q in left if ran and all(q in m.get("absent", []) for m in ran)]
    none = [q for q in left if q not in absent and all(q in m.get("nones", []) for m in ran)]
    zero = [q for q in left if q not in absent and q not in none]
    label = (lambda q: f"grads['{q}']" if q in KINDS[kind].params.values() else q) if kind in NETS else str
    said = [f"{_join([label(q) for q in qs])} {'is' if len(qs) == 1 else 'are'} {what}"
            for qs, what in ((none, "None"), (zero, "0")) if qs]
    if absent:
        said.append(f"grads has no {_join(absent)}")
    return f"looks unfinished: {'; '.join(said)} in every case; left to do: {_join(_to_do(kind, left))}"


def explain_rows(kind, cases, metas, fitted, rows, shape_notes, convention):
    """{quantity: [hint, ...]} for the failing rows: the mistake models, shape notes, low precision, then the
    generic hints; a mistake that explains several quantities is named on each of them."""
    failed = {r.quantity for r in rows if not r.passed}
    hints = diagnose(kind, cases, fitted, failed & set(KINDS[kind].quantities), convention)
    for q, extra in shape_notes.items():
        hints[q] = sorted(extra) + hints.get(q, [])
    if any(r.quantity == "call" and r.case == LARGE and "OverflowError" in r.note for r in rows):
        hints.setdefault("stability", []).append(OVERFLOW)
    low = sorted({q for m in metas for q in m.get("low_precision", [])})
    if low and failed:  # rounding explains small errors; say so first
        for q in failed - set(PSEUDO):
            hints[q] = [f"returned in low precision ({', '.join(low)} in float32 or less): its rounding and the "
                        "noise of finite differences of a float32 loss exceed the tolerances; compute in "
                        "float64"] + hints.get(q, [])
        hints.pop("stability", None)
        return hints
    shared_causes(kind, hints, {r.quantity for r in rows if not r.passed and r.quantity not in PSEUDO})
    generic_hints(rows, hints)
    return hints


def generic_hints(rows, hints):
    """Hints no mistake model gives: own-loss disagreements, a failure only at large logits, no match."""
    for r in rows:
        if r.passed or r.check != "own":
            continue
        text = (f"{r.note}: is it missing from the forward pass?" if r.note else
                f"{r.quantity} is not the derivative of your own loss (centred finite differences disagree)")
        if r.case != LARGE and text not in hints.get(r.quantity, []):
            hints.setdefault(r.quantity, []).append(text)
    failed_course, worst = {}, {}
    for r in rows:
        if not r.passed and r.check == "course" and r.quantity not in PSEUDO:
            failed_course.setdefault(r.quantity, set()).add(r.case)
            worst[r.quantity] = max(worst.get(r.quantity, 0.0), r.max_rel if r.max_rel == r.max_rel else np.inf)
    for q, where in failed_course.items():
        if hints.get(q):
            continue
        if where == {LARGE}:
            hints[q] = ["see stability"]
            hints.setdefault("stability", [])
            if not hints["stability"]:
                hints["stability"].append("wrong only at logits ~1e3 (finite but off): compute the softmax "
                                          "from the max-shifted scores")
        elif worst[q] < 1e-3:
            hints[q] = [f"off by a small relative error ({worst[q]:.1e}): rounding, e.g. float32 arithmetic "
                        "somewhere? (this check runs in float64)"]
        else:
            hints[q] = ["does not match any of the common mistakes this tool knows"]
