"""A class at once: ``python -m verify --submissions DIR [--assignment SPEC] [--jobs N]``.

DIR holds one folder per student. The assignment spec (verify/assignment.py) says which files and targets each
must hold. Each expected file is looked for at any depth, so a flat upload (softmax.py at the top) and cs231n's
layout (assignment1/cs231n/classifiers/softmax.py) both count. When a folder holds several copies, the shallowest
is checked, never one inside a folder whose name says backup or copy, and the report says which was chosen. A
missing file or target is a MISSING row worth 0 points; a student folder that is a symbolic link (dangling,
looping, or pointing elsewhere) gets ERROR rows: verify follows no link out of the class folder.

Every file is checked in its own child process, ``jobs`` at a time (default: the number of cores).

    students = grade_class(Path("class"), spec, jobs=2, limits=Limits(timeout=30))   # [Student]
    students[0].total, students[0].graded[0].result.status                         # 50.0, "PASS"
"""
import errno
import inspect
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from verify.assignment import student_seed
from verify.checks import TargetResult, check_file, write_job

BACKUP = re.compile(r"backup|copy|(^|[^a-z])bak([^a-z]|$)", re.IGNORECASE)  # folders never graded
SKIPPED_DIRS = {"__pycache__", "__MACOSX", ".ipynb_checkpoints"}
NEEDS_PACKAGE = re.compile(r"^[ \t]*(from[ \t]+\.|from[ \t]+cs231n\b|import[ \t]+cs231n\b)", re.MULTILINE)
ABSENT = re.compile(r"^defines no |^unsupported: class \w+ has no \w+ method")  # the target is not there: MISSING
CLASSIFIERS = {"softmax.py", "linear_svm.py", "neural_net.py", "fc_net.py", "linear_classifier.py",
               "k_nearest_neighbor.py", "cnn.py"}  # the files cs231n keeps in cs231n/classifiers/


@dataclass
class Graded:
    """One spec target of one student: the file chosen for it ("-" when none), its result, its points."""

    target: object
    file: str
    result: TargetResult
    points: float


@dataclass
class Student:
    name: str
    graded: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # which copy of each file was chosen, and why

    @property
    def total(self):
        return float(sum(g.points for g in self.graded))

    @property
    def max_points(self):
        return float(sum(g.target.points for g in self.graded))


@dataclass
class Scan:
    """The .py files of one student's folder, by kind: usable, inside a backup/copy folder, symbolic links."""

    files: list = field(default_factory=list)
    backups: list = field(default_factory=list)
    links: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def scan(folder):
    """Every .py file under folder (relative paths), hidden and cache folders skipped, links never followed."""
    found = Scan()

    def unreadable(e):
        found.errors.append(f"{Path(e.filename).relative_to(folder) if e.filename else folder}: {e.strerror}")

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False, onerror=unreadable):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS)
        found.links += [rel / d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        in_backup = any(BACKUP.search(part) for part in rel.parts)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = rel / name
            if os.path.islink(os.path.join(dirpath, name)):
                found.links.append(path)
            else:
                (found.backups if in_backup else found.files).append(path)
    return found


def _matches(rel, file):
    parts = Path(file).parts
    return rel.parts[-len(parts):] == parts


def choose(found, file):
    """(relative path or None, note, error) for one expected file: the shallowest usable copy."""
    usable = sorted((p for p in found.files if _matches(p, file)), key=lambda p: (len(p.parts), str(p)))
    backups = [p for p in found.backups if _matches(p, file)]
    links = [p for p in found.links if _matches(p, file)]
    skipped = [f"{p} (in a backup or copy folder)" for p in backups] + [f"{p} (a symbolic link)" for p in links]
    if not usable:
        if links:
            return None, "", f"{links[0]} is a symbolic link; verify follows no link (submit the file itself)"
        return None, ("only " + ", ".join(skipped) + ": not graded") if skipped else "", ""
    others = [str(p) for p in usable[1:]] + skipped
    note = f"{file}: chose {usable[0]}" + (f" (the shallowest of {len(others) + 1} copies; not graded: "
                                           f"{', '.join(others)})" if others else "")
    return usable[0], note if others else "", ""


def student_folders(directory):
    """[(name, folder or None, error line)] for each entry of the class folder that is a folder or a link (hidden
    names skipped); a link of any kind gets an error line instead of a folder."""
    out = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            try:
                os.stat(entry.path)
                why = f"a symbolic link to {os.readlink(entry.path)}"
            except OSError as e:
                why = ("a symbolic link that loops" if e.errno == errno.ELOOP else
                       f"a dangling symbolic link (to {os.readlink(entry.path)}, which does not exist)")
            out.append((entry.name, None, f"the submission folder is {why}; verify follows no link out of the "
                                          "class folder (copy the submission in)"))
        elif entry.is_dir(follow_symlinks=False):
            out.append((entry.name, Path(entry.path), ""))
    return out


class Jobs:
    """The case file of each seed (None: the fixed cases), written once into a temporary folder."""

    def __init__(self, folder):
        self.folder, self.paths, self.lock = Path(folder), {}, threading.Lock()

    def __call__(self, seed):
        with self.lock:
            if seed not in self.paths:
                sub = self.folder / ("fixed" if seed is None else f"seed{seed}")
                sub.mkdir(exist_ok=True)
                self.paths[seed] = write_job(str(sub)) if seed is None else write_job(str(sub), seed=seed)
            return self.paths[seed]


def seeding_available():
    """Whether this verify can draw seeded cases (write_job takes a seed; the job file carries it to the judge)."""
    return "seed" in inspect.signature(write_job).parameters


def staged(path, rel, folder):
    """(path to check, note): a file of a flat upload that imports its package (``from ..layers import *``,
    ``from cs231n.layers import ...``) is checked from a copy of its folder's .py files laid out as cs231n's package
    under folder (classifiers in cs231n/classifiers/, the rest in cs231n/); any other file as it is."""
    path, rel = Path(path), Path(rel)
    if "cs231n" in rel.parts[:-1] or (path.parent / "__init__.py").is_file():
        return path, ""
    try:
        if not NEEDS_PACKAGE.search(path.read_text(errors="replace")):
            return path, ""
    except OSError:
        return path, ""
    package = Path(folder) / "cs231n"
    (package / "classifiers").mkdir(parents=True)
    for init in (package / "__init__.py", package / "classifiers" / "__init__.py"):
        init.write_text("")
    for sibling in path.parent.glob("*.py"):
        if not sibling.is_symlink():
            shutil.copy(sibling, package / ("classifiers" if sibling.name in CLASSIFIERS else "") / sibling.name)
    place = package / ("classifiers" if path.name in CLASSIFIERS else "") / path.name
    return place, (f"{rel}: imports its package, so it was checked as {place.relative_to(folder)} with the .py "
                   "files beside it")


def _missing(target, why):
    return TargetResult("-", target.name, status="MISSING", message=why)


def _results_of_file(path, spec_targets, job, check):
    """{target name: TargetResult} for the spec's targets of one file (job: the case file, seeded or fixed)."""
    results = {r.name: r for r in check(str(path), job)}
    whole = results.get("(import)")
    if whole is not None and whole.message.startswith("unsupported: no known target"):
        results = {}  # none of the names verify looks for by default: each target is asked for by name
    elif whole is not None:  # the file as a whole failed: every target shares its result
        return {t.name: TargetResult(str(path), t.name, status=whole.status, message=whole.message,
                                     seconds=whole.seconds, output_head=whole.output_head,
                                     output_lines=whole.output_lines) for t in spec_targets}
    for t in spec_targets:
        if t.name not in results:  # not a name found by default (e.g. a method): ask for it by name
            results.update({r.name: r for r in check(str(path), job, name=t.name)})
        r = results.get(t.name)
        if r is None or (r.status == "ERROR" and ABSENT.search(r.message)):
            results[t.name] = _missing(t, f"{Path(path).name} {r.message if r else 'does not define it'}")
    return results


def _plan(name, folder, spec):
    """(Student with its MISSING/ERROR rows and notes, [(path, relative file, [targets])] to check)."""
    student, work = Student(name), []
    if folder is None:
        return student, work
    found = scan(folder)
    student.notes += [f"could not read {e}" for e in found.errors]
    for file in spec.files:
        targets = [t for t in spec.targets if t.file == file]
        rel, note, error = choose(found, file)
        if note:
            student.notes.append(note)
        if rel is None:
            for t in targets:
                result = (TargetResult("-", t.name, status="ERROR", message=error) if error else
                          _missing(t, f"no {file} in the submission" + (f" ({note})" if note else "")))
                student.graded.append(Graded(t, "-", result, 0.0))
            continue
        work.append((folder / rel, str(rel), targets))
    return student, work


def grade_class(directory, spec, jobs=None, reg_convention="auto", limits=None, seed=None, progress=None,
                folders=None):
    """[Student] of a class folder (or of ``folders``: [(name, folder or None, error)]), sorted by name.
    seed: None for the fixed cases, else each student's cases come from student_seed(seed, their name)."""
    folders = student_folders(directory) if folders is None else folders
    students, work = [], []
    for name, folder, error in folders:
        own_seed = None if seed is None else student_seed(seed, name)
        student, todo = _plan(name, folder, spec)
        if error:
            student.graded = [Graded(t, "-", TargetResult("-", t.name, status="ERROR", message=error), 0.0)
                              for t in spec.targets]
        students.append(student)
        work += [(student, own_seed, *item) for item in todo]
    if progress is not None:
        progress.reset(total=len(work))

    def check(where, job, name=None):
        return check_file(where, job, name=name, reg_convention=reg_convention, limits=limits)

    with tempfile.TemporaryDirectory(prefix="verify_jobs_") as tmp, \
            ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        job_for, futures = Jobs(tmp), {}
        for i, (student, s, path, rel, targets) in enumerate(work):
            path, note = staged(path, rel, Path(tmp) / f"staged{i}")
            student.notes += [note] if note else []
            futures[pool.submit(_results_of_file, path, targets, job_for(s), check)] = (student, rel, targets)
        for future in as_completed(futures):
            student, rel, targets = futures[future]
            results = future.result()
            for t in targets:
                r = results[t.name]
                student.graded.append(Graded(t, rel, r, t.score(r)))
            if progress is not None:
                progress.update(1)
    order = {t.label: i for i, t in enumerate(spec.targets)}
    for student in students:
        student.graded.sort(key=lambda g: order[g.target.label])
    return sorted(students, key=lambda s: s.name)
