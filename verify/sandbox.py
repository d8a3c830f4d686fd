"""Runs someone's file in child processes with limits, and says how each target ended.

    report = run_file("hw/cs231n/classifiers/softmax.py", job, limits=Limits(timeout=60, max_memory=4 * 2**30))
    report.load_error           # (status, line) when the file cannot be imported, else None
    report.targets              # [(name, kind, unsupported line or None)]
    report.results[name]        # ("done", meta, arrays) or ("died", "time limit: ...")
    report.target_seconds[name] # its own time in the child, from its start to its result (or its death)

Each child (verify/_child.py) imports NumPy and the student's code only. Limits: a wall-clock limit per target
(from the moment it starts; the import has its own), an address-space cap (RLIMIT_AS), a cap on the size of any
file it writes, stdin closed.

Each child runs under a supervisor process (verify/_supervisor.py) that reads its stdout and stderr (import time
included) from a pipe at the file-descriptor level: the first SHOWN_OUTPUT_LINES lines are kept and the rest
counted, so a flood of prints costs neither memory nor disk, and never fails the student's print(). When the child
finishes, dies or runs out of time, the supervisor kills every process it started, also daemons that called
setsid() (it is their subreaper on Linux; elsewhere only the child's process group is killed), and reaps them
before run_file moves on. A child that dies in the middle of a target (os._exit, a signal, the time limit) gets
that target marked, and a fresh child checks the rest.

This is isolation from mistakes, not a security sandbox: the student's code runs with the user's rights and can
read and write their files. Run code you do not trust in a container.
"""
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from verify import job as wire
from verify.loading import assignment_root

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
SHOWN_OUTPUT_LINES = 20
CHILD_CODE = (f"import os, sys; sys.path[0] = {PROJECT_ROOT!r}; from verify._supervisor import flush_first_lines; "
              "flush_first_lines(); from verify._child import main; main(); "
              "sys.stdout.flush(); sys.stderr.flush(); os._exit(0)")  # skip the student's atexit and threads
SUPERVISOR_CODE = f"import sys; sys.path[0] = {PROJECT_ROOT!r}; from verify._supervisor import main; main()"
EXIT_SECONDS = 5.0  # after its last result, the child's time to flush its output and exit before it is killed
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass
class Limits:
    timeout: float = 60.0  # seconds per target (and for the import)
    max_memory: int = 4 * 2**30  # bytes of address space; 0: no cap

    def describe(self):
        memory = f"{self.max_memory / 2**30:.3g} GiB" if self.max_memory else "no cap"
        return f"each target in a child process: time limit {self.timeout:g} s, memory cap {memory}"


@dataclass
class FileReport:
    where: str
    load_error: tuple = None
    targets: list = field(default_factory=list)
    results: dict = field(default_factory=dict)
    output_head: list = field(default_factory=list)  # the first SHOWN_OUTPUT_LINES lines the code printed
    output_lines: int = 0
    output_bytes: int = 0
    seconds: float = 0.0  # the whole file, import included
    target_seconds: dict = field(default_factory=dict)  # name: seconds from its start to its result or death
    notes: list = field(default_factory=list)  # what applies to every target of the file (a flood of output)


def _death(rc, timed_out, timeout, what):
    if timed_out:
        return f"time limit: still running after {timeout:g} s in {what} (an endless loop or a long sleep?)"
    if rc < 0:
        name = signal.Signals(-rc).name
        why = {"SIGKILL": " (out of memory?)", "SIGSEGV": " (a crash in native code)",
               "SIGABRT": " (aborted: memory cap reached in native code?)"}.get(name, "")
        return f"the process was killed by {name}{why} in {what}"
    return (f"the process ended with exit status {rc} in {what}, without a result: os._exit() or a crash "
            "(verify never counts that as a PASS)")


def run_file(where, job, name=None, kind=None, limits=None, cwd=None):
    """Check every target of one file (or module) in child processes; a FileReport (never raises for the
    student's behaviour). cwd: the folder a module target (or a generated file's imports) is found from
    (default: the current one)."""
    limits = limits or Limits()
    start = time.perf_counter()
    report = FileReport(where)
    is_file = where.endswith(".py")
    root = assignment_root(where) if is_file else None
    cwd = str(root or (Path(where).resolve().parent if is_file else Path(cwd or Path.cwd()).resolve()))
    skip = set()
    with tempfile.TemporaryDirectory(prefix="verify_") as tmp:
        for attempt in range(64):
            out_dir = Path(tmp) / f"run{attempt}"
            out_dir.mkdir()
            current, timed_out, rc = _attempt(report, (where, name, kind, job, out_dir, limits, skip, cwd))
            skip.update(report.results)  # a fresh child checks only what is left
            if report.load_error is not None:
                break
            if not report.targets and not report.results:  # died while importing
                report.load_error = ("FAIL", _death(rc, timed_out, limits.timeout, "the import"))
                break
            if current is not None:
                report.results[current] = ("died", _death(rc, timed_out, limits.timeout, current))
                skip.add(current)
            pending = [n for n, k, err in report.targets if err is None and n not in report.results]
            if not pending:
                break
            if current is None:  # it died between targets: mark the next one so the loop always advances
                report.results[pending[0]] = ("died", _death(rc, timed_out, limits.timeout, pending[0]))
                skip.add(pending[0])
    if report.output_lines > len(report.output_head):
        report.notes.append(f"its code printed {report.output_lines:,} lines ({report.output_bytes / 1e6:.3g} MB): "
                            f"the first {len(report.output_head)} are kept, the rest were counted and dropped")
    report.seconds = time.perf_counter() - start
    return report


def _attempt(report, spawn_args):
    """Run one child (under its supervisor) until it finishes, dies or runs out of time, recording its events
    into report; (the target it was running or None, whether it timed out, its exit status)."""
    out_dir, limits = spawn_args[4], spawn_args[5]
    proc, read_fd = _spawn(*spawn_args)
    current, timed_out, finished, started = None, False, False, time.perf_counter()
    try:
        for event in _events(read_fd, limits.timeout):
            now = time.perf_counter()
            if event["event"] == "timeout":
                timed_out = not finished
                break
            if event["event"] == "finished":  # read on until the child has flushed its output and exited
                finished = True
            elif event["event"] == "load_error":
                report.load_error = (event["status"], event["message"])
            elif event["event"] == "loaded":
                report.targets = [tuple(t) for t in event["targets"]]
            elif event["event"] == "start":
                current, started = event["name"], now
            elif event["event"] == "done":
                report.results[event["name"]] = _read_result(out_dir / f"{event['name']}.npz")
                report.target_seconds[event["name"]] = now - started
                current = None
        if current is not None:
            report.target_seconds[current] = time.perf_counter() - started
    finally:  # even on KeyboardInterrupt: closing its stdin makes the supervisor kill the tree and report
        os.close(read_fd)
        info = _finish(proc)
    _add_output(report, info)
    return current, timed_out, info["rc"]


def _finish(proc):
    """Tell the supervisor to stop (it kills every process the child started) and read its report."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    out = proc.stdout.read()
    proc.wait()
    try:
        info = json.loads(out.splitlines()[-1])
    except (ValueError, IndexError):  # the supervisor itself failed: say so rather than guess
        lines = out.decode("utf-8", "replace").strip().splitlines()
        info = {"rc": proc.returncode, "lines": 0, "bytes": 0, "head": [], "left": [],
                "supervisor": (lines or ["no output"])[-1]}
    return info


def _add_output(report, info):
    report.output_lines += info["lines"]
    report.output_bytes += info["bytes"]
    report.output_head += info["head"][:SHOWN_OUTPUT_LINES - len(report.output_head)]
    if info["left"]:
        report.notes.append(f"{len(info['left'])} process(es) the code started could not be killed "
                            f"(pids {', '.join(map(str, info['left']))}; stuck in the kernel?)")
    if info.get("supervisor"):
        report.notes.append(f"verify's process supervisor failed ({info['supervisor']}); please report this")


def _spawn(where, name, kind, job, out_dir, limits, skip, cwd):
    """Start the supervisor and, under it, the child; the read end of the child's progress pipe."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, **ONE_THREAD, "PYTHONDONTWRITEBYTECODE": "1",
           "MPLBACKEND": "Agg"}  # a student's matplotlib import needs no display
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONUNBUFFERED", None)  # the child flushes its first lines itself, then writes in blocks
    if where.endswith(".py"):
        where = str(Path(where).resolve())  # the child runs in the student's folder
    child = [sys.executable, "-c", CHILD_CODE, *wire.child_argv(Path(job).resolve(), Path(out_dir).resolve(), where,
                                                                 name, kind, limits.max_memory, skip, write_fd)]
    argv = [sys.executable, "-c", SUPERVISOR_CODE, str(SHOWN_OUTPUT_LINES), str(write_fd), "--", *child]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                            env=env, pass_fds=(write_fd,))
    os.close(write_fd)
    return proc, read_fd


def _read_result(path):
    """("done", meta, arrays) from a child's result file, or ("died", why) when it cannot be read."""
    try:
        return "done", *wire.read_result(path)
    except (OSError, ValueError, KeyError) as e:
        return "died", f"its result could not be read ({type(e).__name__}: the file-size cap?)"


def _events(read_fd, timeout):
    """Yield the child's JSON progress events; {"event": "timeout"} when a phase (import, a target) runs past
    timeout seconds. Ends when the child closes the pipe."""
    buffer = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            yield {"event": "timeout"}
            return
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            event = wire.parse_event(line)
            if event is None:
                continue  # not ours: the student's code wrote to the pipe
            if event["event"] in ("start", "loaded"):
                deadline = time.monotonic() + timeout  # each target has its own time
            elif event["event"] == "finished":
                deadline = time.monotonic() + EXIT_SECONDS
            yield event
