"""The ``fit_*`` rows of bench_step.py: per-step time of the real ``python -m train fit`` loop.

Usage (from bench_step.py; alone for a quick look)::

    python benchmarks/bench_fit.py --hidden 50 --steps 100                       # fit_fused
    python benchmarks/bench_fit.py --model-args "--model.steps_per_call 1"       # fit_front_door

fit runs through train.cli.run_cli, so the Trainer keeps its defaults (progress bar, CSV logger, checkpoint and
plot callbacks), on SyntheticCIFARDataModule: an ArrayDataModule holding the same synthetic data as the other rows.
A callback notes the time and trainer.global_step (SGD steps) at the first training_step starting at or after step
``warmup`` and at or after ``warmup + steps`` (with steps_per_call K the step count jumps by K); the time over the
SGD steps between them is the per-step cost, start-up (parsing, sanity validation) and the end of the run excluded.
Every run writes its logs into a temporary directory that is removed afterwards.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: common.py

from common import NUM_TRAIN, make_data  # noqa: E402

from train.cli import run_cli  # noqa: E402
from train.data import ArrayDataModule, ArraySplits  # noqa: E402

_DATA = {}  # "X", "y": the training tensors the benchmark made, shared by every fit in this process
_MARKS = []  # (perf_counter(), global_step) at the start of the two marked training steps of the current fit


class SyntheticCIFARDataModule(ArrayDataModule):
    """The benchmark's synthetic training data (N, D) float32 / (N,) int64, and a small val split of its rows."""

    def load(self) -> ArraySplits:
        X, y = _DATA["X"], _DATA["y"]
        return ArraySplits(X, y, X[:1000], y[:1000], class_names=[str(c) for c in range(10)])


class StepTimer(L.Callback):
    """Appends (perf_counter(), global_step) to _MARKS at the first batch start at/after step ``first``, ``last``."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= (self.first, self.last)[min(len(_MARKS), 1)] and len(_MARKS) < 2:
            if pl_module.device.type == "cuda":
                import torch
                torch.cuda.synchronize()
            _MARKS.append((time.perf_counter(), trainer.global_step))


def lightning_fit_ms(X, y, hidden, steps, warmup, lr=1e-4, reg=0.25, batch_size=200, model_args=()):
    """ms per SGD step of ``python -m train fit [model_args]`` over steps warmup .. warmup + steps (or the first
    steps at or after them) on (X (N, D), y (N,))."""
    _DATA.update(X=X, y=y)
    _MARKS.clear()
    accelerator = "gpu" if X.is_cuda else "cpu"
    here = Path(__file__).resolve().parent
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text("seed_everything: 0\n")
        argv = ["fit", "--config", str(config),
                "--data", f"{SyntheticCIFARDataModule.__module__}.SyntheticCIFARDataModule",
                "--data.batch_size", str(batch_size),
                "--model.hidden_size", str(hidden), "--model.learning_rate", str(lr), "--model.reg", str(reg),
                "--trainer.accelerator", accelerator, "--trainer.devices", "1",
                "--trainer.max_steps", str(warmup + steps + 64), *model_args,
                "--trainer.callbacks+=" + json.dumps({"class_path": f"{StepTimer.__module__}.StepTimer",
                                                      "init_args": {"first": warmup, "last": warmup + steps}})]
        os.chdir(tmp)
        sys.path.insert(0, str(here))
        try:  # the progress bar still draws (its cost is part of the loop), into the void
            with open(os.devnull, "w") as void, contextlib.redirect_stdout(void), contextlib.redirect_stderr(void):
                run_cli(argv)
        finally:
            os.chdir(cwd)
            sys.path.remove(str(here))
    if len(_MARKS) != 2:
        raise RuntimeError(f"fit: expected 2 step marks, got {len(_MARKS)} (did fit stop early?)")
    (t0, step0), (t1, step1) = _MARKS
    return (t1 - t0) / (step1 - step0) * 1e3


def rss_bytes():
    """The current resident set size of this process (Linux /proc/self/statm)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fit_memory(hidden, num_train, steps, queue, model_args=()):
    """In a fresh process: RSS after the imports (the fixed part), then ``fit`` for ``steps`` steps on synthetic
    CIFAR-shaped data. Puts (RSS after imports, peak RSS, training tensor bytes) on ``queue``."""
    import resource

    import torch

    torch.zeros(1) @ torch.zeros(1)  # the BLAS library's pages count as fixed, not as data
    fixed = rss_bytes()
    X, y = make_data(torch.device("cpu"), num_train)
    lightning_fit_ms(X, y, hidden, steps, min(10, steps // 2), model_args=model_args)
    queue.put((fixed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, X.nbytes))


if __name__ == "__main__":
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--model-args", default="", help="extra fit arguments, e.g. '--model.steps_per_call 16'")
    a = p.parse_args()
    X, y = make_data(torch.device("cpu"), NUM_TRAIN)
    ms = lightning_fit_ms(X, y, a.hidden, a.steps, a.warmup, model_args=a.model_args.split())
    print(f"fit H={a.hidden} {a.model_args}: {ms:.3f} ms/step")
