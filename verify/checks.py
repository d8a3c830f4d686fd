"""Checks someone's targets, file by file: runs them in a child (verify/sandbox.py), then answers two questions per
target, in float64, on every case of its kind:

1. own: are the gradients right for the target's own loss? Centred finite differences of its loss along a few
   directions v (random, plus the coordinate of its largest gradient entry) against <its gradient, v>. This
   catches what no reference explains, e.g. b1 missing from the forward pass while it still gets a gradient.
2. course: do the outputs (loss, scores, gradients) match the course's definition, differentiated by
   torch.autograd (verify/references.py)?

    job = write_job(tmp_dir)                                   # every kind's cases, once per run
    results = check_file("hw/cs231n/classifiers/softmax.py", job)   # [TargetResult], one per target found

The regularization convention (``auto``: from the target's loss) is "full", reg*sum(W*W) (cs231n 2017-2019), or
"half", 0.5*reg*sum(W*W) (2016, fc_net.py); a target consistent with either passes and the report names it.
Biases regularized consistently in loss and gradient FAIL: cs231n regularizes the weights only, and a net
trained so differs from the course's.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from verify.cases import LARGE, cases_for
from verify.compare import NAN, Row, relative_error
from verify.hints import UNIMPLEMENTED, diagnose
from verify.job import dir_key, fd_key, out_key, read_seed, write_job  # noqa: F401 (write_job: public here too)
from verify.kinds import CONVENTIONS, KINDS, REG_FACTOR
from verify.sandbox import Limits, run_file

COURSE_RTOL = 1e-6  # float64 code agrees to ~1e-14 whatever its loops or summation order; the smallest error a
# listed mistake makes on these cases is 7e-2 (tests/fixtures/homework), so 1e-6 never confuses the two
OWN_RTOL = 1e-5  # centred differences, h = 1e-5: truncation ~1e-10, rounding ~eps |L| / h (2e-8 at logits 1e3)


CheckRow = Row  # one line of a target's table: check is "course" (vs autograd) or "own" (vs its own loss)


@dataclass
class TargetResult:
    """status: PASS, FAIL, or ERROR (not checkable for a reason outside the maths: Python 2, a missing module,
    an unsupported API); message: the one line of an ERROR or of a process that died."""

    where: str
    name: str
    kind: str = ""
    status: str = "PASS"
    convention: str = ""
    convention_note: str = ""
    rows: list = field(default_factory=list)
    hints: dict = field(default_factory=dict)
    message: str = ""
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    output_head: list = field(default_factory=list)
    output_lines: int = 0

    @property
    def failed_quantities(self):
        order = ["call", "inputs", "stability", *KINDS[self.kind].quantities] if self.kind else []
        qs = {r.quantity for r in self.rows if not r.passed} | ({"stability"} if "stability" in self.hints else
                                                               set())
        return sorted(qs, key=lambda q: order.index(q) if q in order else len(order))

    @property
    def headline(self):
        """One line: the message, or the simplest failing case's quantity with its first hint."""
        if self.message or self.status == "PASS":
            return self.message
        for r in self.rows:  # rows are in case order, simplest first
            if not r.passed:
                hint = next(iter(self.hints.get(r.quantity, [])), "") or r.note
                if r.note and hint != r.note and r.quantity in ("call", "inputs"):
                    hint = r.note
                what = f"{r.quantity} wrong in case '{r.case}' ({r.check})" if r.quantity not in (
                    "call", "inputs") else r.note
                return f"{what}: {hint}" if hint and hint != what else what
        return "; ".join(self.hints.get("stability", []))


_REFERENCES, _REFERENCES_LOCK = {}, threading.Lock()


def references(kind, convention, seed=None):
    """(cases, [reference per case]) of one kind under one convention, for the cases of a seed (None: the fixed
    ones): autograd runs once per process and seed."""
    with _REFERENCES_LOCK:
        if (kind, convention, seed) not in _REFERENCES:
            from verify.references import reference  # torch: imported on first use, while a child runs

            cases = cases_for(kind, seed)
            _REFERENCES[kind, convention, seed] = cases, [reference(kind, c, convention) for c in cases]
        return _REFERENCES[kind, convention, seed]


def warm_references(seed=None):
    """Every kind's references under every convention it has (the first call imports torch)."""
    for kind, spec in KINDS.items():
        for convention in (("full", "half") if spec.regularized else ("full",)):
            references(kind, convention, seed)


def _fit_shape(q, got, want, N, shape_notes):
    """got reshaped to want's shape, or (None, note, summed array for hints)."""
    if got.shape == want.shape or got.size == want.size == 1:
        return got.reshape(want.shape), None, None
    note = f"{q} has shape {got.shape}, expected {want.shape}"
    if got.ndim == want.ndim + 1 and got.shape[1:] == want.shape and got.shape[0] in (1, N):
        if got.shape[0] == 1 and N > 1:
            shape_notes.setdefault(q, set()).add(f"{q} has an extra leading axis of length 1 (keepdims=True, or a "
                                                 f"(1, N) product?): return shape {want.shape}")
        elif N > 1:  # with N = 1 both readings fit; the other cases decide
            shape_notes.setdefault(q, set()).add(
                "bias gradient not summed over the batch: sum the rows of the upstream gradient (axis 0)")
        return None, note, got.sum(axis=0)
    return None, note, None


def detect_convention(kind, cases, outputs, requested, seed=None):
    """(convention, how) for a regularized kind: the requested one, or the one the target's loss uses on the
    reg > 0 cases (its gradient when the loss fits neither), else the kind's course default."""
    spec = KINDS[kind]
    if not spec.regularized:
        return "", ""
    if requested in REG_FACTOR:
        return requested, "given by --reg-convention"
    wants = {c: references(kind, c, seed)[1] for c in REG_FACTOR}
    for quantity in ("loss", *[spec.params[p] for p in spec.regularized]):
        votes = set()  # per reg > 0 case: the set of conventions its output fits
        for i, (case, out) in enumerate(zip(cases, outputs)):
            got = out.get(quantity)
            if case.reg == 0 or case.name == LARGE or got is None or not np.all(np.isfinite(got)):
                continue
            votes.add(frozenset(c for c, want in wants.items() if got.size == np.size(want[i][quantity])
                                and relative_error(got.reshape(np.shape(want[i][quantity])),
                                                   want[i][quantity]) <= COURSE_RTOL))
        if len(votes) == 1 and len(agreed := next(iter(votes))) == 1:  # every case, one convention
            return next(iter(agreed)), f"detected from the {'loss' if quantity == 'loss' else 'gradient'}"
    return spec.default_convention, "the course default for this API (the loss fits neither convention)"


def _own_rows(kind, case, out, arrays, i):
    """Question 1 for one case: the target's gradients against finite differences of its own loss."""
    rows = []
    for p, q in KINDS[kind].params.items():
        fd, dirs = arrays.get(fd_key(i, p)), arrays.get(dir_key(i, p))
        g = out.get(q)
        if fd is None or g is None or g.size != case.arrays[p].size:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            gv = dirs.reshape(len(dirs), -1) @ g.reshape(-1)  # (k,)  <g, v> per direction
            scale = max(float(np.linalg.norm(g)), float(np.max(np.abs(fd))))
            err = float(np.max(np.abs(fd - gv))) / scale if scale > 0 else 0.0
        if not (np.all(np.isfinite(fd)) and np.all(np.isfinite(g))):
            err = NAN  # inf/NaN never passes
        note = ""
        if np.isfinite(err) and err > OWN_RTOL and np.max(np.abs(fd)) <= 1e-9 * max(1.0, scale):
            note = f"{q} is nonzero, but the loss does not change with {p}"
        rows.append(CheckRow(case.name, q, "own", err, OWN_RTOL, bool(err <= OWN_RTOL), note))
    return rows


def _looks_unimplemented(kind, metas, outputs):
    """Every case that ran returned only 0, zeros or None: cs231n's untouched template."""
    ran = [out for m, out in zip(metas, outputs) if not m.get("note")]
    return bool(ran) and not any(out.get(q) is not None and np.any(out[q])
                                 for out in ran for q in KINDS[kind].quantities)


def judge(kind, meta, arrays, requested_convention="auto", seed=None):
    """A TargetResult's kind, status, convention, rows and hints from the child's raw outputs on the cases of
    the seed (None: the fixed cases)."""
    result = TargetResult("", "", kind=kind)
    cases = cases_for(kind, seed)
    metas = meta["cases"]
    outputs = [{q: arrays[out_key(i, q)] for q in KINDS[kind].quantities if out_key(i, q) in arrays}
               for i in range(len(cases))]
    errors = [m for m in metas if m.get("status") == "ERROR"]
    if errors:  # Python 2 inside the function, a name NumPy removed: not the maths
        result.status, result.message = "ERROR", errors[0]["note"]
        return result
    if _looks_unimplemented(kind, metas, outputs):
        result.status, result.message = "FAIL", UNIMPLEMENTED
        result.rows.append(CheckRow(cases[0].name, "call", "course", NAN, COURSE_RTOL, False, UNIMPLEMENTED))
        return result
    notes = [m.get("note") for m in metas]
    if all(notes) and len(set(notes)) == 1:  # the same failure in every case: one row
        result.status, result.message = metas[0]["status"] or "FAIL", f"{notes[0]} (in every case)"
        result.rows.append(CheckRow("every case", "call", "course", NAN, COURSE_RTOL, False, notes[0]))
        return result
    convention, how = detect_convention(kind, cases, outputs, requested_convention, seed)
    result.convention = convention
    if convention:
        text, years = CONVENTIONS[convention]
        result.convention_note = f"{convention}: {text} ({years}); {how}"
    _, wants = references(kind, convention or "full", seed)
    shape_notes, fitted, changed = {}, [], {}
    for i, (case, m, out, want) in enumerate(zip(cases, metas, outputs, wants)):
        fit = {}
        fitted.append(fit)
        if m.get("note"):
            result.rows.append(CheckRow(case.name, "call", "course", NAN, COURSE_RTOL, False, m["note"]))
            continue
        for name in m.get("changed", []):
            changed.setdefault(name, []).append(case.name)
        for q in KINDS[kind].quantities:
            got = out.get(q)
            if got is None and q == "scores" and meta.get("scores_note"):
                continue
            if got is None:
                result.rows.append(CheckRow(case.name, q, "course", NAN, COURSE_RTOL, False, f"{q} is None"))
                continue
            arr, note, summed = _fit_shape(q, got, want[q], case.N, shape_notes)
            fit[q] = arr if arr is not None else summed
            if arr is None:
                result.rows.append(CheckRow(case.name, q, "course", NAN, COURSE_RTOL, False, note))
                continue
            err = relative_error(arr, want[q])
            result.rows.append(CheckRow(case.name, q, "course", err, COURSE_RTOL, bool(err <= COURSE_RTOL)))
        result.rows += _own_rows(kind, case, fit, arrays, i)
        if m.get("fd_note"):
            result.rows.append(CheckRow(case.name, "loss", "own", NAN, OWN_RTOL, False,
                                        f"its loss failed under a small change of the inputs: {m['fd_note']}"))
    for name, where in changed.items():
        if name.endswith("(row shift)"):  # harmless to the loss; the caller's array still changes
            result.notes.append("the target shifts each row of its input x in place (x -= max): the loss is "
                                "unchanged by it, but the caller's array changes")
            continue
        if name == "dout":  # a spent upstream gradient: cs231n's layer_utils and nets never read it again
            result.notes.append("the target changes its input dout in place (e.g. dx = dout; dx[x <= 0] = 0): "
                                "harmless where dout is not used again, as in cs231n's layer_utils")
            continue
        text = f"the target changes its input {name} in place (it was given a copy)"
        result.rows.append(CheckRow(", ".join(where), "inputs", "course", NAN, 0.0, False, text))
    failed = {r.quantity for r in result.rows if not r.passed and r.check == "course"}
    hints = diagnose(kind, cases, fitted, failed & set(KINDS[kind].quantities), convention or "full")
    for q, extra in shape_notes.items():
        hints[q] = sorted(extra) + hints.get(q, [])
    low = sorted({q for m in metas for q in m.get("low_precision", [])})
    if low and not all(r.passed for r in result.rows):  # rounding explains small errors; say so first
        for q in {r.quantity for r in result.rows if not r.passed}:
            hints[q] = [f"returned in low precision ({', '.join(low)} in float32 or less): its rounding and "
                        "the noise of finite differences of a float32 loss exceed the tolerances; compute in "
                        "float64"] + hints.get(q, [])
        hints.pop("stability", None)
    else:
        _generic_hints(result.rows, hints, cases)
    result.hints = hints
    if meta.get("scores_note"):
        result.notes.append(meta["scores_note"])
    result.status = "PASS" if all(r.passed for r in result.rows) and "stability" not in hints else "FAIL"
    return result


def _generic_hints(rows, hints, cases):
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
        if not r.passed and r.check == "course" and r.quantity not in ("call", "inputs"):
            failed_course.setdefault(r.quantity, set()).add(r.case)
            worst[r.quantity] = max(worst.get(r.quantity, 0.0), r.max_rel if r.max_rel == r.max_rel else np.inf)
    forward_wrong = any("forward pass" in h for q in ("scores", "loss") for h in hints.get(q, []))
    for q, where in failed_course.items():
        if hints.get(q):
            continue
        if where == {LARGE}:
            hints[q] = ["see stability"]
            hints.setdefault("stability", [])
            if not hints["stability"]:
                hints["stability"].append("wrong only at logits ~1e3 (finite but off): compute the softmax "
                                          "from the max-shifted scores")
        elif forward_wrong and q not in ("scores", "loss"):
            hints[q] = ["follows from the wrong forward pass (see the scores or loss hint)"]
        elif worst[q] < 1e-3:
            hints[q] = [f"off by a small relative error ({worst[q]:.1e}): rounding, e.g. float32 arithmetic "
                        "somewhere? (this check runs in float64)"]
        else:
            hints[q] = ["does not match any of the common mistakes this tool knows"]


def check_file(where, job, name=None, kind=None, reg_convention="auto", limits=None):
    """[TargetResult] for every target of a file (or for NAME); a file that cannot be loaded gives one result
    named "(import)" (status ERROR, or FAIL when it exited, hung or ran out of memory while importing)."""
    start = time.perf_counter()
    seed = read_seed(job)
    with ThreadPoolExecutor(1) as pool:  # the child runs while this process imports torch for the references
        future = pool.submit(run_file, where, job, name=name, kind=kind, limits=limits or Limits())
        warm_references(seed)
        report = future.result()
    common = dict(output_head=report.output_head, output_lines=report.output_lines)
    if report.load_error is not None:
        status, line = report.load_error
        return [TargetResult(where, name or "(import)", status=status, message=line,
                             seconds=time.perf_counter() - start, **common)]
    results = []
    for n, k, unsupported in report.targets:
        if unsupported is not None:
            results.append(TargetResult(where, n, status="ERROR", message=unsupported, **common))
            continue
        outcome = report.results.get(n, ("died", "not run"))
        if outcome[0] == "died":
            results.append(TargetResult(where, n, kind=k, status="FAIL", message=outcome[1], **common))
            continue
        meta, arrays = outcome[1], outcome[2]
        if "error" in meta:
            results.append(TargetResult(where, n, kind=k, status=meta.get("status", "ERROR"), message=meta["error"],
                                        **common))
            continue
        try:
            result = judge(k, meta, arrays, reg_convention, seed)
        except Exception as e:  # a shape of output verify did not foresee: one line, never a traceback
            result = TargetResult(where, n, kind=k, status="ERROR",
                                  message=f"verify could not judge the outputs ({type(e).__name__}: {e}); "
                                          "please report this")
        result.where, result.name = where, n
        result.output_head, result.output_lines = report.output_head, report.output_lines
        results.append(result)
    elapsed = time.perf_counter() - start
    for r in results:
        r.seconds = elapsed / max(len(results), 1)
    return results
