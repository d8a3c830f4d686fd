"""The process between verify and the child that runs someone's code: ``python -c "...main()" HEAD -- CHILD ARGV``.

It starts the child (verify/_child.py) with stdout and stderr on one pipe, reads that pipe as the child writes
(keeping the first HEAD lines, counting the rest), and when the child exits, or verify closes this process's stdin
(the target's time is up, or it has its result), it kills every process the child started and reaps them. Then it
writes one JSON line to its stdout: {"rc": the child's exit status, "lines": lines printed, "bytes": bytes printed,
"head": [the first HEAD lines], "left": pids it could not kill}.

On Linux it is a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process the child started that outlives its
parent, even one that called setsid() or forked twice to become a daemon, is re-parented here rather than to init,
so walking this process's descendants finds every one. Elsewhere it kills the child's process group (a grandchild
that left the group survives). Imports nothing but the standard library.

The child itself runs flush_first_lines() first: its first FLUSHED_LINES lines of output go out line by line, the
rest in blocks, so a flood of prints costs little and the lines shown in the report are never stuck in a buffer.
"""
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
HEAD_BYTES = 64 * 1024  # the head lines are taken from the first bytes printed
LINE_CHARS = 500  # a kept line is cut to this many characters
FLUSHED_LINES = 1000  # the child's first lines of output are flushed one by one, the rest in blocks
KILL_SECONDS = 10.0  # how long to keep killing (a process in uninterruptible sleep dies when its I/O ends)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # each stops the child early, as a closed stdin does


def _prctl(option, value):
    """prctl(option, value) through libc; False where it is not Linux or the call fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root):
    """Pids of every live descendant of root, from /proc (Linux); [] where /proc is missing."""
    children = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # the name in (...) may hold spaces and ')'
        except (OSError, IndexError):
            continue  # it ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _reap():
    """Reap every exited child; True when no child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def kill_tree(child):
    """SIGKILL the child's process group and every descendant of this process until none is left; the pids that
    would not die within KILL_SECONDS."""
    deadline = time.monotonic() + KILL_SECONDS
    while True:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the child's own session: the quick first sweep
        except (ProcessLookupError, PermissionError):
            pass
        left = descendants(os.getpid())
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if child.returncode is None:
            child.wait()
        if _reap() and not left:
            return []
        if time.monotonic() > deadline:
            return left
        time.sleep(0.01)


class Capture:
    """The child's output: the first head lines are kept, every line is counted, nothing else is stored."""

    def __init__(self, head):
        self.head, self.start, self.lines, self.bytes, self.last = head, b"", 0, 0, b""

    def add(self, chunk):
        if len(self.start) < HEAD_BYTES:
            self.start += chunk[:HEAD_BYTES - len(self.start)]
        self.lines += chunk.count(b"\n")
        self.bytes += len(chunk)
        self.last = chunk[-1:]

    def report(self):
        lines = self.lines + (self.last not in (b"", b"\n"))  # an unterminated last line counts
        head = [line[:LINE_CHARS] for line in self.start.decode("utf-8", "replace").splitlines()[:self.head]]
        return {"lines": lines, "bytes": self.bytes, "head": head}


def _drain(fd, capture, seconds):
    """Read what is left in fd: all that is already there (written by processes now dead), then more until every
    writer has closed it or seconds have passed."""
    deadline = time.monotonic() + seconds
    while select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        capture.add(chunk)


def _exit_fd(child):
    """[a descriptor readable once the child exits] (Linux 5.3+), else [] (then the loop polls)."""
    try:
        return [os.pidfd_open(child.pid)]
    except (AttributeError, OSError):
        return []


def supervise(head, argv, progress_fd, stop_fd):
    """Run argv as described in the module docstring; the report as a dict. stop_fd turns readable when a stop
    signal arrives."""
    read_fd, write_fd = os.pipe()
    fds = (write_fd,) if progress_fd is None else (write_fd, progress_fd)
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, pass_fds=fds,
                             start_new_session=True)
    os.close(write_fd)
    if progress_fd is not None:
        os.close(progress_fd)  # the parent sees the pipe close when the child and what it started are gone
    capture, control = Capture(head), sys.stdin.fileno()
    watched, exited = [read_fd, control, stop_fd], _exit_fd(child)
    try:
        while child.poll() is None:
            ready = select.select(watched + exited, [], [], None if exited else 0.05)[0]
            if read_fd in ready:
                chunk = os.read(read_fd, 1 << 16)
                if chunk:
                    capture.add(chunk)
                else:  # the child closed its output (it may still run)
                    watched.remove(read_fd)
            if (control in ready and not os.read(control, 4096)) or stop_fd in ready:
                break  # verify closed our stdin, or we were signalled: stop now
    finally:
        left = kill_tree(child)
    _drain(read_fd, capture, 0.5 if not left else 0.0)
    return {"rc": child.returncode, **capture.report(), "left": left}


class FirstLinesFlushed:
    """Stands in for sys.stdout or sys.stderr in the child: its first lines are written through at once (they reach
    the supervisor even if the child then hangs or dies), the rest in blocks (a pipe write per 8 KiB, not per line:
    a flood of prints costs a seventh of the time)."""

    def __init__(self, stream, lines):
        self._stream, self._left = stream, lines
        stream.reconfigure(line_buffering=True)

    def write(self, text):
        written = self._stream.write(text)
        if self._left > 0:
            self._left -= text.count("\n")
            if self._left <= 0:  # (never swap sys.stdout back here: print() holds a borrowed reference to it)
                self._stream.reconfigure(line_buffering=False)
        return written

    def __getattr__(self, name):
        return getattr(self._stream, name)


def flush_first_lines(lines=FLUSHED_LINES):
    """Install FirstLinesFlushed on sys.stdout and sys.stderr (the child runs this before the student's code)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if hasattr(stream, "reconfigure"):
            setattr(sys, name, FirstLinesFlushed(stream, lines))


def main(argv=None):
    """argv: HEAD PROGRESS_FD -- CHILD_ARGV... (PROGRESS_FD "-" for none)."""
    argv = argv or sys.argv[1:]
    head, progress, child_argv = int(argv[0]), argv[1], argv[3:]
    stop_fd, wake_fd = os.pipe()
    os.set_blocking(wake_fd, False)
    signal.set_wakeup_fd(wake_fd)  # a stop signal wakes the loop; the handler never raises, so cleanup is whole
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: None)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # verify itself killed: clean up all the same
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    report = supervise(head, child_argv, None if progress == "-" else int(progress), stop_fd)
    try:
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    except OSError:  # verify is gone: nobody to tell
        pass
