"""atomic_write: a file that a kill at any moment leaves either as it was or whole, never torn.

Usage::

    atomic_write("net.npz", lambda f: np.savez(f, **arrays))                  # binary
    atomic_write("trials.csv", lambda f: f.write(text), mode="w")             # text
    atomic_write(path, lambda f: torch.save(checkpoint, f))                   # checkpoints (train/checkpoint_io.py)

The steps:

    1. write(file) into ``.<name>.<pid>.<random>.tmp`` in the target's own folder (same filesystem)
    2. flush + fsync the temporary file: its bytes are on disk
    3. os.replace(temporary, target): one atomic rename; readers see the old file or the new one, never a mix
    4. fsync the folder: the rename itself survives a power cut

An exception in write() removes the temporary file and leaves the target as it was. A SIGKILL before step 3 leaves
the previous file and a stray ``.tmp``, removed by the next write of that name once its process is gone.
"""
import contextlib
import os
import secrets


def fsync_folder(folder):
    """Make a rename in ``folder`` durable (POSIX: fsync the directory; a no-op where that is not possible)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path):
    """Delete ``.<name>.<pid>.*.tmp`` files left next to ``path`` by writers that were killed (their pid is gone)."""
    folder, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}."
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))


def atomic_write(path, write, mode="wb"):
    """Call ``write(f)`` on a temporary file opened with ``mode`` ("wb" or "w"), fsync it and rename it to ``path``
    (its folder is created); returns the absolute path written."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for a plain open
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)  # atomic: the old file or the new one
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    fsync_folder(folder)
    return path
