"""``python -m train sweep`` under faults: killed processes, lost trials, damaged or foreign study files, a changed
space, unwritable folders and stale temporary files. Nothing is lost, nothing is reported done while a trial is
RUNNING, and every fault ends as one ``error:`` line.

Run: ``python -m pytest tests/test_sweep_faults.py -q`` (the random-kill test is marked slow).
"""
import os
import random
import signal
import subprocess
import sys
import time

import optuna
import pytest

from tests.test_sweep import TINY, read_trials_csv, run_sweep_process
from train import sweep, sweep_study

pytestmark = [pytest.mark.sweep, pytest.mark.lightning]


def load_trials(out, study="digits"):
    cfg = sweep.parse_config(["--output_dir", str(out)])
    storage = sweep_study.make_storage(cfg, out / study)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def new_study(out, *args):
    """The study a sweep with ``args`` would open, made without running it."""
    cfg = sweep.parse_config([*TINY, *args, "--output_dir", str(out)])
    (out / "digits").mkdir(parents=True, exist_ok=True)
    return cfg, optuna.create_study(study_name="digits", storage=sweep_study.make_storage(cfg, out / "digits"),
                                    direction="maximize", load_if_exists=True)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def assert_all_done(trials, n_trials):
    """No trial RUNNING or WAITING, every number once, and the budget met by completed or diverged trials."""
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert [t.number for t in trials] == list(range(len(trials)))
    counted = [t for t in trials if t.state.name == "COMPLETE" or "diverged_at_step" in t.user_attrs]
    assert len(counted) >= n_trials, states


@pytest.mark.parametrize("moment", ["between ask and worker record", "after the worker record"])
def test_a_trial_whose_process_is_gone_is_run_again_at_once(tmp_path, monkeypatch, capsys, moment):
    """A trial left RUNNING by a killed process, with no heartbeat: a rerun right away fails it, runs its
    hyperparameters again, and reports no RUNNING trial."""
    monkeypatch.setattr(sweep_study, "ASK_GRACE_S", 0.2)
    out = tmp_path / "logs"
    cfg, study = new_study(out)
    killed = study.ask()
    params = sweep_study.suggest(killed, cfg.space)
    if moment == "after the worker record":
        killed.set_user_attr("worker", f"{sweep_study.socket.gethostname()}:{dead_pid()}")
    else:
        time.sleep(0.3)  # older than ASK_GRACE_S, with neither a worker nor a heartbeat
    assert sweep.main([*TINY, "--n_trials", "3", "--output_dir", str(out)]) == 0
    trials = load_trials(out)
    assert trials[0].state.name == "FAIL"
    assert_all_done(trials, 3)
    assert any(t.params == params and t.state.name == "COMPLETE" for t in trials[1:])  # the retry
    rows = read_trials_csv(out / "digits" / "trials.csv")
    assert "RUNNING" not in {r["state"] for r in rows}
    assert "1 failed" in capsys.readouterr().out  # the lost trial, named as such, not as diverged


def test_a_trial_of_a_live_process_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_study, "ASK_GRACE_S", 0.2)
    out = tmp_path / "logs"
    _, study = new_study(out)
    alive = study.ask()
    alive.set_user_attr("worker", f"{sweep_study.socket.gethostname()}:{os.getpid()}")
    assert sweep_study.reclaim_lost_trials(study) == 0
    assert study.trials[0].state.name == "RUNNING"


def test_summary_says_diverged_not_fail(tmp_path, capsys):
    args = ["--space.learning_rate", "[1000000.0]", "--space.momentum", "[0.9]", "--n_trials", "2"]
    assert sweep.main([*TINY, *args, "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no trial completed (2 diverged)" in err[0] and "smaller learning rates" in err[0]


def test_a_study_of_another_space_is_refused_with_what_to_do(tmp_path, capsys):
    out = str(tmp_path / "logs")
    assert sweep.main([*TINY, "--n_trials", "2", "--output_dir", out]) == 0
    capsys.readouterr()
    assert sweep.main([*TINY, "--space.momentum", "[0.5]", "--n_trials", "4", "--output_dir", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was searched over another space (space.momentum: [0.0, 0.9] there, [0.5] now)" in err[0]
    assert "--study_name" in err[0] and str(tmp_path / "logs" / "digits" / "study.db") in err[0]
    assert len(load_trials(tmp_path / "logs")) == 2  # nothing added


@pytest.mark.parametrize("damage", ["0 bytes", "zero-filled", "random bytes", "another database"])
def test_a_storage_file_that_is_not_a_study_is_never_overwritten(tmp_path, capsys, damage):
    study_dir = tmp_path / "logs" / "digits"
    study_dir.mkdir(parents=True)
    db = study_dir / "study.db"
    content = {"0 bytes": b"", "zero-filled": bytes(8192), "random bytes": random.Random(0).randbytes(8192)}
    if damage == "another database":
        import sqlite3

        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE notes (x)")
        content[damage] = db.read_bytes()
    else:
        db.write_bytes(content[damage])
    (study_dir / "best.yaml").write_text("# an earlier best\n")
    assert sweep.main([*TINY, "--n_trials", "2", "--output_dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: storage: {db} is not an Optuna study"), err
    assert db.read_bytes() == content[damage] and (study_dir / "best.yaml").read_text() == "# an earlier best\n"
    assert not (study_dir / "trials.csv").exists()


def test_an_unwritable_output_folder_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert sweep.main([*TINY, "--n_trials", "2", "--output_dir", str(blocker / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "Not a directory" in err[0], err


def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    study_dir = tmp_path / "logs" / "digits"
    study_dir.mkdir(parents=True)
    stale = study_dir / f".best.yaml.{dead_pid()}.tmp"
    live = study_dir / f".trials.csv.{os.getppid()}.tmp"  # another live process's write
    stale.write_text("x")
    live.write_text("x")
    assert sweep.main([*TINY, "--n_trials", "1", "--output_dir", str(tmp_path / "logs")]) == 0
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in study_dir.iterdir() if p.name.endswith(".tmp")) == [live.name]


def running_after_its_first_trial(proc, out, timeout=300):
    """Wait until the sweep process has asked a trial of its own (or ended); returns whether it still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(t.user_attrs.get("worker", "").endswith(f":{proc.pid}") for t in load_trials(out)):
                return True
        except Exception:  # no study yet, or its database is being created
            pass
        time.sleep(0.1)
    return proc.poll() is None


@pytest.mark.slow
def test_random_kills_of_a_sweep_lose_nothing_and_leave_nothing_running(tmp_path):
    """SIGKILL a real sweep process at random moments once it has trials (while it asks, trains, tells or writes
    its outputs), rerunning it each time; the last rerun finishes the budget with no trial lost, repeated or left
    RUNNING, and no temporary file left."""
    out = tmp_path / "logs"
    args = [*TINY, "--n_trials", "16", "--nets_per_step", "2", "--output_dir", str(out)]
    rng = random.Random(1)
    left_running = []
    for _ in range(2):
        proc = run_sweep_process(tmp_path, *args)
        if running_after_its_first_trial(proc, out):
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        left_running.append(sum(t.state.name == "RUNNING" for t in load_trials(out)))
    proc = run_sweep_process(tmp_path, *args)
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{stdout}\n{err}"
    trials = load_trials(out)
    assert_all_done(trials, 16)
    assert "running" not in stdout.split("trials (")[-1].split(")")[0]
    assert not [p for p in (out / "digits").iterdir() if p.name.endswith(".tmp")]
    assert sum(left_running) > 0, "no kill left a trial RUNNING: the test did not test the rerun"
    print(f"RUNNING trials left by each kill: {left_running}; {len(trials)} trials in the end, "
          f"{sum(t.state.name == 'FAIL' for t in trials)} of them failed and run again")
