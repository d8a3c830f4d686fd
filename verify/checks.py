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
from verify.job import dir_key, fd_key, out_key, read_seed, write_job  # noqa: F401 (write_job: public here too)
from verify.kinds import CONVENTIONS, KINDS, METHOD_KINDS, REG_FACTOR
from verify.sandbox import Limits, run_file
from verify.torch_kinds import SPECS as TORCH_KINDS
from verify.train_checks import judge_method
from verify.verdict import (
    PSEUDO,
    UNIMPLEMENTED,
    explain_rows,
    looks_unimplemented,
    unfinished_line,
    unfinished_quantities,
    verdict,
)

COURSE_RTOL = 1e-6  # float64 code agrees to ~1e-14 whatever its loops or summation order; the smallest error a
# listed mistake makes on these cases is 7e-2 (tests/fixtures/homework), so 1e-6 never confuses the two
OWN_RTOL = 1e-5  # centred differences, h = 1e-5: truncation ~1e-10, rounding ~eps |L| / h (2e-8 at logits 1e3)


CHECK_WORDS = {"course": "against the course", "own": "against your own loss"}
CheckRow = Row  # one line of a target's table: check is "course" (vs autograd) or "own" (vs its own loss)


@dataclass
class TargetResult:
    """status: PASS, FAIL, or ERROR (not checkable for a reason outside the maths: Python 2, a missing module,
    an unsupported API); only verdict() gives a PASS, never to an empty row list. message: the one line of an
    ERROR or of a process that died."""

    where: str
    name: str
    kind: str = ""
    status: str = "FAIL"
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
        order = [*PSEUDO, "stability", *KINDS[self.kind].quantities] if self.kind else []
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
                if r.note and hint != r.note and r.quantity in PSEUDO:
                    hint = r.note
                what = f"{r.quantity} wrong in case '{r.case}' ({CHECK_WORDS.get(r.check, r.check)})" if (
                    r.quantity not in PSEUDO) else r.note
                return f"{what}: {hint}" if hint and hint != what else what
        return "; ".join(self.hints.get("stability", []))


_REFERENCES, _REFERENCES_LOCK = {}, threading.Lock()
SEEDS_KEPT = 64  # seeds whose references stay cached (a class graded with a seed per student)


def references(kind, convention, seed=None):
    """(cases, [reference per case]) of one kind under one convention, for the cases of a seed (None: the fixed
    ones): autograd runs once per process, kind, convention and seed; the last SEEDS_KEPT seeds are kept."""
    with _REFERENCES_LOCK:
        if (kind, convention, seed) not in _REFERENCES:
            from verify.references import reference  # torch: imported on first use, while a child runs

            cases = cases_for(kind, seed)
            _REFERENCES[kind, convention, seed] = cases, [reference(kind, c, convention) for c in cases]
            seeds = list(dict.fromkeys(key[2] for key in _REFERENCES if key[2] is not None))  # oldest first
            for old in seeds[:-SEEDS_KEPT]:
                for key in [key for key in _REFERENCES if key[2] == old]:
                    del _REFERENCES[key]
        return _REFERENCES[kind, convention, seed]


def warm_references(seed=None):
    """Every kind's references under every convention it has (the first call imports torch). A seeded job
    only imports torch here: each seed's references are computed for the kinds its file has, on use."""
    if seed is not None:
        import verify.references  # noqa: F401
        return
    for kind, spec in KINDS.items():
        if kind in METHOD_KINDS or kind in TORCH_KINDS:  # judged on the spy's record, with no autograd reference
            continue
        for convention in (("full", "half") if spec.regularized else ("full",)):
            references(kind, convention)


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


def own_check(kind, cases, metas, fitted, arrays):
    """Question 1, every case: the target's gradients against centred finite differences of its own loss."""
    rows = []
    for i, (case, m, out) in enumerate(zip(cases, metas, fitted)):
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
            rows.append(Row(case.name, q, "own", err, OWN_RTOL, bool(err <= OWN_RTOL), note))
        if m.get("fd_note"):
            rows.append(Row(case.name, "loss", "own", NAN, OWN_RTOL, False,
                            f"its loss failed under a small change of the inputs: {m['fd_note']}"))
    return rows


def course_check(kind, cases, metas, outputs, wants, skip=()):
    """Question 2, every case: the outputs against the course's definition. Returns (rows, the outputs reshaped
    to the course's shapes per case, {quantity: shape notes}); quantities in skip get no rows."""
    rows, fitted, shape_notes = [], [], {}
    for case, m, out, want in zip(cases, metas, outputs, wants):
        fit = {}
        fitted.append(fit)
        if m.get("note"):
            rows.append(Row(case.name, "call", "course", NAN, COURSE_RTOL, False, m["note"]))
            continue
        for q in KINDS[kind].quantities:
            got = out.get(q)
            if q in skip:
                continue
            if got is None:
                rows.append(Row(case.name, q, "course", NAN, COURSE_RTOL, False, f"{q} is None"))
                continue
            arr, note, summed = _fit_shape(q, got, want[q], case.N, shape_notes)
            fit[q] = arr if arr is not None else summed
            if arr is None:
                rows.append(Row(case.name, q, "course", NAN, COURSE_RTOL, False, note))
                continue
            err = relative_error(arr, want[q])
            rows.append(Row(case.name, q, "course", err, COURSE_RTOL, bool(err <= COURSE_RTOL)))
    return rows, fitted, shape_notes


def input_check(cases, metas):
    """(rows, notes) for inputs the target changed in place: a FAIL row each, or a note when harmless."""
    changed = {}
    for case, m in zip(cases, metas):
        for name in m.get("changed", []) if not m.get("note") else []:
            changed.setdefault(name, []).append(case.name)
    rows, notes = [], []
    for name, where in changed.items():
        if name.endswith("(row shift)"):  # harmless to the loss; the caller's array still changes
            notes.append("the target shifts each row of its input x in place (x -= max): the loss is unchanged "
                         "by it, but the caller's array changes")
        elif name == "dout":  # a spent upstream gradient: cs231n's layer_utils and nets never read it again
            notes.append("the target changes its input dout in place (e.g. dx = dout; dx[x <= 0] = 0): harmless "
                         "where dout is not used again, as in cs231n's layer_utils")
        else:
            rows.append(Row(", ".join(where), "inputs", "course", NAN, 0.0, False,
                            f"the target changes its input {name} in place (it was given a copy)"))
    return rows, notes


def _stops_early(result, kind, cases, metas, outputs):
    """Sets result's status and one row when nothing can be compared: an ERROR outside the maths, the untouched
    template, or the same failure in every case. Returns whether it did."""
    errors = [m for m in metas if m.get("status") == "ERROR"]
    notes = [m.get("note") for m in metas]
    if errors:  # Python 2 inside the function, a name NumPy removed: not the maths
        result.status, result.message = "ERROR", errors[0]["note"]
    elif looks_unimplemented(kind, metas, outputs):
        result.status, result.message = "FAIL", UNIMPLEMENTED
        result.rows.append(Row(cases[0].name, "call", "course", NAN, COURSE_RTOL, False, UNIMPLEMENTED))
    elif all(notes) and len(set(notes)) == 1:  # the same failure in every case: one row
        result.status, result.message = metas[0]["status"] or "FAIL", f"{notes[0]} (in every case)"
        result.rows.append(Row("every case", "call", "course", NAN, COURSE_RTOL, False, notes[0]))
    else:
        return False
    return True


def judge(kind, meta, arrays, requested_convention="auto", seed=None):
    """A TargetResult's kind, status, convention, rows and hints from the child's raw outputs on the cases of
    the seed (None: the fixed cases): the course check, the own-loss check, then the verdict."""
    if kind in TORCH_KINDS:  # the PyTorch kit's kinds: verify/torch_checks.py
        from verify.torch_checks import judge as judge_torch

        return TargetResult("", "", kind=kind, **judge_torch(kind, meta, arrays, seed))
    result = TargetResult("", "", kind=kind)
    cases, metas = cases_for(kind, seed), meta["cases"]
    outputs = [{q: arrays[out_key(i, q)] for q in KINDS[kind].quantities if out_key(i, q) in arrays}
               for i in range(len(cases))]
    if _stops_early(result, kind, cases, metas, outputs):
        return result
    convention, how = detect_convention(kind, cases, outputs, requested_convention, seed)
    result.convention = convention
    if convention:
        text, years = CONVENTIONS[convention]
        result.convention_note = f"{convention}: {text} ({years}); {how}"
    _, wants = references(kind, convention or "full", seed)
    scores_note = meta.get("scores_note")  # loss(X) failed: the scores are not checked
    left = unfinished_quantities(kind, metas, outputs, skip_scores=bool(scores_note))
    rows, fitted, shape_notes = course_check(kind, cases, metas, outputs, wants,
                                             skip={*left, *(["scores"] if scores_note else [])})
    rows += own_check(kind, cases, metas, fitted, arrays)
    order = {c.name: i for i, c in enumerate(cases)}
    rows.sort(key=lambda r: order.get(r.case, len(order)))  # simplest case first; course before own
    inputs, notes = input_check(cases, metas)
    if left:
        rows.append(Row("every case", "unfinished", "course", NAN, COURSE_RTOL, False,
                        unfinished_line(kind, left, metas)))
    result.rows, result.notes = rows + inputs, notes + ([scores_note] if scores_note else [])
    result.hints = explain_rows(kind, cases, metas, fitted, rows, shape_notes, convention or "full")
    return verdict(result)


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
                             seconds=time.perf_counter() - start, notes=list(report.notes), **common)]
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
            result = (judge_method(TargetResult(where, n, kind=k), meta, arrays) if k in METHOD_KINDS else
                      judge(k, meta, arrays, reg_convention, seed))
        except Exception as e:  # a shape of output verify did not foresee: one line, never a traceback
            result = TargetResult(where, n, kind=k, status="ERROR",
                                  message=f"verify could not judge the outputs ({type(e).__name__}: {e}); "
                                          "please report this")
        result.where, result.name = where, n
        result.output_head, result.output_lines = report.output_head, report.output_lines
        results.append(result)
    for r in results:  # each target's own time in the child (the import's: the whole file); the file's notes
        r.seconds = report.target_seconds.get(r.name, report.seconds)
        r.notes += report.notes
    return results
