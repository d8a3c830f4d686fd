"""Runs someone's file in child processes with limits, and says how each target ended.

    report = run_file("hw/cs231n/classifiers/softmax.py", job, limits=Limits(timeout=60, max_memory=4 * 2**30))
    report.load_error           # (status, line) when the file cannot be imported, else None
    report.targets              # [(name, kind, unsupported line or None)]
    report.results[name]        # ("done", meta, arrays) or ("died", "time limit: ...")

Each child (verify/_child.py) imports NumPy and the student's code only. Limits: a wall-clock limit per target
(from the moment it starts; the import has its own), an address-space cap (RLIMIT_AS), a cap on the size of any
file it writes, stdin closed, stdout and stderr captured at the file-descriptor level (import time included).
The child runs in its own process group, killed whole when its time is up. A child that dies in the middle of a
target (os._exit, a signal, the time limit) gets that target marked, and a fresh child checks the rest.

This is isolation from mistakes, not a security sandbox: the student's code runs with the user's rights and can
read and write their files. Run code you do not trust in a container.
"""
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
CHILD_CODE = (f"import os, sys; sys.path[0] = {PROJECT_ROOT!r}; from verify._child import main; main(); "
              "sys.stdout.flush(); sys.stderr.flush(); os._exit(0)")  # skip the student's atexit and threads
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
    seconds: float = 0.0
    target_seconds: dict = field(default_factory=dict)  # {name: seconds from its "start" event to its end}


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


def _count_output(path, head):
    """(number of lines, the first `head` lines) of a captured output file, read in chunks."""
    with open(path, "rb") as f:
        start = last = f.read(64 * 1024)
        first = start.decode("utf-8", "replace").splitlines()[:head]
        lines = start.count(b"\n")
        while chunk := f.read(1 << 20):
            lines, last = lines + chunk.count(b"\n"), chunk
    return lines + bool(last and not last.endswith(b"\n")), first  # an unterminated last line counts


def run_file(where, job, name=None, kind=None, limits=None):
    """Check every target of one file (or module) in child processes; a FileReport (never raises for the
    student's behaviour)."""
    limits = limits or Limits()
    start = time.perf_counter()
    report = FileReport(where)
    is_file = where.endswith(".py")
    root = assignment_root(where) if is_file else None
    cwd = str(root or (Path(where).resolve().parent if is_file else Path.cwd()))
    skip = set()
    with tempfile.TemporaryDirectory(prefix="verify_") as tmp:
        for attempt in range(64):
            out_dir = Path(tmp) / f"run{attempt}"
            out_dir.mkdir()
            log_path = Path(tmp) / f"output{attempt}.txt"
            with open(log_path, "wb") as log:
                proc, read_fd = _spawn(where, name, kind, job, out_dir, limits, skip, cwd, log)
                current, timed_out, started = None, False, time.perf_counter()
                events = _events(proc, read_fd, limits.timeout)
                for event in events:
                    if event.get("event") == "timeout":
                        timed_out = True
                        break
                    if event["event"] == "finished":
                        break
                    if event["event"] == "load_error":
                        report.load_error = (event["status"], event["message"])
                    elif event["event"] == "loaded":
                        report.targets = [tuple(t) for t in event["targets"]]
                    elif event["event"] == "start":
                        current, started = event["name"], time.perf_counter()
                    elif event["event"] == "done":
                        report.target_seconds[event["name"]] = time.perf_counter() - started
                        report.results[event["name"]] = _read_result(out_dir / f"{event['name']}.npz")
                        skip.add(event["name"])
                        current = None
                if proc.poll() is None:  # timed out, or finished: the group goes, with what the code started
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                rc = proc.wait()
                os.close(read_fd)
            lines, head = _count_output(log_path, SHOWN_OUTPUT_LINES)
            report.output_lines += lines
            report.output_head += head[:SHOWN_OUTPUT_LINES - len(report.output_head)]
            if report.load_error is not None:
                break
            if not report.targets and not report.results:  # died while importing
                report.load_error = ("FAIL", _death(rc, timed_out, limits.timeout, "the import"))
                break
            if current is not None:
                report.target_seconds[current] = time.perf_counter() - started
                report.results[current] = ("died", _death(rc, timed_out, limits.timeout, current))
                skip.add(current)
            pending = [n for n, k, err in report.targets if err is None and n not in report.results]
            if not pending:
                break
            if current is None:  # it died between targets: mark the next one so the loop always advances
                report.results[pending[0]] = ("died", _death(rc, timed_out, limits.timeout, pending[0]))
                skip.add(pending[0])
    report.seconds = time.perf_counter() - start
    return report


def _spawn(where, name, kind, job, out_dir, limits, skip, cwd, log):
    """Start the child; its progress pipe's descriptor number is its last argument."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, **ONE_THREAD, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "MPLBACKEND": "Agg"}  # a student's matplotlib import needs no display
    env.pop("PYTHONPATH", None)
    if where.endswith(".py"):
        where = str(Path(where).resolve())  # the child runs in the student's folder
    argv = [sys.executable, "-c", CHILD_CODE, *wire.child_argv(Path(job).resolve(), Path(out_dir).resolve(), where,
                                                                name, kind, limits.max_memory, skip, write_fd)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                            pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    return proc, read_fd


def _read_result(path):
    """("done", meta, arrays) from a child's result file, or ("died", why) when it cannot be read."""
    try:
        return "done", *wire.read_result(path)
    except (OSError, ValueError, KeyError) as e:
        return "died", f"its result could not be read ({type(e).__name__}: the file-size cap?)"


def _events(proc, read_fd, timeout):
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
            yield event
