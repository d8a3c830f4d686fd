"""Gradescope: ``python -m verify autograder --assignment SPEC --out autograder.zip`` writes the zip to upload;
inside Gradescope, ``python -m verify gradescope`` grades one submission.

The zip (gradescope-autograders.readthedocs.io, "Autograder Specifications") holds:

    setup.sh          run once, as root, when Gradescope builds the image: pip installs the wheel below with
                      verify's slim requirements (NumPy, PyTorch for the CPU, future, PyYAML); needs only python3
    run_autograder    run per submission: grades /autograder/submission, writes /autograder/results/results.json;
                      when the grader itself fails, it still writes a results.json that says so
    assignment.yaml   the spec (validated before the zip is written)
    twolayer_bridge-VERSION-py3-none-any.whl   this project's verify, torch_impl and reference_numpy, built from
                      the source that runs this command

``AUTOGRADER_ROOT`` (default /autograder) moves the whole tree, to try the autograder on your own machine.
"""
import argparse
import base64
import hashlib
import importlib.util
import json
import os
import sys
import time
import traceback
import zipfile
from pathlib import Path

PACKAGES = ("verify", "torch_impl", "reference_numpy")  # what verify needs; train/ is the app, not shipped
SLIM_REQUIREMENTS = ("numpy>=1.23", "torch>=2.4", "future>=0.18", "pyyaml>=6")  # = pyproject's [verify] extra
DIST, FALLBACK_VERSION = "twolayer-bridge", "0.1.0"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same source gives the same zip

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image. It installs verify's slim
# requirements (NumPy, PyTorch for the CPU, future, PyYAML) and this project's wheel. Only python3 and pip needed.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "verify needs Python 3.10 or newer: choose an Ubuntu 22.04 (or newer) base image" >&2
    exit 1
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3-pip
fi
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
python3 -m pip install ./{wheel}
python3 -m verify --help >/dev/null
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade submission/ against source/assignment.yaml and write
# results/results.json. AUTOGRADER_ROOT (default /autograder) moves the tree for a try-out on your machine.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
mkdir -p "$ROOT/results"
python3 -m verify gradescope --root "$ROOT" --assignment "$ROOT/source/assignment.yaml"
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
    printf '{"score": 0, "output_format": "md", "tests": [], "output": "%s"}\n' \
        "The autograder itself failed (exit status $status): nothing was graded. Please tell the course staff." \
        > "$ROOT/results/results.json"
fi
"""


def _package_files(package):
    """[(path in the wheel, file)] of an importable package's folder, caches left out."""
    spec = importlib.util.find_spec(package)
    root = Path(next(iter(spec.submodule_search_locations)))
    return [(f"{package}/{p.relative_to(root).as_posix()}", p) for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]


def _version():
    try:
        from importlib.metadata import version

        return version(DIST)
    except Exception:  # run from a checkout that was never installed
        return FALLBACK_VERSION


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _zip_write(archive, name, data, executable=False):
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build_wheel(folder):
    """A pure-Python wheel of PACKAGES requiring SLIM_REQUIREMENTS, with the console script ``verify``; its path.
    Written directly (the wheel format is a zip with a RECORD), so no build tool and no source tree is needed."""
    version = _version()
    name = f"{DIST.replace('-', '_')}-{version}"
    info = f"{name}.dist-info"
    files = [(arc, path.read_bytes()) for package in PACKAGES for arc, path in _package_files(package)]
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {DIST}", f"Version: {version}",
                          "Summary: verify, the cs231n homework checker, with the code it needs (slim install)",
                          "Requires-Python: >=3.10", *[f"Requires-Dist: {r}" for r in SLIM_REQUIREMENTS], ""])
    files += [(f"{info}/METADATA", metadata.encode()),
              (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: verify.autograder\nRoot-Is-Purelib: true\n"
                                b"Tag: py3-none-any\n"),
              (f"{info}/entry_points.txt", b"[console_scripts]\nverify = verify.cli:main\n")]
    record = "\n".join([_record_line(n, d) for n, d in files] + [f"{info}/RECORD,,", ""])
    path = Path(folder) / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for arc, data in files + [(f"{info}/RECORD", record.encode())]:
            _zip_write(wheel, arc, data)
    return path


def build_autograder(spec_path, out):
    """Write Gradescope's autograder zip for the spec at spec_path to out (atomically); its path."""
    import tempfile

    from verify.assignment import load_spec

    load_spec(spec_path)  # SpecError before anything is written
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise FileNotFoundError(2, "No such folder", str(out))
    with tempfile.TemporaryDirectory(prefix="verify_autograder_") as tmp:
        wheel = build_wheel(tmp)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with zipfile.ZipFile(partial, "w") as archive:
                _zip_write(archive, "setup.sh", SETUP_SH.format(wheel=wheel.name), executable=True)
                _zip_write(archive, "run_autograder", RUN_AUTOGRADER, executable=True)
                _zip_write(archive, "assignment.yaml", Path(spec_path).read_bytes())
                _zip_write(archive, wheel.name, wheel.read_bytes())
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return out


def submitter(root):
    """Who submitted (Gradescope's submission_metadata.json: the users' ids), for their own seeded cases;
    "submission" when the file is absent."""
    try:
        users = json.loads((Path(root) / "submission_metadata.json").read_text()).get("users") or []
        ids = sorted(str(u.get("id") or u.get("email") or "") for u in users)
        return "+".join(i for i in ids if i) or "submission"
    except (OSError, ValueError, AttributeError):
        return "submission"


def grade_submission(root, spec_path):
    """Grade root/submission and write root/results/results.json; whatever fails, a results.json is written."""
    start = time.monotonic()
    results_path = Path(root) / "results" / "results.json"
    try:
        from verify.assignment import load_spec
        from verify.classroom import grade_class, seeding_available
        from verify.gradebook import gradescope_results
        from verify.sandbox import Limits

        spec = load_spec(spec_path)
        limits = Limits(timeout=spec.timeout or 60.0, max_memory=4 * 2**30 if spec.max_memory is None
                        else spec.max_memory)
        seed = spec.seed if seeding_available() else None
        name = submitter(root)
        folder = Path(root) / "submission"
        error = "" if folder.is_dir() and not folder.is_symlink() else "no submission folder was found"
        [student] = grade_class(None, spec, jobs=1, limits=limits, seed=seed,
                                folders=[(name, None if error else folder, error)])
        seeded = (f"Cases drawn from seed {spec.seed} and who submitted. " if seed is not None else
                  "The spec's seed is not used: this verify has only the fixed cases. " if spec.seed is not None
                  else "")
        results = gradescope_results(spec, student, time.monotonic() - start,
                                     output=f"{spec.name}: {student.total:g} / {student.max_points:g} points. "
                                            f"{seeded}Limits: {limits.describe()}.")
        status = 0
    except BaseException as e:  # the grader's own failure: the student must still see a result
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        results = {"score": 0, "output_format": "md", "tests": [], "execution_time": round(time.monotonic() - start),
                   "output": f"The autograder itself failed ({detail}); this submission was not graded. Please "
                             "tell the course staff."}
        traceback.print_exc()  # to Gradescope's stdout log, for the staff
        status = 1
    results_path.parent.mkdir(parents=True, exist_ok=True)
    from verify.gradebook import write_atomic

    write_atomic(results_path, json.dumps(results, indent=2))
    return status


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m verify", description="Gradescope's autograder for verify.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("autograder", help="write the autograder zip to upload to Gradescope")
    make.add_argument("--assignment", required=True, metavar="SPEC", help="the assignment spec (YAML file or a "
                                                                          "shipped name)")
    make.add_argument("--out", default="autograder.zip", metavar="ZIP", help="where to write it (autograder.zip)")
    grade = sub.add_parser("gradescope", help="(inside Gradescope) grade ROOT/submission, write "
                                              "ROOT/results/results.json")
    grade.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"), metavar="ROOT")
    grade.add_argument("--assignment", required=True, metavar="SPEC")
    return parser


def main(argv):
    from verify.assignment import SpecError, load_spec, shipped_specs

    args = build_parser().parse_args(argv)
    if args.command == "gradescope":
        return grade_submission(args.root, args.assignment)
    spec_path = args.assignment
    if not Path(spec_path).is_file() and spec_path in shipped_specs():
        spec_path = str(shipped_specs()[spec_path])
    try:
        load_spec(spec_path)
    except SpecError as e:
        print("\n".join(f"error: --assignment: {line}" for line in e.lines), file=sys.stderr)
        return 2
    out = build_autograder(spec_path, args.out)
    print(f"wrote {out} ({out.stat().st_size / 2**10:.0f} KiB): upload it as the autograder of a Gradescope "
          "programming assignment")
    return 0
