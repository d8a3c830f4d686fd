"""A whole class at once: ``python -m verify --submissions DIR [--jobs N] [--csv F] [--json F]``.

DIR holds one folder per student. In each, every cs231n-layout file at any depth is checked (FILE_PATTERNS),
every known target in it, each file in its own child process; ``--jobs`` children run at once (default: the
number of cores). The parent computes the autograd references once, while the first children run, and shares
them.

    entries = check_class(Path("submissions"), job, jobs=2)   # [(submission, file, TargetResult)]
"""
import os
from concurrent.futures import ThreadPoolExecutor, as_completed

from verify.checks import TargetResult, check_file

FILE_PATTERNS = ("cs231n/classifiers/softmax.py", "cs231n/classifiers/neural_net.py",
                 "cs231n/classifiers/fc_net.py", "cs231n/classifiers/linear_svm.py",
                 "cs231n/classifiers/linear_classifier.py", "cs231n/layers.py",
                 "cs231n/layer_utils.py")


def find_files(submission):
    """The cs231n-layout files under one student's folder, at any depth (hidden folders skipped)."""
    found = []
    for pattern in FILE_PATTERNS:
        for path in submission.rglob(pattern):
            rel = path.relative_to(submission)
            if not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                found.append(path)
    return sorted(set(found))


def check_class(directory, job, jobs=None, reg_convention="auto", limits=None, progress=None):
    """[(submission, file relative to it, TargetResult)] sorted by submission and file; a submission without
    any cs231n file gets one ERROR entry."""
    submissions = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    work, entries = [], []
    for sub in submissions:
        files = find_files(sub)
        if not files:
            entries.append((sub.name, "-", TargetResult("-", "-", status="ERROR",
                                                         message="no cs231n file found (" +
                                                                 ", ".join(FILE_PATTERNS) + ")")))
        work += [(sub, f) for f in files]
    jobs = jobs or os.cpu_count() or 1
    if progress is not None:
        progress.reset(total=len(work))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(check_file, str(f), job, reg_convention=reg_convention, limits=limits): (s, f)
                   for s, f in work}
        for future in as_completed(futures):
            sub, f = futures[future]
            for result in future.result():
                entries.append((sub.name, str(f.relative_to(sub)), result))
            if progress is not None:
                progress.update(1)
    return sorted(entries, key=lambda e: (e[0], e[1]))
