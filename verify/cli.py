"""``python -m verify`` (the same as ``python -m train verify``): check gradients, the project's own or yours.

Usage::

    python -m verify                                        # NumPy vs torch manual vs autograd vs finite diff
    python -m verify --target cs231n/classifiers/softmax.py                 # every known target in the file
    python -m verify --target cs231n/classifiers/fc_net.py:TwoLayerNet --reg-convention half
    python -m verify --submissions class/ --assignment a.yaml --gradebook grades.csv --feedback feedback/
    python -m verify autograder --assignment a.yaml --out autograder.zip     # Gradescope (verify/autograder.py)
    python -m verify homework mykit/                # write the PyTorch homework kit (TODOs that verify checks)

The console script ``verify`` is the same command. Exit status: 0 all PASS (for --submissions: the class could be
checked), 1 a target FAILed, 2 a usage error, a file that cannot be read or written, or a target that cannot be
checked (ERROR: cannot be imported, Python 2, a missing module, an unsupported API).
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

PyTorch (python -m verify homework DIR writes a kit of these): two_layer_loss(X, y, W1, b1, W2, b2, reg) on
tensors; an autograd.Function (TwoLayerLoss, SoftmaxLoss): backward against autograd of its own forward and the
course; train(X, y, params, batches, learning_rate, reg) with torch.optim.SGD: every update; a LightningModule:
one training_step under a Trainer against one SGD step of the course's loss.

Your code runs in a child process with a time limit, a memory cap and closed stdin; what it prints is captured.
This protects against mistakes (endless loops, exit(), runaway memory), not against hostile code: it runs with
your rights. exit status: 0 all PASS, 1 some target FAILed, 2 usage error or a target that cannot be checked.

with --submissions DIR (a folder per student): every target of the assignment spec (--assignment FILE or a shipped
name: cs231n-a1-2016-2019, cs231n-a1-2020; default: assignment 1 of the year the submissions show) gets a row with
its points, MISSING (0 points) when absent; files are found at any depth, flat uploads included, the shallowest
copy outside backup/copy folders. --gradebook, --feedback, --csv, --json write the results.
python -m verify autograder --assignment SPEC --out autograder.zip writes Gradescope's autograder (docs/verify.md).
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
        prog="verify" if Path(sys.argv[0]).name == "verify" else "python -m verify",
        description="Verify softmax / two-layer-net / layer gradients against autograd.",
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
    parser.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                        help="seconds each target (and each import) may run (default: the spec's, else 60)")
    parser.add_argument("--max-memory", type=parse_size, default=None, metavar="SIZE",
                        help="address-space cap of the child process, e.g. 4G, 512M; 0: none (default: the "
                             "spec's, else 4G)")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help="child processes at once with --submissions (default: the number of cores)")
    parser.add_argument("--assignment", metavar="SPEC",
                        help="with --submissions: the assignment spec, a YAML file or a shipped name (default: "
                             "cs231n assignment 1 of the course year the submissions show)")
    parser.add_argument("--csv", metavar="PATH", help="with --submissions: write one row per target to PATH")
    parser.add_argument("--gradebook", metavar="PATH",
                        help="with --submissions: write one row per student (points per target, total, max)")
    parser.add_argument("--feedback", metavar="DIR", help="with --submissions: write DIR/<student>.md")
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
    limits = Limits(timeout=args.timeout or 60.0,
                    max_memory=parse_size("4G") if args.max_memory is None else args.max_memory)
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


def _progress():
    """A tqdm progress bar on stderr when tqdm is installed (the slim install has none), else a silent stand-in."""
    try:
        from tqdm import tqdm
    except ImportError:
        import contextlib

        class Silent(contextlib.nullcontext):
            def reset(self, total=None):
                pass

            def update(self, n=1):
                pass
        return Silent(Silent())
    return tqdm(desc="verify", unit="file", file=sys.stderr, disable=None)


def class_spec(args, folders):
    """(Assignment, the line announcing it) from --assignment, else cs231n assignment 1 of the detected year."""
    from verify.assignment import default_spec, load_spec

    if args.assignment:
        spec = load_spec(args.assignment)
        return spec, f"assignment: {spec.name} ({args.assignment})"
    return default_spec([f for _, f, _ in folders if f is not None])


def class_limits(args, spec):
    """The command line's limits, else the spec's, else the defaults (60 s, 4 GiB)."""
    from verify.sandbox import Limits

    return Limits(timeout=args.timeout or spec.timeout or 60.0,
                  max_memory=args.max_memory if args.max_memory is not None else
                  spec.max_memory if spec.max_memory is not None else parse_size("4G"))


def class_seed(args, spec):
    """The seed every student's own is drawn from (--seed, else the spec's), or None for the fixed cases."""
    from verify.assignment import SpecError
    from verify.classroom import seeding_available

    seed = args.seed if args.seed is not None else spec.seed
    if seed is not None and not seeding_available():
        raise SpecError(["--seed (or the spec's seed): this version of verify has only the fixed cases"])
    return seed


def check_submissions(args):
    from verify.assignment import SpecError
    from verify.classroom import grade_class, student_folders
    from verify.gradebook import format_class, write_csv, write_feedback, write_gradebook
    from verify.report import to_json

    directory = Path(args.submissions)
    if not directory.is_dir():
        print(f"error: --submissions: {args.submissions!r} is not a folder", file=sys.stderr)
        return 2
    folders = student_folders(directory)
    if not folders:
        print(f"error: --submissions: {args.submissions!r} holds no folders (expected one per student)",
              file=sys.stderr)
        return 2
    try:
        spec, announce = class_spec(args, folders)
        seed = class_seed(args, spec)
    except SpecError as e:
        print("\n".join(f"error: --assignment: {line}" for line in e.lines), file=sys.stderr)
        return 2
    limits = class_limits(args, spec)
    with _progress() as bar:
        students = grade_class(directory, spec, jobs=args.jobs, reg_convention=args.reg_convention, limits=limits,
                               seed=seed, progress=bar, folders=folders)
    print(f"verify --submissions {args.submissions}: {limits.describe()}")
    print(announce + (f"; cases drawn from seed {seed} and each folder's name" if seed is not None else ""))
    print(format_class(students))
    if args.csv:
        write_csv(args.csv, students)
    if args.gradebook:
        write_gradebook(args.gradebook, spec, students)
    if args.feedback:
        write_feedback(args.feedback, spec, students)
    if args.json:
        _write_json(args.json, [{**to_json(g.result, submission=s.name), "target": g.target.label,
                                 "chosen_file": g.file, "points": g.points, "max_points": g.target.points}
                                for s in students for g in s.graded])
    return 0


def run(argv):
    if argv and argv[0] in ("autograder", "gradescope"):
        from verify.autograder import main as autograder_main

        return autograder_main(argv)
    if argv[:1] == ["homework"]:  # python -m verify homework DIR: verify/homework_kit.py
        from verify.homework_kit import main as homework

        return homework(argv[1:])
    args = build_parser().parse_args(argv)
    if args.kind and not args.target:
        print("error: --kind needs --target", file=sys.stderr)
        return 2
    if args.seed is not None and not (args.target or args.submissions):
        print("error: --seed needs --target or --submissions (the self-check runs on the fixed cases)",
              file=sys.stderr)
        return 2
    for flag in ("csv", "gradebook", "feedback", "assignment"):
        if getattr(args, flag) and not args.submissions:
            print(f"error: --{flag} needs --submissions", file=sys.stderr)
            return 2
    if args.submissions:
        return check_submissions(args)
    if args.target:
        return check_one(args)
    return self_check(args)


def main(argv=None):
    """python -m verify (and the console script ``verify``); a file that cannot be read or written (a missing
    folder, no permission, a full disk) is one ``error:`` line and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run(argv)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (check that the path exists, is writable, and the disk has room)",
              file=sys.stderr)
        return 2
