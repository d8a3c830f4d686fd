"""Settings Lightning accepts but cannot run, and system errors, as one ``error:`` line each.

    check_trainer(config["trainer"])       # before the Trainer exists: ValueError naming the key
    line = os_error_line(err)              # "no space left on device writing ...: free some space or ..."

Lightning refuses some settings itself (max_epochs -5, devices 0, an accelerator that is not there) with a
MisconfigurationException whose message is already one good line; the CLI prints those as they are. The ones here it
accepts and then fails on deep inside a run (val_check_interval 0 divides by zero at the first batch) or silently
misreads.
"""
import errno

# key: (test, what is expected)
TRAINER_RULES = {
    "max_epochs": (lambda v: v is None or v >= -1, "an integer >= 0, or -1 for no limit"),
    "max_steps": (lambda v: v is None or v >= -1, "an integer >= 0, or -1 for no limit"),
    "min_epochs": (lambda v: v is None or v >= 0, "an integer >= 0"),
    "min_steps": (lambda v: v is None or v >= 0, "an integer >= 0"),
    "val_check_interval": (lambda v: v is None or (v >= 1 if isinstance(v, int) else 0 < v <= 1),
                           "an integer >= 1 (training_steps), or a fraction of an epoch in (0, 1]"),
    "check_val_every_n_epoch": (lambda v: v is None or v >= 1, "an integer >= 1, or null to validate only by "
                                                               "val_check_interval"),
    "log_every_n_steps": (lambda v: v is None or v >= 1, "an integer >= 1"),
    "accumulate_grad_batches": (lambda v: v is None or v >= 1, "an integer >= 1"),
    "num_nodes": (lambda v: v is None or v >= 1, "an integer >= 1"),
}


def check_trainer(trainer):
    """Raise ValueError ('trainer.KEY: got V; expected ...') for the first setting in ``trainer`` (a dict or
    Namespace of Trainer arguments) that TRAINER_RULES refuses."""
    for key, (test, expected) in TRAINER_RULES.items():
        value = trainer.get(key) if hasattr(trainer, "get") else getattr(trainer, key, None)
        if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
            continue  # a type jsonargparse already refused, or a value Lightning reads another way
        if not test(value):
            raise ValueError(f"trainer.{key}: got {value}; expected {expected}")


OS_ERROR_HINTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a path component is a file, not a folder",
}
OS_ERROR_FIX = {
    errno.ENOSPC: "free some space, or write elsewhere with --trainer.default_root_dir",
    errno.EDQUOT: "free some space, or write elsewhere with --trainer.default_root_dir",
    errno.EACCES: "run where you may write, or write elsewhere with --trainer.default_root_dir",
    errno.EPERM: "run where you may write, or write elsewhere with --trainer.default_root_dir",
    errno.EROFS: "write elsewhere with --trainer.default_root_dir",
    errno.ENOTDIR: "check the path",
}


def is_system_error(err):
    """Whether err is an OSError about the file system (disk full, permissions, read-only, a path through a file),
    as opposed to a missing file, which the commands name themselves."""
    return isinstance(err, OSError) and err.errno in OS_ERROR_HINTS


def os_error_line(err):
    """One line for a file-system OSError: what happened, to which file, and the fix."""
    what = OS_ERROR_HINTS.get(err.errno, err.strerror or type(err).__name__)
    where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
    fix = OS_ERROR_FIX.get(err.errno)
    return f"error: {what}{where}" + (f"; {fix}" if fix else "")
