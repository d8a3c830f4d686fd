"""``python -m verify`` (the same as ``python -m train verify``): check gradients, the project's own or yours.

Usage::

    python -m verify                                        # NumPy vs torch manual vs autograd vs finite diff
    python -m verify --target cs231n/classifiers/softmax.py                 # every known target in the file
    python -m verify --target cs231n/classifiers/fc_net.py:TwoLayerNet --reg-convention half
    python -m verify --submissions class/ --jobs 2 --csv class.csv          # a folder per student

Exit status: 0 all PASS (for --submissions: the class could be checked), 1 a target FAILed, 2 a usage error or a
target that cannot be checked (ERROR: cannot be imported, Python 2, a missing module, an unsupported API).
"""
import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

EPILOG = """
without --target: the project's softmax (naive, vectorized, SoftmaxLoss) and two-layer net (two_layer_loss,
TwoLayerLoss) on fixed cases, float64 and float32, on the CPU and on CUDA when available, against torch.autograd
in float64; float64 CPU cases also against the NumPy reference and centred finite differences.

with --target FILE[:NAME] (or module:NAME): cs231n's APIs of every year: softmax_loss_naive/vectorized,
svm_loss_naive/vectorized (W, X, y, reg); neural_net.TwoLayerNet(input_size, hidden_size, output_size, std)
(2016-2019); fc_net.TwoLayerNet(input_dim, hidden_dim, num_classes, weight_scale, reg) (2017+); layers.py
affine_forward/backward, relu_forward/backward, softmax_loss, svm_loss; layer_utils.py affine_relu_forward/backward.
Two questions per target, on every case (random, reg > 0, N = 1, C = 2, logits ~1e3), in float64:
  own     are the gradients those of your own loss? (centred finite differences of your loss)
  course  do loss, scores and gradients match the course's definition? (torch.autograd)
train() and predict() (neural_net.TwoLayerNet 2016-2019; linear_classifier.LinearClassifier, Softmax, LinearSVM)
run with a spy in place of self.loss: minibatches, the SGD update, the lr schedule, the histories, the argmax class
(FILE:TwoLayerNet gives loss, train and predict; FILE:TwoLayerNet.train one method).
The regularization convention is detected from your loss (--reg-convention auto): reg*sum(W*W) (cs231n
2017-2019) or 0.5*reg*sum(W*W) (2016, fc_net.py); either passes when loss and gradient agree with it.

Your code runs in a child process with a time limit, a memory cap and closed stdin; what it prints is captured.
This protects against mistakes (endless loops, exit(), runaway memory), not against hostile code: it runs with
your rights. exit status: 0 all PASS, 1 some target FAILed, 2 usage error or a target that cannot be checked.
"""
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text):
    """'4G', '512M', '1.5GiB', '1000000' -> bytes; '0' means no cap."""
    m = SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 4G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def whole_number(text):
    if not text.isdigit() or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63 - 1, got {text!r}")
    return int(text)


def build_parser():
    from verify.kinds import KINDS

    parser = argparse.ArgumentParser(
        prog="python -m verify", description="Verify softmax / two-layer-net / layer gradients against autograd.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--target", metavar="FILE[:NAME]|module:NAME",
                      help="check this file (every known target in it) or this function or class")
    what.add_argument("--submissions", metavar="DIR", help="check a class: one folder per student in DIR")
    parser.add_argument("--kind", choices=sorted(KINDS), metavar="KIND",
                        help=f"override the detected kind of --target FILE:NAME ({', '.join(sorted(KINDS))})")
    parser.add_argument("--reg-convention", choices=["auto", "full", "half"], default="auto",
                        help="full: reg*sum(W*W); half: 0.5*reg*sum(W*W); auto (default): the one your loss uses")
    parser.add_argument("--seed", type=whole_number, default=None, metavar="N",
                        help="draw every case's shapes and values afresh from seed N (default: the fixed cases)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                        help="seconds each target (and each import) may run (default 60)")
    parser.add_argument("--max-memory", type=parse_size, default=parse_size("4G"), metavar="SIZE",
                        help="address-space cap of the child process, e.g. 4G, 512M; 0: none (default 4G)")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help="child processes at once with --submissions (default: the number of cores)")
    parser.add_argument("--csv", metavar="PATH", help="with --submissions: write one row per target to PATH")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"],
                        help="devices for the self-check (repeatable; default: cpu, and cuda when available)")
    return parser


def _write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


def split_target(spec):
    """'path/file.py:NAME' -> ('path/file.py', 'NAME'); 'file.py' -> ('file.py', None); 'pkg.mod:NAME' too."""
    where, sep, name = spec.rpartition(":")
    if sep and where and all(part.isidentifier() for part in name.split(".")):  # NAME or Class.method
        return where, name
    return spec, None


def self_check(args):
    import torch

    from verify.self_check import format_table, rows_to_json, run_self_check

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        print("error: --device cuda given, but CUDA is not available", file=sys.stderr)
        return 2
    rows = run_self_check(devices=devices)
    print(format_table(rows))
    passed = all(r.passed for r in rows)
    if args.json:
        _write_json(args.json, {"passed": passed, "devices": devices, "rows": rows_to_json(rows)})
    print("verify: all checks PASS" if passed else "verify: some checks FAIL")
    return 0 if passed else 1


def check_one(args):
    from verify.checks import check_file, write_job
    from verify.report import format_target, summary_counts, to_json
    from verify.sandbox import Limits

    where, name = split_target(args.target)
    is_path = where.endswith(".py") or os.sep in where or "/" in where
    if is_path and Path(where).is_dir():
        print(f"error: --target: {where!r} is a folder; give a .py file (a class folder: --submissions)",
              file=sys.stderr)
        return 2
    if is_path and not Path(where).is_file():
        print(f"error: --target: no such file {where!r}", file=sys.stderr)
        return 2
    if args.kind and not name:
        print("error: --kind needs --target FILE:NAME (one target)", file=sys.stderr)
        return 2
    limits = Limits(timeout=args.timeout, max_memory=args.max_memory)
    with tempfile.TemporaryDirectory(prefix="verify_job_") as tmp:
        results = check_file(where, write_job(tmp, seed=args.seed), name=name, kind=args.kind,
                             reg_convention=args.reg_convention, limits=limits)
    print(f"verify {args.target}: float64, every case against torch.autograd and your own loss; "
          f"{limits.describe()}")
    for r in results:
        print(format_target(r))
    statuses = {r.status for r in results}
    print(f"verify: {summary_counts(results)}")
    if args.json:
        _write_json(args.json, {"target": args.target, "results": [to_json(r) for r in results]})
    return 2 if "ERROR" in statuses else 1 if "FAIL" in statuses else 0


def check_submissions(args):
    from tqdm import tqdm

    from verify.checks import write_job
    from verify.classroom import check_class
    from verify.report import csv_row, format_class, to_json, write_csv
    from verify.sandbox import Limits

    directory = Path(args.submissions)
    if not directory.is_dir():
        print(f"error: --submissions: {args.submissions!r} is not a folder", file=sys.stderr)
        return 2
    if not any(p.is_dir() and not p.name.startswith(".") for p in directory.iterdir()):
        print(f"error: --submissions: {args.submissions!r} holds no folders (expected one per student)",
              file=sys.stderr)
        return 2
    limits = Limits(timeout=args.timeout, max_memory=args.max_memory)
    with tempfile.TemporaryDirectory(prefix="verify_job_") as tmp, tqdm(
            desc="verify", unit="file", file=sys.stderr, disable=None) as bar:
        entries = check_class(directory, write_job(tmp, seed=args.seed), jobs=args.jobs,
                              reg_convention=args.reg_convention, limits=limits, progress=bar)
    print(f"verify --submissions {args.submissions}: {limits.describe()}")
    print(format_class(entries))
    if args.csv:
        write_csv(args.csv, [csv_row(s, f, r) for s, f, r in entries])
    if args.json:
        _write_json(args.json, [to_json(r, submission=s) for s, _, r in entries])
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.kind and not args.target:
        print("error: --kind needs --target", file=sys.stderr)
        return 2
    if args.seed is not None and not (args.target or args.submissions):
        print("error: --seed needs --target or --submissions (the self-check runs on the fixed cases)",
              file=sys.stderr)
        return 2
    if args.csv and not args.submissions:
        print("error: --csv needs --submissions", file=sys.stderr)
        return 2
    if args.submissions:
        return check_submissions(args)
    if args.target:
        return check_one(args)
    return self_check(args)
