"""A graded class's outputs: the terminal summary, the CSV of targets, the gradebook, feedback files, and
Gradescope's results.json.

    print(format_class(students))                   # one line per target, the choices made, the counts
    write_csv("class.csv", students)               # one row per target: status, points, every hint, its time
    write_gradebook("grades.csv", spec, students)  # one row per student: a column per target, total, maximum
    write_feedback("feedback/", spec, students)    # feedback/<student>.md
    results = gradescope_results(spec, student)    # Gradescope's results.json as a dict

Every file is written atomically (a temporary file, fsync, rename): an interrupted run leaves the old file or the
new one, never half of one.
"""
import csv
import dataclasses
import io
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from verify.report import format_target

CSV_COLUMNS = ("submission", "file", "name", "kind", "status", "points", "max_points", "convention", "quantities",
               "hint", "seconds")
STATUSES = ("PASS", "FAIL", "ERROR", "MISSING")
DETAIL_LINES = 120  # of a target's table in a feedback file or a Gradescope test's output


def write_atomic(path, text):
    """Write text to path through a temporary file in the same folder, fsynced, then renamed over path."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def all_hints(result):
    """Every failing quantity with every hint ("dW: hint; other | b1: hint"), or the result's one-line message."""
    if result.message:
        return result.message
    parts = []
    for q in result.failed_quantities:
        hints = result.hints.get(q) or [r.note for r in result.rows if r.quantity == q and not r.passed and r.note]
        parts.append(f"{q}: {'; '.join(dict.fromkeys(hints))}" if hints else q)
    return " | ".join(parts + [f"note: {n}" for n in result.notes])


def counts(students):
    c = Counter(g.result.status for s in students for g in s.graded)
    return ", ".join(f"{c[s]} {s}" for s in STATUSES if c[s] or s != "MISSING")


def _points(x):
    return f"{x:g}"


def format_class(students):
    """The class summary: one line per target, each student's total, the copies chosen, then the counts."""
    rows = [(s.name, g.file, g.target.name, g.result.status, f"{_points(g.points)}/{_points(g.target.points)}",
             (g.result.message or all_hints(g.result))[:140]) for s in students for g in s.graded]
    width = max([len("submission")] + [len(r[0]) for r in rows])
    fwidth = max([len("file")] + [len(r[1]) for r in rows])
    lines = [f"{'submission':<{width}} {'file':<{fwidth}} {'name':<24} {'status':<7} {'points':>7}  hint"]
    lines += [f"{a:<{width}} {b:<{fwidth}} {c[:24]:<24} {d:<7} {e:>7}  {f}" for a, b, c, d, e, f in rows]
    lines += [f"{s.name}: {note}" for s in students for note in s.notes]
    lines += [f"{s.name}: {_points(s.total)} / {_points(s.max_points)} points" for s in students]
    lines.append(f"{len(rows)} targets of {len(students)} submission(s): {counts(students)}")
    return "\n".join(lines)


def csv_rows(students):
    return [{"submission": s.name, "file": g.file, "name": g.target.name, "kind": g.result.kind,
             "status": g.result.status, "points": _points(g.points), "max_points": _points(g.target.points),
             "convention": g.result.convention, "quantities": ";".join(g.result.failed_quantities),
             "hint": all_hints(g.result), "seconds": f"{g.result.seconds:.2f}"}
            for s in students for g in s.graded]


def _csv_text(columns, rows):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path, students):
    write_atomic(path, _csv_text(CSV_COLUMNS, csv_rows(students)))


def write_gradebook(path, spec, students):
    """One row per student: submission, a column of points per target (FILE:NAME), total, max."""
    columns = ["submission", *(t.label for t in spec.targets), "total", "max"]
    rows = []
    for s in students:
        row = {"submission": s.name, "total": _points(s.total), "max": _points(spec.max_points)}
        row.update({g.target.label: _points(g.points) for g in s.graded})
        rows.append(row)
    write_atomic(path, _csv_text(columns, rows))


def _detail(result, file):
    lines = format_target(dataclasses.replace(result, where=file)).splitlines()  # the student's own path
    if len(lines) > DETAIL_LINES:
        lines = lines[:DETAIL_LINES] + [f"... {len(lines) - DETAIL_LINES} more line(s)"]
    return "```\n" + "\n".join(lines).replace("```", "'''") + "\n```"


def target_markdown(graded):
    """What a student reads about one target: status and points, the failing quantities with every hint, the
    table."""
    r = graded.result
    lines = [f"**{r.status}**: {_points(graded.points)} / {_points(graded.target.points)} points"
             + (f" (file `{graded.file}`)" if graded.file != "-" else "")]
    if r.message:
        lines += ["", r.message]
    for q in ([] if r.message else r.failed_quantities):
        hints = r.hints.get(q) or [x.note for x in r.rows if x.quantity == q and not x.passed and x.note]
        lines.append(f"- **{q}** is wrong" + ("" if hints else "."))
        lines += [f"  - hint: {h}" for h in dict.fromkeys(hints)]
    lines += [f"- note: {n}" for n in r.notes]
    if r.rows or r.output_lines:
        lines += ["", _detail(r, graded.file)]
    return "\n".join(lines)


def feedback_markdown(spec, student):
    lines = [f"# {spec.name}: feedback for {student.name}", "",
             f"**{_points(student.total)} / {_points(student.max_points)} points**", "",
             "| target | status | points |", "|---|---|---|"]
    lines += [f"| `{g.target.label}` | {g.result.status} | {_points(g.points)} / {_points(g.target.points)} |"
              for g in student.graded]
    lines += ["", *[f"- {n}" for n in student.notes]] if student.notes else []
    for g in student.graded:
        lines += ["", f"## `{g.target.label}`", "", target_markdown(g)]
    return "\n".join(lines) + "\n"


def feedback_name(student_name):
    """A file name for a student's feedback: their folder's name with anything unusual replaced."""
    return re.sub(r"[^\w.-]", "_", student_name).lstrip(".") + ".md"


def write_feedback(folder, spec, students):
    """folder/<student>.md for each student; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in students:
        paths.append(folder / feedback_name(s.name))
        write_atomic(paths[-1], feedback_markdown(spec, s))
    return paths


def gradescope_results(spec, student, seconds=None, output=""):
    """Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications"): one test
    per target with the spec's points and visibility, the failing quantities and hints as Markdown."""
    tests = []
    for i, g in enumerate(student.graded, 1):
        tests.append({"name": g.target.label, "number": str(i), "score": g.points, "max_score": g.target.points,
                      "status": "passed" if g.result.status == "PASS" else "failed",
                      "output": target_markdown(g), "output_format": "md", "visibility": g.target.visibility,
                      "tags": [t for t in (g.target.file, g.result.kind, g.result.status.lower()) if t]})
    notes = "\n".join(f"- {n}" for n in student.notes)
    results = {"score": student.total, "output": "\n\n".join(x for x in (output, notes) if x),
               "output_format": "md", "test_output_format": "md", "test_name_format": "text", "tests": tests}
    if seconds is not None:
        results["execution_time"] = round(seconds)
    return results
