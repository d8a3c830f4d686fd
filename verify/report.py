"""Text and JSON views of TargetResults (verify/checks.py); a class's views are in verify/gradebook.py.

    print(format_target(result))      # one target: convention, the two questions per case, FAIL lines + hints
"""
from collections import Counter

import numpy as np

from verify.kinds import KINDS, METHOD_KINDS
from verify.train_checks import format_method

COLUMNS = {"course": "matches the course", "own": "matches your own loss"}  # a student's words for the checks


def _num(x):
    return "-" if x is None else "nan" if x != x else f"{x:.1e}"


def _output_block(result):
    if not result.output_lines:
        return []
    more = result.output_lines - len(result.output_head)
    lines = [f"the target's code printed {result.output_lines} line(s)" +
             (f"; the first {len(result.output_head)}:" if more > 0 else ":")]
    lines += [f"  | {line[:200]}" for line in result.output_head]
    if more > 0:
        lines.append(f"  ... and {more} more line(s)")
    return lines


def format_target(result):
    """The report of one target (what ``python -m verify --target`` prints for it)."""
    if result.kind in METHOD_KINDS:
        return format_method(result, _output_block(result))
    head = f"== {result.where}:{result.name}"
    if result.kind:
        head += f"  ({result.kind}: {KINDS[result.kind].api}; float64)"
    lines = [head, *_output_block(result)]
    if result.message:
        lines.append(f"{result.status} {result.message}")
        return "\n".join(lines)
    if result.convention_note:
        lines.append(f"convention {result.convention_note}")
    table = rows_by_case(result)
    lines.append("relative errors against the course's definition (torch.autograd) and against centred finite "
                 "differences of your own loss:")
    lines.append(f"{'case':<14} {'quantity':<9} {COLUMNS['course']:>18} {COLUMNS['own']:>21}  result")
    for (case, q), checks in table.items():
        course, own = checks.get("course"), checks.get("own")
        ok = all(r.passed for r in checks.values())
        note = "; ".join(r.note for r in checks.values() if r.note)
        lines.append(f"{case[:14]:<14} {q:<9} {_num(course.max_rel if course else None):>18} "
                     f"{_num(own.max_rel if own else None):>21}  {'PASS' if ok else 'FAIL'}"
                     + (f"  {note}" if note else ""))
    for q in result.failed_quantities:
        if q == "stability":
            lines += [f"FAIL stability: {h}" for h in result.hints["stability"]]
            continue
        bad = [r for r in result.rows if r.quantity == q and not r.passed]
        if bad:
            first = bad[0]
            size = first.note or (f"rel err {_num(first.max_rel)} in case '{first.case}' "
                                  f"({'against the course' if first.check == 'course' else 'against your own loss'})")
            lines.append(f"FAIL {q}: {size}")
        else:
            lines.append(f"FAIL {q}:")
        lines += [f"  hint: {h}" for h in result.hints.get(q, [])]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"result: {result.status}" + (f" ({', '.join(result.failed_quantities)})"
                                               if result.status != "PASS" else ""))
    return "\n".join(lines)


def summary_counts(results):
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in ("PASS", "FAIL", "ERROR"))


def to_json(result, submission=None):
    """One target as a JSON-ready dict (nan/inf become strings)."""
    rows = []
    for r in result.rows:
        rows.append({"case": r.case, "quantity": r.quantity, "check": r.check, "status": r.status, "tol": r.tol,
                     "max_rel": r.max_rel if np.isfinite(r.max_rel) else str(r.max_rel), "note": r.note})
    out = {"file": result.where, "name": result.name, "kind": result.kind, "status": result.status,
           "convention": result.convention, "convention_note": result.convention_note,
           "failed": result.failed_quantities, "headline": result.headline, "hints": result.hints,
           "message": result.message, "notes": result.notes, "seconds": round(result.seconds, 3),
           "output_lines": result.output_lines, "rows": rows}
    if submission is not None:
        out = {"submission": submission, **out}
    return out


def rows_by_case(result):
    """{(case, quantity): {check: row}} of a target's rows, in order; the "unfinished" rows (one line for every
    case) are said once elsewhere."""
    table = {}
    for r in result.rows:
        if r.quantity != "unfinished":
            table.setdefault((r.case, r.quantity), {})[r.check] = r
    return table
