"""verify as a course's grader: the assignment spec (verify/assignment.py), a class graded into a gradebook,
feedback files and a CSV (verify/classroom.py, verify/gradebook.py), Gradescope's autograder zip run end to end in
an /autograder-shaped tree (verify/autograder.py), and the slim install that runs verify with numpy, torch,
future and PyYAML only.

Run: .venv/bin/python -m pytest tests/test_grader.py -q   (markers: verify; slow for the zip and the fresh venv)
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from verify.assignment import SpecError, Target, load_spec, parse_spec, shipped_specs, student_seed
from verify.autograder import SLIM_REQUIREMENTS, build_autograder
from verify.checks import CheckRow, TargetResult, check_file, write_job
from verify.classroom import Jobs, choose, scan, seeding_available, staged
from verify.cli import main

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOMEWORK, YEARS, HOSTILE = FIXTURES / "homework", FIXTURES / "homework_years", FIXTURES / "hostile"
Y2018 = YEARS / "y2018" / "assignment1" / "cs231n" / "classifiers"
Y2016 = YEARS / "y2016" / "assignment1" / "cs231n" / "classifiers"
BLOCKED = ["lightning", "optuna", "torchvision", "sklearn", "matplotlib", "train", "tqdm", "jsonargparse"]


def write_spec(path, **overrides):
    spec = {"name": "test assignment", "timeout": 4, "max_memory": "1G", "targets": [
        {"file": "softmax.py", "name": "softmax_loss_naive", "points": 5},
        {"file": "softmax.py", "name": "softmax_loss_vectorized", "points": 5},
        {"file": "neural_net.py", "name": "TwoLayerNet", "points": 12, "visibility": "after_published",
         "partial": {"scores": 2, "loss": 2, "W1": 2, "b1": 2, "W2": 2, "b2": 2}}]}
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path


# ---- the spec ----

def test_shipped_specs_load_and_add_up():
    specs = {name: load_spec(name) for name in shipped_specs()}
    assert {"cs231n-a1-2016-2019", "cs231n-a1-2020"} <= set(specs)
    for spec in specs.values():
        for t in spec.targets:
            assert not t.partial or sum(t.partial.values()) == t.points


@pytest.mark.parametrize("data,message", [
    ({"targets": []}, "targets: expected a non-empty list"),
    ({"targets": [{"file": "softmax.py", "name": "softmax_loss_naive"}]}, "targets[0].points: expected a number"),
    ({"targets": [{"file": "softmax", "name": "f", "points": 1}]}, "targets[0].file: expected a relative .py"),
    ({"targets": [{"file": "../x.py", "name": "f", "points": 1}]}, "targets[0].file: expected a relative .py"),
    ({"targets": [{"file": "a.py", "name": "f", "points": 1, "visibility": "secret"}]},
     "targets[0].visibility: expected one of visible, hidden, after_due_date, after_published, got 'secret'"),
    ({"targets": [{"file": "softmax.py", "name": "softmax_loss_naive", "points": 4, "partial": {"dW": 3}}]},
     "add up to 3, not to the target's 4 points"),
    ({"targets": [{"file": "softmax.py", "name": "softmax_loss_naive", "points": 4, "partial": {"W1": 4}}]},
     "softmax_loss_naive has no quantity 'W1' (it has: dW, loss)"),
    ({"targets": [{"file": "a.py", "name": "f", "points": 1}] * 2}, "targets: a.py:f is listed 2 times"),
    ({"seed": -1, "targets": [{"file": "a.py", "name": "f", "points": 1}]}, "seed: expected a whole number"),
    ({"timeout": 0, "targets": [{"file": "a.py", "name": "f", "points": 1}]}, "timeout: expected a positive"),
    ({"max_memory": "lots", "targets": [{"file": "a.py", "name": "f", "points": 1}]}, "max_memory: expected a size"),
    ({"pionts": 3, "targets": [{"file": "a.py", "name": "f", "points": 1}]}, "unknown key 'pionts'"),
])
def test_each_spec_mistake_is_one_line(data, message):
    with pytest.raises(SpecError) as exc:
        parse_spec(data, "a.yaml")
    assert any(message in line and line.startswith("a.yaml: ") for line in exc.value.lines), exc.value.lines


def test_every_mistake_is_listed_and_the_cli_says_each_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: x\ntargets:\n  - {file: a, name: f, points: -1}\n")
    (tmp_path / "class" / "ada").mkdir(parents=True)
    assert main(["--submissions", str(tmp_path / "class"), "--assignment", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: --assignment: ") for line in err), err
    bad.write_text("targets: [\n")
    assert main(["--submissions", str(tmp_path / "class"), "--assignment", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def test_student_seed_is_stable_and_their_own():
    seeds = {student_seed(7, name) for name in ("ada", "bob", "cyd", "dee")}
    assert len(seeds) == 4 and student_seed(7, "ada") != student_seed(8, "ada")
    code = "from verify.assignment import student_seed; print(student_seed(7, 'ada'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": salt}).stdout.strip() for salt in ("1", "2")}
    assert runs == {str(student_seed(7, "ada"))}


@pytest.mark.skipif(not seeding_available(), reason="this verify has only the fixed cases")
def test_each_student_gets_their_own_seeded_cases(tmp_path, capsys):
    jobs = Jobs(tmp_path)
    ada, bob = jobs(student_seed(5, "ada")), jobs(student_seed(5, "bob"))
    with np.load(ada) as a, np.load(bob) as b:
        assert any(k in b.files and (a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]))
                   for k in a.files if k.startswith("softmax/"))
    assert jobs(student_seed(5, "ada")) == ada  # written once per seed
    for name in ("ada", "bob"):
        shutil.copytree(YEARS / "y2018", tmp_path / "class" / name)
    argv = ["--submissions", str(tmp_path / "class"), "--assignment", str(write_spec(tmp_path / "a.yaml", seed=5)),
            "--gradebook", str(tmp_path / "grades.csv")]
    assert main(argv) == 0
    assert "cases drawn from seed 5 and each folder's name" in capsys.readouterr().out
    with open(tmp_path / "grades.csv", newline="") as f:
        assert [row["total"] for row in csv.DictReader(f)] == ["22", "22"]  # correct code passes any seed


def test_partial_credit_counts_the_quantities_right_in_every_case():
    target = Target("neural_net.py", "TwoLayerNet", 12, partial={q: 2 for q in ("scores", "loss", "W1", "b1", "W2",
                                                                                 "b2")})
    rows = [CheckRow(c, q, "course", 0.0, 1e-6, not (q == "b1" and c == "reg")) for c in ("random", "reg")
            for q in ("scores", "loss", "W1", "b1", "W2", "b2")]
    assert target.score(TargetResult("f", "TwoLayerNet", kind="two_layer", status="FAIL", rows=rows)) == 10
    assert target.score(TargetResult("f", "TwoLayerNet", kind="two_layer", status="PASS", rows=rows)) == 12
    for status in ("ERROR", "MISSING"):
        assert target.score(TargetResult("f", "TwoLayerNet", status=status, message="x")) == 0
    assert target.score(TargetResult("f", "TwoLayerNet", status="FAIL", message="time limit")) == 0
    assert Target("a.py", "f", 3).score(TargetResult("f", "f", status="FAIL", rows=rows)) == 0


# ---- layouts ----

def test_the_shallowest_copy_outside_backup_folders_is_chosen(tmp_path):
    for rel in ("hw/assignment1_backup/softmax.py", "Copy of hw/softmax.py", "hw/deep/er/softmax.py",
                "hw/a/softmax.py", "hw/b/softmax.py", ".git/softmax.py", "old.bak/neural_net.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "linear_svm.py").symlink_to("/etc/hostname")
    found = scan(tmp_path)
    rel, note, error = choose(found, "softmax.py")
    assert rel == Path("hw/a/softmax.py") and not error
    assert "the shallowest of 5 copies" in note and "hw/assignment1_backup/softmax.py (in a backup" in note
    rel, note, _ = choose(found, "neural_net.py")
    assert rel is None and "only old.bak/neural_net.py (in a backup or copy folder): not graded" in note
    rel, _, error = choose(found, "linear_svm.py")
    assert rel is None and "linear_svm.py is a symbolic link" in error
    assert choose(found, "hw/b/softmax.py")[0] == Path("hw/b/softmax.py")  # a path suffix picks that copy


def test_a_flat_upload_that_imports_its_package_is_checked_as_that_package(tmp_path):
    y2021 = YEARS / "y2021" / "assignment1" / "cs231n"
    flat = tmp_path / "stu"
    flat.mkdir()
    for source in (y2021 / "classifiers" / "fc_net.py", y2021 / "layers.py", y2021 / "layer_utils.py"):
        shutil.copy(source, flat)  # fc_net.py says `from ..layers import *`
    path, note = staged(flat / "fc_net.py", "fc_net.py", tmp_path / "staged")
    assert path == tmp_path / "staged" / "cs231n" / "classifiers" / "fc_net.py"
    assert (tmp_path / "staged" / "cs231n" / "layers.py").is_file() and "checked as cs231n/classifiers" in note
    assert staged(flat / "layers.py", "layers.py", tmp_path / "unused") == (flat / "layers.py", "")
    [result] = check_file(str(path), write_job(tmp_path), name="TwoLayerNet")
    assert result.status == "PASS", result.message


def _class_folder(root):
    """ada: 2018 layout plus a backup copy; flat: the files at the top; eve: nothing; cyd: Python 2; dee: the
    no-max, no-1/N net and a looping vectorized loss; three links: dangling, looping, to ada."""
    shutil.copytree(YEARS / "y2018", root / "ada" / "hw")
    shutil.copytree(YEARS / "y2018", root / "ada" / "hw_backup")
    (root / "flat").mkdir()
    shutil.copy(Y2018 / "softmax.py", root / "flat")
    shutil.copy(Y2018 / "neural_net.py", root / "flat")
    (root / "eve").mkdir()
    shutil.copytree(YEARS / "y2016", root / "cyd")
    (root / "dee").mkdir()
    shutil.copy(HOMEWORK / "twolayer_no_max_no_div_n.py", root / "dee" / "neural_net.py")
    naive = (Y2018 / "softmax.py").read_text().split("def softmax_loss_vectorized")[0]
    (root / "dee" / "softmax.py").write_text(naive + (HOSTILE / "endless_loop.py").read_text().split('"""')[-1])
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "loop").symlink_to(root / "loop")
    (root / "linked").symlink_to(root / "ada")
    return root


def test_a_class_to_a_gradebook_feedback_and_csv(tmp_path, capsys):
    folder = _class_folder(tmp_path / "class")
    out = {name: tmp_path / name for name in ("grades.csv", "targets.csv", "feedback")}
    argv = ["--submissions", str(folder), "--assignment", str(write_spec(tmp_path / "a.yaml")), "--jobs", "2",
            "--timeout", "3", "--gradebook", str(out["grades.csv"]), "--csv", str(out["targets.csv"]),
            "--feedback", str(out["feedback"])]
    assert main(argv) == 0
    text = capsys.readouterr().out
    with open(out["grades.csv"], newline="") as f:
        reader = csv.DictReader(f)
        book = {row["submission"]: row for row in reader}
    assert reader.fieldnames == ["submission", "softmax.py:softmax_loss_naive", "softmax.py:softmax_loss_vectorized",
                                 "neural_net.py:TwoLayerNet", "total", "max"]
    totals = {name: (float(row["total"]), float(row["max"])) for name, row in book.items()}
    assert totals == {"ada": (22, 22), "flat": (22, 22), "eve": (0, 22), "cyd": (10, 22), "dee": (7, 22),
                      "dangling": (0, 22), "loop": (0, 22), "linked": (0, 22)}
    assert book["dee"]["neural_net.py:TwoLayerNet"] == "2"  # partial credit: its scores are right
    with open(out["targets.csv"], newline="") as f:
        rows = {(r["submission"], r["name"]): r for r in csv.DictReader(f)}
    assert rows[("eve", "TwoLayerNet")]["status"] == "MISSING" and rows[("eve", "TwoLayerNet")]["points"] == "0"
    assert rows[("flat", "TwoLayerNet")]["file"] == "neural_net.py"
    assert rows[("ada", "TwoLayerNet")]["file"] == "hw/assignment1/cs231n/classifiers/neural_net.py"
    for link, why in (("dangling", "dangling symbolic link"), ("loop", "symbolic link that loops"),
                      ("linked", "symbolic link to")):
        assert rows[(link, "softmax_loss_naive")]["status"] == "ERROR" and why in rows[(link, "TwoLayerNet")]["hint"]
    assert rows[("cyd", "TwoLayerNet")]["status"] == "ERROR" and "Python 2" in rows[("cyd", "TwoLayerNet")]["hint"]
    hint = rows[("dee", "TwoLayerNet")]["hint"]
    assert "no max subtraction" in hint and "not divided by N" in hint  # every quantity's hint, not the first
    fast, looping = rows[("dee", "softmax_loss_naive")], rows[("dee", "softmax_loss_vectorized")]
    assert looping["status"] == "FAIL" and float(looping["seconds"]) >= 3 > float(fast["seconds"])
    assert "ada: softmax.py: chose hw/assignment1/cs231n/classifiers/softmax.py (the shallowest of 2" in text
    feedback = (out["feedback"] / "dee.md").read_text()
    assert "# test assignment: feedback for dee" in feedback and "time limit" in feedback
    assert "- **W1** is wrong" in feedback and "not divided by N" in feedback and str(folder) not in feedback
    assert sorted(p.name for p in out["feedback"].iterdir()) == sorted(f"{n}.md" for n in totals)


def test_unwritable_output_is_one_error_line(tmp_path, capsys):
    (tmp_path / "class" / "eve").mkdir(parents=True)
    argv = ["--submissions", str(tmp_path / "class"), "--assignment", str(write_spec(tmp_path / "a.yaml")),
            "--gradebook", str(tmp_path / "no" / "such" / "folder" / "grades.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No such file or directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_verify_imports_and_runs_without_the_training_stack():
    code = (f"import sys\nblocked = {BLOCKED!r}\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in blocked:\n"
            "            raise ImportError(name + ' is blocked')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "import pkgutil, importlib, verify\n"
            "for m in pkgutil.iter_modules(verify.__path__):\n"
            "    if not m.name.startswith('_'):\n"
            "        importlib.import_module('verify.' + m.name)\n"
            "from verify.cli import main\n"
            f"sys.exit(main(['--target', {str(Y2018 / 'softmax.py')!r}, '--timeout', '20']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "verify: 2 PASS, 0 FAIL, 0 ERROR" in proc.stdout


def test_slim_requirements_are_the_verify_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert tuple(project["optional-dependencies"]["verify"]) == SLIM_REQUIREMENTS
    assert tuple(project["dependencies"]) == SLIM_REQUIREMENTS
    assert project["scripts"]["verify"] == "verify.cli:main"


# ---- Gradescope, end to end ----

GRADESCOPE_KEYS = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                   "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_KEYS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}
VISIBILITY = {"visible", "hidden", "after_due_date", "after_published"}


def assert_gradescope_format(results):
    """results.json as Gradescope's autograder specification describes it (types, allowed keys and values)."""
    assert set(results) <= GRADESCOPE_KEYS, set(results) - GRADESCOPE_KEYS
    assert isinstance(results["score"], (int, float)) and results["output_format"] == "md"
    assert isinstance(results.get("output", ""), str) and isinstance(results["tests"], list)
    for test in results["tests"]:
        assert set(test) <= TEST_KEYS and {"name", "score", "max_score", "status", "output"} <= set(test), test
        assert isinstance(test["name"], str) and isinstance(test["output"], str) and isinstance(test["number"], str)
        assert 0 <= test["score"] <= test["max_score"] and test["status"] in ("passed", "failed")
        assert test["visibility"] in VISIBILITY and all(isinstance(t, str) for t in test["tags"])
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


def looping_softmax():
    naive = (Y2018 / "softmax.py").read_text().split("def softmax_loss_vectorized")[0]
    return naive + (HOSTILE / "endless_loop.py").read_text().split('"""')[-1]


SUBMISSIONS = {  # name: ({file in the submission: source}, expected score, expected status per test)
    "correct": ({"softmax.py": Y2018 / "softmax.py", "neural_net.py": Y2018 / "neural_net.py"}, 22,
                ["passed"] * 3),
    "buggy": ({"softmax.py": HOMEWORK / "softmax_no_max.py", "neural_net.py": HOMEWORK / "twolayer_no_b1_forward.py"},
              0, ["failed"] * 3),
    "missing_file": ({"cs231n/classifiers/softmax.py": Y2018 / "softmax.py"}, 10, ["passed", "passed", "failed"]),
    "python2": ({"softmax.py": Y2016 / "softmax.py", "neural_net.py": Y2016 / "neural_net.py"}, 10,
                ["passed", "passed", "failed"]),
    "looping": ({"softmax.py": looping_softmax, "neural_net.py": Y2018 / "neural_net.py"}, 17,
                ["passed", "failed", "passed"]),
}


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autograder")
    return build_autograder(write_spec(folder / "assignment.yaml", timeout=3), folder / "autograder.zip")


def gradescope_tree(root, autograder, files):
    """An /autograder-shaped tree: source/ (the zip), run_autograder, submission/ (files), results/ left out."""
    with zipfile.ZipFile(autograder) as z:
        z.extractall(root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    for rel, source in files.items():
        (root / "submission" / rel).parent.mkdir(parents=True, exist_ok=True)
        text = source() if callable(source) else Path(source).read_text()
        (root / "submission" / rel).write_text(text)
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"id": 42, "name": "Ada"}]}))
    return root


def run_autograder(root, python_bin=Path(sys.executable).parent, extra_env=None):
    """run_autograder as Gradescope runs it (cwd /autograder), with python3 from python_bin; results.json."""
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PATH": f"{python_bin}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    proc = subprocess.run(["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_the_zip_holds_what_gradescope_needs(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        names = {i.filename: i for i in z.infolist()}
        setup = z.read("setup.sh").decode()
    wheel = next(n for n in names if n.endswith("-py3-none-any.whl"))
    assert {"setup.sh", "run_autograder", "assignment.yaml"} <= set(names)
    assert names["run_autograder"].external_attr >> 16 & 0o111 and names["setup.sh"].external_attr >> 16 & 0o111
    assert f"pip install ./{wheel}" in setup and "download.pytorch.org/whl/cpu" in setup
    with zipfile.ZipFile(autograder_zip) as z, z.open(wheel) as w, zipfile.ZipFile(w) as whl:
        files = set(whl.namelist())
        metadata = whl.read(next(f for f in files if f.endswith("METADATA"))).decode()
    assert "verify/cli.py" in files and "verify/assignments/cs231n-a1-2016-2019.yaml" in files
    assert not any(f.startswith("train/") for f in files)
    assert [line.split(": ")[1] for line in metadata.splitlines() if line.startswith("Requires-Dist")] == \
        list(SLIM_REQUIREMENTS)


@pytest.mark.slow
def test_run_autograder_end_to_end(tmp_path, autograder_zip):
    def one(name):
        files, _, _ = SUBMISSIONS[name]
        return run_autograder(gradescope_tree(tmp_path / name, autograder_zip, files))

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(SUBMISSIONS, pool.map(one, SUBMISSIONS)))
    for name, (_, score, statuses) in SUBMISSIONS.items():
        r = results[name]
        assert_gradescope_format(r)
        assert r["score"] == score and [t["status"] for t in r["tests"]] == statuses, (name, r)
        assert [t["max_score"] for t in r["tests"]] == [5, 5, 12]
        assert [t["visibility"] for t in r["tests"]] == ["visible", "visible", "after_published"]
    assert "b1 missing from the forward pass" in results["buggy"]["tests"][2]["output"]
    assert "**MISSING**" in results["buggy"]["tests"][0]["output"]  # softmax_no_max.py defines no naive loss
    assert "no neural_net.py in the submission" in results["missing_file"]["tests"][2]["output"]
    assert "Python 2 code" in results["python2"]["tests"][2]["output"]
    assert "time limit: still running after 3 s" in results["looping"]["tests"][1]["output"]


def test_a_failing_grader_still_writes_results(tmp_path, autograder_zip):
    root = gradescope_tree(tmp_path / "crash", autograder_zip, {"softmax.py": Y2018 / "softmax.py"})
    (root / "source" / "assignment.yaml").write_text("targets: [\n")  # the grader cannot read its own spec
    results = run_autograder(root)
    assert_gradescope_format(results)
    assert results["score"] == 0 and "The autograder itself failed" in results["output"]
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "python3").write_text("#!/bin/sh\nexit 3\n")  # verify not installed at all: the script's own fallback
    (stub / "python3").chmod(0o755)
    (root / "results" / "results.json").unlink()
    results = run_autograder(root, python_bin=stub)
    assert_gradescope_format(results)
    assert "The autograder itself failed (exit status 3)" in results["output"]


# ---- the slim install ----

def _installed_closure(names):
    """The installed distributions that `pip install` of names would bring (their requirements, recursively)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = {}, list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            seen[key] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # a platform requirement this machine does not have
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


@pytest.mark.slow
def test_a_fresh_venv_with_only_the_verify_extra(tmp_path, autograder_zip):
    """A venv holding the wheel of the zip plus numpy, torch, future, PyYAML and what they require (linked in
    from this venv): the console script, python -m verify and run_autograder all work; Lightning is absent."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    links = tmp_path / "slim"
    links.mkdir()
    for dist in _installed_closure([r.split(">")[0] for r in SLIM_REQUIREMENTS]):
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")} - {"__pycache__"}:
            if not (links / top).exists() and (Path(dist.locate_file(top))).exists():
                (links / top).symlink_to(dist.locate_file(top))
    (site / "slim.pth").write_text(f"{links}\n")
    with zipfile.ZipFile(autograder_zip) as z:
        wheel = next(n for n in z.namelist() if n.endswith(".whl"))
        z.extract(wheel, tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(tmp_path / wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = lambda *argv: subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    proc = run(str(venv / "bin" / "verify"), "--target", str(Y2018 / "softmax.py"))
    assert proc.returncode == 0 and "verify: 2 PASS, 0 FAIL, 0 ERROR" in proc.stdout, proc.stdout + proc.stderr
    where = run(str(venv / "bin" / "python"), "-c", "import verify; print(verify.__file__)").stdout
    assert where.startswith(str(site))  # the wheel's copy, not this checkout
    assert run(str(venv / "bin" / "python"), "-m", "verify", "--help").returncode == 0
    assert run(str(venv / "bin" / "python"), "-c", "import lightning").returncode != 0
    root = gradescope_tree(tmp_path / "gs", autograder_zip, SUBMISSIONS["correct"][0])
    results = run_autograder(root, python_bin=venv / "bin", extra_env={"PYTHONPATH": ""})
    assert_gradescope_format(results)
    assert results["score"] == 22
