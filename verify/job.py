"""verify's wire format between the parent (checks.py, sandbox.py) and the child (_child.py), in one place (NumPy
only: the child reads it without torch).

    path = write_job(folder, seed=None)          # the cases of every kind -> folder/cases.npz
    cases, seed = read_job(path)                 # {kind: [Case]} and the seed they were drawn with (None: fixed)
    argv = child_argv(path, out_dir, where, name, kind, max_memory, skip, fd)  # the child's positional fields
    args = parse_child_argv(argv)                # ChildArgs(job, out, where, name, kind, max_memory, skip, fd)
    write_result(path, meta, arrays); meta, arrays = read_result(path)           # one target's outputs
    progress.write(event_line("start", name="f")); parse_event(line)             # the JSON-line events

The job file's keys are ``kind/i/name/field``: field is an input array's name (W, X, y, ...) or ``reg``; the key
``seed`` holds the seed (-1: the fixed cases). A result's keys are ``i/out/quantity`` (an output),
``i/fd/param`` and ``i/dir/param`` (finite differences and their directions); in the .npz file "/" is written
"|" (np.savez would read "/" as a folder), and the JSON metadata sits under ``meta``.
"""
import json
from typing import NamedTuple

import numpy as np

from verify.cases import CASE_BUILDERS, Case, cases_for

NO_SEED = -1
NONE = "-"  # an argv field left empty (no NAME, no KIND)
EVENTS = ("load_error", "loaded", "start", "done", "finished")  # child -> parent, in order of a run


# ---- the job: the cases of every kind ----

def case_key(kind, i, name, field):
    """The job key of one field of a kind's i-th case: 'kind/i/name/field'."""
    return f"{kind}/{i}/{name}/{field}"


def job_arrays(seed=None, kinds=None):
    """{key: array} of every kind's cases (fixed when seed is None, else drawn with that seed)."""
    arrays = {"seed": np.array(NO_SEED if seed is None else int(seed))}
    for kind in kinds or CASE_BUILDERS:
        for i, case in enumerate(cases_for(kind, seed)):
            arrays[case_key(kind, i, case.name, "reg")] = np.array(case.reg)
            arrays.update({case_key(kind, i, case.name, k): v for k, v in case.arrays.items()})
    return arrays


def write_job(folder, seed=None):
    """Write every kind's cases to folder/cases.npz (the child's input) and return its path; seed None: the
    fixed cases, an int: cases drawn afresh (cases.py)."""
    path = f"{folder}/cases.npz"
    np.savez(path, **job_arrays(seed))
    return path


def read_job(path):
    """({kind: [Case]}, seed or None) from a job file (read with allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as data:
        seed = int(data["seed"]) if "seed" in data.files else NO_SEED
        cases = {}
        for key in data.files:
            if key == "seed":
                continue
            kind, i, name, field = key.split("/")
            case = cases.setdefault(kind, {}).setdefault(int(i), Case(name))
            if field == "reg":
                case.reg = float(data[key])
            else:
                case.arrays[field] = data[key]
    return {k: [v[i] for i in sorted(v)] for k, v in cases.items()}, (None if seed == NO_SEED else seed)


def read_seed(path):
    """The seed a job file's cases were drawn with (None: the fixed cases)."""
    with np.load(path, allow_pickle=False) as data:
        seed = int(data["seed"]) if "seed" in data.files else NO_SEED
    return None if seed == NO_SEED else seed


# ---- the child's command line ----

class ChildArgs(NamedTuple):
    """The child's positional argv: JOB OUT WHERE NAME KIND MAX_MEMORY SKIP FD."""

    job: str  # the job file
    out: str  # the folder for OUT/<name>.npz
    where: str  # a .py path or a module name
    name: str | None  # one target, or None: every known name
    kind: str | None  # --kind, or None: detected
    max_memory: int  # bytes of address space; 0: no cap
    skip: frozenset  # targets already done (by an earlier child)
    fd: int  # the progress pipe's descriptor


def child_argv(job, out, where, name, kind, max_memory, skip, fd):
    """The child's argv fields as strings (NAME/KIND "-" for none; SKIP comma-separated)."""
    return [str(job), str(out), str(where), name or NONE, kind or NONE, str(int(max_memory)),
            ",".join(sorted(skip)), str(fd)]


def parse_child_argv(argv):
    """ChildArgs from the fields child_argv wrote."""
    job, out, where, name, kind, max_memory, skip, fd = argv[:len(ChildArgs._fields)]
    return ChildArgs(job, out, where, None if name == NONE else name, None if kind == NONE else kind,
                     int(max_memory), frozenset(filter(None, skip.split(","))), int(fd))


# ---- one target's result ----

def out_key(i, quantity):
    """The result key of case i's output of a quantity."""
    return f"{i}/out/{quantity}"


def fd_key(i, param):
    """The result key of case i's finite differences of the own loss in param."""
    return f"{i}/fd/{param}"


def dir_key(i, param):
    """The result key of the directions of those finite differences, (k, *param shape)."""
    return f"{i}/dir/{param}"


def write_result(path, meta, arrays):
    """One target's JSON metadata and arrays to an .npz ('/' in keys written '|')."""
    np.savez(path, meta=np.array(json.dumps(meta)), **{k.replace("/", "|"): v for k, v in arrays.items()})


def read_result(path):
    """(meta, arrays) from write_result's file; raises OSError, ValueError or KeyError when unreadable."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k.replace("|", "/"): data[k] for k in data.files if k != "meta"}
        return json.loads(str(data["meta"])), arrays


# ---- progress events: one JSON object per line on a pipe ----

def event_line(event, **fields):
    """The line the child writes for an event (one of EVENTS)."""
    return json.dumps({"event": event, **fields}) + "\n"


def parse_event(line):
    """The event dict of a line, or None when the line is not one of ours (the student's code wrote to the pipe)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("event") in EVENTS else None
