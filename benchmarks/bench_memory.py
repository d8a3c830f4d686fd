"""Peak memory (resident set size) of ``python -m train fit`` on the CIFAR-10 config, with its time and accuracy.

Usage::

    mkdir -p /tmp/cifar10-jpeg && tar xzf ../shared/data/cifar10-train-jpeg.tar.gz -C /tmp/cifar10-jpeg
    python benchmarks/bench_memory.py --root /tmp/cifar10-jpeg                    # the whole fit (minutes)
    python benchmarks/bench_memory.py --root /tmp/cifar10-jpeg --load-only        # the data module's load alone
    python benchmarks/bench_memory.py --root /tmp/cifar10-jpeg --json memory.json

The command runs as a child process in a temporary folder (its lightning_logs are removed afterwards); its peak
RSS is the kernel's (``os.wait4``'s ru_maxrss, as ``/usr/bin/time -v`` reports it), the time is the wall clock of
the whole command (start-up, loading, training), and the val accuracy is fit's "final val/acc" line. --load-only
builds ImageFolderDataModule with the config's data settings and loads the splits, nothing else. The first run on
a tree decodes its images into root/.cache (the cache is reused afterwards, a few seconds less). Other arguments
after ``--`` go to fit, e.g. ``-- --trainer.max_epochs 2``.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "imagefolder_cifar10.yaml"

LOAD_ONLY = """
import sys, torch, yaml
torch.set_num_threads(1)
from train.image_data import ImageFolderDataModule
args = yaml.safe_load(open(sys.argv[1]))["data"]["init_args"]
args["root"] = sys.argv[2]
s = ImageFolderDataModule(**args).splits
print(f"loaded train {tuple(s.X_train.shape)}, val {tuple(s.X_val.shape)}")
"""


def measure(command, cwd):
    """(exit status, peak RSS in bytes, wall seconds, stdout) of ``command`` run in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024, time.perf_counter() - start, out  # ru_maxrss: KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description="Peak RSS, time and val accuracy of the CIFAR-10 config's fit.")
    parser.add_argument("--root", required=True, help="the ImageFolder tree (holds train/<class>/*.jpg)")
    parser.add_argument("--config", default=str(CONFIG), help="the fit config (default: %(default)s)")
    parser.add_argument("--load-only", action="store_true", help="measure the data module's load alone")
    parser.add_argument("--json", help="also write the row to this JSON file")
    parser.add_argument("fit_args", nargs="*", help="more fit options, after --")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "train").is_dir():
        print(f"bench_memory.py: error: --root: {args.root!r} has no train/ folder; expected an ImageFolder tree",
              file=sys.stderr)
        return 2
    if args.load_only:
        command = [sys.executable, "-c", LOAD_ONLY, args.config, args.root]
    else:
        command = [sys.executable, "-m", "train", "fit", "--config", args.config, "--data.root", args.root,
                   "--trainer.enable_progress_bar", "false", *args.fit_args]
    with tempfile.TemporaryDirectory() as cwd:
        status, peak, seconds, out = measure(command, cwd)
    if status != 0:
        print(f"bench_memory.py: error: the command exited {status}: {' '.join(command)}", file=sys.stderr)
        return 1
    acc = re.search(r"final val/acc = ([0-9.]+)", out)
    row = {"what": "load" if args.load_only else "fit", "peak_rss_gib": round(peak / 2 ** 30, 3),
           "wall_s": round(seconds, 1), "val_acc": float(acc.group(1)) if acc else None,
           "load_average": os.getloadavg()[0],
           "command": f"ImageFolderDataModule(data of {args.config}, root={args.root}).splits" if args.load_only
           else " ".join(command)}
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
