"""verify's sandbox: no process a target starts outlives the check (a fork that returns, a setsid daemon, a daemon
thread, a multiprocessing pool; with --target and with --submissions --jobs 2), and a flood of output is counted
and dropped without breaking the student's print().

The orphan fixtures (tests/fixtures/orphans/) append the pids they start to the file VERIFY_TEST_PIDS names; once
verify returns, none of them may be alive. Killing a daemon that left the process group needs Linux (the
supervisor is its subreaper), so those tests are skipped elsewhere.
Run: python -m pytest tests/test_verify_sandbox.py -q   (marker: verify)
"""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verify.checks import check_file, write_job
from verify.cli import main
from verify.sandbox import Limits

pytestmark = [pytest.mark.verify,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-tree cleanup needs Linux")]
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
ORPHANS = FIXTURES / "orphans"
LIMITS = Limits(timeout=20.0, max_memory=2**31)  # generous: a loaded CI machine forks slowly


def alive(pid):
    """Whether pid is a live process (a zombie is dead: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def pid_file(tmp_path, monkeypatch):
    path = tmp_path / "pids.txt"
    monkeypatch.setenv("VERIFY_TEST_PIDS", str(path))
    return path


def started(pid_file):
    return [int(line) for line in pid_file.read_text().split()] if pid_file.exists() else []


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return write_job(tmp_path_factory.mktemp("job"))


@pytest.mark.parametrize("file,count", [("forks_and_returns.py", 1), ("setsid_daemon.py", 2),
                                        ("daemon_thread.py", 2), ("pool_left_open.py", 2)])
def test_no_process_outlives_a_passing_target(job, pid_file, file, count):
    results = check_file(str(ORPHANS / file), job, limits=LIMITS)
    pids = started(pid_file)
    assert len(pids) == count, pids  # the fixture did start them
    assert [r.status for r in results] == ["PASS"], [r.message for r in results]
    assert [pid for pid in pids if alive(pid)] == []


def test_no_process_outlives_a_target_killed_at_its_time_limit(job, pid_file):
    results = check_file(str(ORPHANS / "daemon_then_loop.py"), job, limits=Limits(timeout=4.0, max_memory=2**31))
    assert results[0].status == "FAIL" and "time limit" in results[0].message
    pids = started(pid_file)
    assert len(pids) == 2 and [pid for pid in pids if alive(pid)] == []


def test_no_process_outlives_a_class_checked_two_at_a_time(tmp_path, pid_file, capsys):
    for student, file in [("ann", "forks_and_returns.py"), ("ben", "setsid_daemon.py"),
                          ("cat", "forks_and_returns.py")]:
        folder = tmp_path / "class" / student / "assignment1" / "cs231n" / "classifiers"
        folder.mkdir(parents=True)
        shutil.copy(ORPHANS / file, folder / "softmax.py")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: orphans\ntargets:\n  - {file: softmax.py, name: softmax_loss_vectorized, points: 1}\n")
    argv = ["--submissions", str(tmp_path / "class"), "--assignment", str(spec), "--jobs", "2", "--timeout", "20",
            "--max-memory", "2G"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 targets of 3 submission(s): 3 PASS" in out, out
    pids = started(pid_file)
    assert len(pids) == 4 and [pid for pid in pids if alive(pid)] == []


@pytest.mark.slow
def test_no_process_outlives_verify_itself_killed(pid_file):
    """verify SIGKILLed mid-check: its supervisor is told by the kernel (PR_SET_PDEATHSIG) and kills the tree."""
    proc = subprocess.Popen([sys.executable, "-m", "verify", "--target", str(ORPHANS / "daemon_then_loop.py"),
                             "--timeout", "120"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(started(pid_file)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    pids = started(pid_file)
    assert len(pids) == 2
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if alive(pid)] == []


def test_a_flood_of_output_passes_and_is_counted(job):
    result, = check_file(str(ORPHANS / "prints_a_flood.py"), job, limits=LIMITS)
    calls = result.output_lines - 80_000  # 40 blocks of 1,000 lines on stdout and on stderr, then one per call
    assert result.status == "PASS", result.message
    assert 5 <= calls <= 100 and "computing the loss" not in result.output_head  # the head is the import's
    assert len(result.output_head) == 20 and result.output_head[0] == "x" * 500  # a kept line is cut
    assert any(f"printed {result.output_lines:,} lines" in n and "counted and dropped" in n for n in result.notes)


def test_each_target_has_its_own_time(job, tmp_path):
    path = tmp_path / "softmax.py"
    path.write_text(
        (ORPHANS / "forks_and_returns.py").read_text().split("started = []")[0]
        + "import time\n\nsoftmax_loss_vectorized = loss_and_grad\n\n\n"
        + "def softmax_loss_naive(W, X, y, reg, slept=[]):\n"
        + "    slept or slept.append(time.sleep(2.0))  # once\n"
        + "    return loss_and_grad(W, X, y, reg)\n")
    results = {r.name: r for r in check_file(str(path), job, limits=LIMITS)}
    assert {n: r.status for n, r in results.items()} == {"softmax_loss_naive": "PASS", "softmax_loss_vectorized":
                                                         "PASS"}
    assert 2.0 <= results["softmax_loss_naive"].seconds < 15
    assert results["softmax_loss_vectorized"].seconds < results["softmax_loss_naive"].seconds - 1.5


# ---- loading the student's file ----

YEAR_2021 = FIXTURES / "homework_years" / "y2021"


def test_namespace_package_loads(job, tmp_path):
    shutil.copytree(YEAR_2021, tmp_path / "hw")
    for init in (tmp_path / "hw").rglob("__init__.py"):
        init.unlink()  # cs231n/ and cs231n/classifiers/ become namespace packages
    fc_net = tmp_path / "hw" / "assignment1" / "cs231n" / "classifiers" / "fc_net.py"
    assert "from ..layers import *" in fc_net.read_text()
    results = check_file(str(fc_net), job, limits=LIMITS)
    assert [(r.name, r.status) for r in results] == [("TwoLayerNet", "PASS")], [r.message for r in results]


def test_module_name_from_the_assignment_folder(tmp_path, monkeypatch, capsys):
    shutil.copytree(YEAR_2021, tmp_path / "hw")
    monkeypatch.chdir(tmp_path / "hw" / "assignment1")  # classifiers/__init__.py imports files that are not there
    assert main(["--target", "cs231n.classifiers.fc_net:TwoLayerNet", "--timeout", "20"]) == 0
    assert "result: PASS" in capsys.readouterr().out


@pytest.mark.parametrize("content,message", [
    (bytes(range(256)) * 4, "softmax.py is not Python source text (it holds null bytes"),
    ("# café\ndef softmax_loss_vectorized(W, X, y, reg):\n    pass\n".encode("latin-1"),
     "softmax.py is not readable text (byte 0xe9 at line 1 is not utf-8); save it as UTF-8"),
])
def test_a_file_that_is_not_source_text_is_one_error_line(tmp_path, content, message, capsys):
    path = tmp_path / "softmax.py"
    path.write_bytes(content)
    assert main(["--target", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"ERROR cannot be imported: {message}" in out and "None" not in out and "Traceback" not in out


def test_what_a_hanging_or_dying_target_printed_is_shown(job, tmp_path):
    path = tmp_path / "softmax.py"
    path.write_text("import os, sys\n\n\n"
                    "def softmax_loss_naive(W, X, y, reg):\n"
                    "    print('before the exit'); sys.stderr.write('to stderr\\n')\n"
                    "    os._exit(1)\n\n\n"
                    "def softmax_loss_vectorized(W, X, y, reg):\n"
                    "    print('before the loop')\n"
                    "    while True:\n"
                    "        pass\n")
    results = check_file(str(path), job, limits=Limits(timeout=3.0, max_memory=2**31))
    assert [r.status for r in results] == ["FAIL", "FAIL"]
    assert results[0].output_head == ["before the exit", "to stderr", "before the loop"]
