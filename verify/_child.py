"""The child process that runs someone's code: ``python -c "...verify._child.main()" JOB OUT WHERE NAME ...``
(the fields and files are verify/job.py's).

It imports NumPy and the student's file, never torch (unless the student's code does), runs every target found on
the cases in JOB (an .npz written by the parent, read with allow_pickle=False), and writes each target's outputs
to OUT/<name>.npz. It reports progress as JSON lines on a pipe ("loaded", "start", "done"), so the
parent can give each target its own time limit. stdout and stderr are a pipe its supervisor reads
(verify/_supervisor.py); stdin is closed.

For every case it records the target's outputs (loss, gradients, scores, ...) and, for every parameter, centred
finite differences of the target's *own* loss along a few directions: (L(p + h v) - L(p - h v)) / 2h. The parent
compares them with the target's own gradient <g, v> and with torch.autograd; the child judges nothing.
"""
import os
import resource
import signal
import sys
import warnings
from pathlib import Path

import numpy as np

from verify import job as wire
from verify import torch_loops
from verify.calls import LOW_PRECISION_SEEN, BadCall, Runner, as_array  # noqa: F401 (as_array: public here too)
from verify.kinds import KNOWN_NAMES, METHOD_KINDS, Unsupported, detect_kind
from verify.loading import assignment_root, explain, import_target
from verify.spy import run_method, with_methods

OUTPUT_FILE_LIMIT = 64 * 2**20  # bytes any file the child writes may reach (not its stdout and stderr: a pipe)


def targets_in(module, name, kind_override):
    """[(name, kind or None, error line or None)] for NAME, or for every known name the module defines."""
    if name:
        if not hasattr(module, name):
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            raise BadCall("ERROR", f"defines no {name!r} (it defines: {', '.join(names[:20]) or 'nothing'})")
        found = [(name, getattr(module, name))]
    else:
        found = [(n, getattr(module, n)) for n in KNOWN_NAMES if getattr(getattr(module, n, None), "__module__",
                                                                         None) == module.__name__]
        if not found:
            raise BadCall("ERROR", "unsupported: no known target in this file; expected one of "
                                   f"{', '.join(KNOWN_NAMES)} (or give FILE.py:NAME)")
    out = []
    for n, obj in found:
        try:
            out.append((n, detect_kind(n, obj, kind_override), None))
        except Unsupported as e:
            out.append((n, None, str(e)))
    return out


def run_target(name, kind, module, cases, root):
    """{"arrays": {...}, "meta": {...}} for one target: per case its outputs and finite differences, or a note."""
    arrays, meta = {}, {"cases": []}
    runner = Runner(kind, getattr(module, name), module, root)
    for i, case in enumerate(cases):
        entry = {"name": case.name, "nones": [], "changed": [], "note": None, "status": None}
        meta["cases"].append(entry)
        LOW_PRECISION_SEEN.clear()
        try:
            try:
                outs, changed = runner.outputs(case)
            except BadCall as numpy_error:
                if runner.mode != "numpy" or "torch" not in sys.modules or i > 0:
                    raise
                runner.mode = "torch"  # code written for torch tensors: give it tensors
                try:
                    outs, changed = runner.outputs(case)
                except BadCall as torch_error:  # torch code that refused NumPy arrays: its error on tensors
                    runner.mode = "torch" if "numpy.ndarray" in numpy_error.line else "numpy"
                    raise (torch_error if runner.mode == "torch" else numpy_error) from None
            entry["changed"], entry["absent"] = changed, runner.absent
            entry["low_precision"] = sorted(LOW_PRECISION_SEEN)
            for q, v in outs.items():
                if v is None:
                    entry["nones"].append(q)
                else:
                    arrays[wire.out_key(i, q)] = v
            if runner.kind.params and "loss" not in entry["nones"]:
                try:
                    fds = runner.finite_differences(case, outs)
                    for p, (fd, dirs) in fds.items():
                        arrays[wire.fd_key(i, p)], arrays[wire.dir_key(i, p)] = fd, dirs
                except BadCall as e:
                    entry["fd_note"] = e.line
        except BadCall as e:
            entry["note"], entry["status"] = e.line, e.status
        except BaseException as e:  # a failure inside this module's handling of odd returns: still one line
            entry["status"], entry["note"] = explain(e, root)
    meta["mode"], meta["scores_note"] = runner.mode, runner.scores_note
    return {"arrays": arrays, "meta": meta}


def _limit_resources(max_memory):
    if max_memory:
        resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_FILE_LIMIT, OUTPUT_FILE_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the child


def main(argv=None):
    """argv: the fields of verify.job.child_argv (JOB OUT WHERE NAME KIND MAX_MEMORY SKIP FD)."""
    args = wire.parse_child_argv(argv or sys.argv[1:])
    _limit_resources(args.max_memory)
    progress = os.fdopen(args.fd, "w", buffering=1)
    emit = lambda event, **fields: progress.write(wire.event_line(event, **fields))
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    cases, _ = wire.read_job(args.job)
    where = args.where
    root = assignment_root(where) if where.endswith(".py") else None
    root = root or (Path(where).resolve().parent if where.endswith(".py") else Path.cwd())
    try:
        module = import_target(where)
    except BaseException as e:
        status, line = explain(e, root)
        if status == "FAIL" and not isinstance(e, (SystemExit, MemoryError, KeyboardInterrupt)):
            status, line = "ERROR", f"cannot be imported: {line}"
        emit("load_error", status=status, message=line)
        return
    try:
        targets = with_methods(targets_in, module, args.name, args.kind)  # plus train/predict (verify/spy.py)
    except BadCall as e:
        emit("load_error", status=e.status, message=e.line)
        return
    emit("loaded", targets=[[n, k, err] for n, k, err in targets])
    for n, k, err in targets:
        if err is not None or n in args.skip:
            continue
        emit("start", name=n)
        try:
            result = (run_method(n, k, module, root) if k in METHOD_KINDS else
                      torch_loops.run_target(n, k, module, cases, root) if k in torch_loops.CASES else  # the kit's
                      run_target(n, k, module, cases[k], root))
        except BadCall as e:
            result = {"arrays": {}, "meta": {"error": e.line, "status": e.status}}
        wire.write_result(Path(args.out) / f"{n}.npz", result["meta"], result["arrays"])
        emit("done", name=n)
    emit("finished")  # the parent need not wait for threads or atexit handlers the student's code left
