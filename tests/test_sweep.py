"""``python -m train sweep`` (train/sweep*.py): the batched trials follow fit's trajectory, the study's outputs,
fit --config best.yaml reproducing the best val acc, an interrupted sweep continuing, two processes sharing a
storage, the grid sampler, pruning, divergence and bad settings.

Run: ``python -m pytest tests/test_sweep.py -q`` (or ``-m sweep``; the subprocess tests are also marked slow).
"""
import csv
import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from tests.helpers import FLOAT64_TOL, assert_close_report
from torch_impl.neural_net import PARAM_NAMES
from train import sweep, sweep_study, sweep_train
from train.cli import run_cli
from train.data import DigitsDataModule

pytestmark = [pytest.mark.sweep, pytest.mark.lightning]

ROOT = Path(__file__).resolve().parent.parent
DIGITS_FIT = str(ROOT / "configs" / "digits.yaml")
# a tiny sweep: 2 epochs of the digits, small nets, the process's thread count left alone
TINY = ["--torch_num_threads", "null", "--space.max_epochs", "[2]", "--space.hidden_size", "[10, 20]",
        "--space.momentum", "[0.0, 0.9]", "--space.learning_rate", "{low: 0.05, high: 0.3, log: true}"]


class TwoViewDigits(DigitsDataModule):
    """The digits with two views of every training example (the image and a shifted copy), as an augmenting data
    module stacks them (ArraySplits.train_views)."""

    def load(self):
        s = super().load()
        X = torch.cat([s.X_train, s.X_train.roll(1, dims=1)])  # (2N, D)
        return dataclasses.replace(s, X_train=X, y_train=s.y_train.repeat(2), train_views=2)


DEFAULT_DATA = yaml.safe_load((ROOT / "train" / "configs" / "sweep_digits.yaml").read_text())["data"]


def digits_splits(dtype, data=DEFAULT_DATA):
    """The data module's splits as the sweep holds them (on the CPU, in ``dtype``)."""
    dm = sweep.instantiate_data(data)
    s = dm.splits
    cast = lambda t: t.to(dtype) if t.is_floating_point() else t
    return dm, type(s)(cast(s.X_train), s.y_train, cast(s.X_val), s.y_val, class_names=s.class_names,
                       train_views=s.train_views)


def final_val_acc(stdout):
    match = re.search(r"final val/acc = ([0-9.]+)", stdout)
    assert match, f"no final val/acc line in:\n{stdout[-2000:]}"
    return float(match.group(1))


def test_config_file_is_the_embedded_default():
    defaults = sweep.parse_config([]).as_dict()
    from_file = sweep.parse_config(["--config", str(ROOT / "configs" / "sweep_digits.yaml")]).as_dict()
    from_file.pop("config", None)
    defaults.pop("config", None)
    assert from_file == defaults


def test_cs231n_grid_config_runs_every_point_once(tmp_path, capsys):
    """configs/sweep_grid.yaml, as shipped: 18 grid points, each trained once, best.yaml written."""
    out = str(tmp_path)
    assert sweep.main(["--config", str(ROOT / "configs" / "sweep_grid.yaml"), "--output_dir", out]) == 0
    rows = read_trials_csv(tmp_path / "digits_grid" / "trials.csv")
    points = {(r["learning_rate"], r["reg"], r["hidden_size"]) for r in rows}
    assert len(rows) == 18 and len(points) == 18
    assert "best val acc = " in capsys.readouterr().out and (tmp_path / "digits_grid" / "best.yaml").is_file()


@pytest.mark.parametrize("views", [1, 2])
def test_batched_trials_follow_fits_trajectory_float64(tmp_path, monkeypatch, capsys, views):
    """Trial 0 trained in a batch of two (another H, lr, momentum beside it) ends where fit ends: same init,
    batches (of one view per drawn example, with 2 views), lr schedule and momentum, parameters equal to 1e-10 in
    float64, and the same val acc."""
    trial = {"learning_rate": 0.1, "reg": 3e-3, "hidden_size": 20, "momentum": 0.9, "learning_rate_decay": 0.9,
             "max_epochs": 3}
    other = {**trial, "learning_rate": 0.3, "hidden_size": 33, "momentum": 0.0, "max_epochs": 2}
    data = DEFAULT_DATA if views == 1 else {**DEFAULT_DATA, "class_path": f"{__name__}.TwoViewDigits"}
    dm, splits = digits_splits(torch.float64, data)
    assert splits.train_views == views and dm.num_train == 1297
    outcomes = sweep_train.train_together([trial, other], splits, {"std": 1e-4, "init_seed": 0, "lr_schedule": "epoch"},
                                    dm.batch_size, dm.seed)
    assert [o.state for o in outcomes] == ["complete", "complete"] and outcomes[0].epochs == 3

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", DIGITS_FIT, "--trainer.precision", "64-true", "--trainer.max_epochs", "3",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--plots.enabled", "false", "--torch_num_threads", "null", f"--data.class_path={data['class_path']}",
            *(f"--model.{k}={trial[k]}" for k in sweep.SEARCHED[:-1])]
    assert run_cli(args) == 0
    assert final_val_acc(capsys.readouterr().out) == pytest.approx(outcomes[0].val_acc, abs=1e-9)
    ckpt = torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    for k in PARAM_NAMES:
        assert_close_report(k, outcomes[0].params[k], ckpt["state_dict"][f"net.{k}"], **FLOAT64_TOL)


def test_diverged_and_pruned_trials_leave_the_batch():
    dm, splits = digits_splits(torch.float32)
    base = {"learning_rate": 0.2, "reg": 1e-3, "hidden_size": 10, "momentum": 0.0, "learning_rate_decay": 1.0,
            "max_epochs": 3}
    trials = [base, {**base, "learning_rate": 1e6, "momentum": 0.9}, {**base, "hidden_size": 30}]
    alone = sweep_train.train_together([base], splits, {"std": 1e-4, "init_seed": 0, "lr_schedule": "epoch"},
                                 dm.batch_size, dm.seed)[0]
    outcomes = sweep_train.train_together(trials, splits, {"std": 1e-4, "init_seed": 0, "lr_schedule": "epoch"},
                                    dm.batch_size, dm.seed, on_epoch_end=lambda i, epoch, acc: i == 2)
    assert outcomes[1].state == "diverged" and outcomes[1].diverged_at_step is not None
    assert outcomes[2].state == "pruned" and outcomes[2].epochs == 1
    assert outcomes[0].state == "complete" and outcomes[0].val_accs == alone.val_accs
    for k in PARAM_NAMES:  # float32: the batch's GEMMs are wider, so only close, not bitwise
        torch.testing.assert_close(outcomes[0].params[k], alone.params[k])


def test_graph_path_replayed_eagerly_on_cpu_equals_the_eager_path(monkeypatch):
    """The sweep's CUDA path (one graph replay per epoch, divergence found in the epoch's loss table), with the
    capture replaced by an eager replay of the same body on the CPU."""
    from tests.test_batched import eager_capture
    from torch_impl.batched import GraphedBatchedSteps

    dm, splits = digits_splits(torch.float32)
    base = {"learning_rate": 0.2, "reg": 1e-3, "hidden_size": 10, "momentum": 0.5, "learning_rate_decay": 0.9,
            "max_epochs": 3}
    trials = [base, {**base, "learning_rate": 1e6, "momentum": 0.9}, {**base, "hidden_size": 30, "max_epochs": 2}]
    model = {"std": 1e-4, "init_seed": 0, "lr_schedule": "epoch"}
    eager = sweep_train.train_together(trials, splits, model, dm.batch_size, dm.seed)
    monkeypatch.setattr(GraphedBatchedSteps, "device_type", "cpu")
    monkeypatch.setattr(GraphedBatchedSteps, "_capture", eager_capture)
    graphed = sweep_train.train_together(trials, splits, model, dm.batch_size, dm.seed, graph=True)
    assert [o.state for o in graphed] == [o.state for o in eager] == ["complete", "diverged", "complete"]
    assert graphed[1].diverged_at_step == eager[1].diverged_at_step
    for g, e in zip(graphed, eager):
        assert g.val_accs == e.val_accs and g.epochs == e.epochs
        for k in PARAM_NAMES if e.params else ():
            assert torch.equal(g.params[k], e.params[k]), k  # the same ops in the same order


def read_trials_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_writes_outputs_and_continues_where_it_stopped(tmp_path, capsys):
    out = str(tmp_path / "logs")
    assert sweep.main([*TINY, "--n_trials", "6", "--nets_per_step", "4", "--output_dir", out]) == 0
    printed = capsys.readouterr().out
    study_dir = tmp_path / "logs" / "digits"
    for name in ("study.db", "trials.csv", "best.yaml", "sweep.png"):
        assert (study_dir / name).is_file(), name
    assert (study_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_trials_csv(study_dir / "trials.csv")
    assert [int(r["number"]) for r in rows] == list(range(6))
    best = max(float(r["val_acc"]) for r in rows if r["state"] == "COMPLETE")
    assert f"best val acc = {best:.4f}" in printed
    config = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert {"model", "data", "trainer", "seed_everything"} <= set(config)
    assert config["trainer"]["max_epochs"] == 2 and config["model"]["hidden_size"] in (10, 20)
    # run again: the budget is spent, nothing is added
    assert sweep.main([*TINY, "--n_trials", "6", "--output_dir", out]) == 0
    assert len(read_trials_csv(study_dir / "trials.csv")) == 6
    # a larger budget continues the same study
    assert sweep.main([*TINY, "--n_trials", "8", "--output_dir", out]) == 0
    assert [int(r["number"]) for r in read_trials_csv(study_dir / "trials.csv")] == list(range(8))


def test_a_trial_left_running_by_a_killed_sweep_is_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_study, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(sweep_study, "HEARTBEAT_GRACE_S", 1)
    out = tmp_path / "logs"
    cfg = sweep.parse_config([*TINY, "--output_dir", str(out)])
    (out / "digits").mkdir(parents=True)
    storage = sweep_study.make_storage(cfg, out / "digits")
    study = optuna.create_study(study_name="digits", storage=storage, direction="maximize")
    killed = study.ask()  # a sweep that asked, sampled, sent one heartbeat, and died
    params = sweep_study.suggest(killed, cfg.space)
    storage.record_heartbeat(killed._trial_id)
    time.sleep(2.5)
    assert sweep.main([*TINY, "--n_trials", "3", "--output_dir", str(out)]) == 0
    trials = optuna.load_study(study_name="digits", storage=sweep_study.make_storage(cfg, out / "digits")).trials
    states = [t.state.name for t in trials]
    assert states[0] == "FAIL" and states[1:].count("COMPLETE") == 3 and "RUNNING" not in states
    assert any(t.params == params and t.state.name == "COMPLETE" for t in trials[1:])  # the retry


def test_grid_sampler_runs_every_point_once_under_the_median_pruner(tmp_path):
    grid = ["--sampler", "grid", "--space.learning_rate", "[0.1, 0.2]", "--space.reg", "[0.0001, 0.001]",
            "--space.learning_rate_decay", "[0.95]", "--space.hidden_size", "[10]", "--space.momentum", "[0.0]",
            "--nets_per_step", "1", "--pruner", "median", "--pruner_warmup_epochs", "0"]
    out = str(tmp_path / "logs")
    assert sweep.main([*TINY, *grid, "--n_trials", "10", "--output_dir", out]) == 0
    rows = read_trials_csv(tmp_path / "logs" / "digits" / "trials.csv")
    points = sorted((float(r["learning_rate"]), float(r["reg"])) for r in rows)
    assert points == [(0.1, 0.0001), (0.1, 0.001), (0.2, 0.0001), (0.2, 0.001)]
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"} and rows[0]["state"] == "COMPLETE"
    assert all(r["epochs"] == ("2" if r["state"] == "COMPLETE" else "1") for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--space.learning_rate", "{low: 1.0, high: 0.1}"], "error: space.learning_rate: got low=1.0, high=0.1"),
    (["--sampler", "grid"], "error: space.learning_rate: got a range; the grid sampler needs a list"),
    (["--n_trials", "0"], "error: n_trials: got 0; expected an integer >= 1"),
    (["--space.hidden_size", "[0, 10]"], "error: space.hidden_size: got [0, 10]; expected every value an integer"),
    (["--space.learning_rate", "[-0.1]"], "error: space.learning_rate: got [-0.1]; expected every value > 0"),
    (["--space.learning_rate", "{low: -0.1, high: 0.1, log: false}"], "error: space.learning_rate: got low=-0.1, "
                                                                      "high=0.1; expected the whole range > 0"),
    (["--space.momentum", "[1.5]"], "error: space.momentum: got [1.5]; expected every value in [0, 1)"),
    (["--space.momentum", "{low: 0.5, high: 1.0}"], "error: space.momentum: got low=0.5, high=1.0; expected"),
    (["--space.reg", "[-0.001]"], "error: space.reg: got [-0.001]; expected every value >= 0"),
    (["--space.learning_rate_decay", "[0.0]"], "error: space.learning_rate_decay: got [0.0]; expected every value"),
    (["--trainer", "{precision: 16-mixed}"], "error: trainer.precision: got '16-mixed'; expected 32-true or"),
    (["--trainer", "{max_steps: 50}"], "error: trainer.max_steps: got 50; expected it unset"),
])
def test_bad_settings_end_with_one_error_line_before_any_trial_exists(tmp_path, capsys, args, message):
    assert sweep.main([*TINY, *args, "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "digits").exists()  # refused before the study (or its folder) was made


def run_sweep_process(cwd, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": ""}
    return subprocess.Popen([sys.executable, "-m", "train", "sweep", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_unknown_key_is_a_usage_error(tmp_path):
    proc = run_sweep_process(tmp_path, "--no_such_key", "1")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "error:" in err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal file"])
def test_two_processes_share_one_storage_without_losing_or_repeating_a_trial(tmp_path, kind):
    storage = f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" else str(tmp_path / "shared.journal")
    args = [*TINY, "--n_trials", "12", "--nets_per_step", "2", "--storage", storage, "--output_dir",
            str(tmp_path / "logs")]
    procs = [run_sweep_process(tmp_path, *args) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, f"{out}\n{err}"
    trials = optuna.load_study(study_name="digits", storage=sweep_study.make_storage(
        sweep.parse_config(["--storage", storage]), tmp_path)).trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # every trial once
    assert 12 <= len(trials) <= 13  # two asks racing for the last slot may add one (see train/sweep_study.py)
    assert {t.state.name for t in trials} <= {"COMPLETE", "FAIL"}  # none left running
    assert all(t.state.name == "COMPLETE" or "diverged_at_step" in t.user_attrs for t in trials)
    assert all(t.user_attrs["epochs"] == 2 for t in trials if t.state.name == "COMPLETE")
    workers = {t.user_attrs["worker"] for t in trials}
    print(f"trials per worker: {[sum(t.user_attrs['worker'] == w for t in trials) for w in workers]}")


@pytest.mark.slow
def test_fit_of_best_yaml_reproduces_the_sweeps_val_acc(tmp_path):
    out = tmp_path / "logs"
    proc = run_sweep_process(tmp_path, *TINY, "--n_trials", "4", "--nets_per_step", "4", "--output_dir", str(out))
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    reported = float(re.search(r"best val acc = ([0-9.]+)", stdout).group(1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fit = subprocess.run([sys.executable, "-m", "train", "fit", "--config", str(out / "digits" / "best.yaml"),
                          "--trainer.enable_progress_bar", "false"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=600)
    assert fit.returncode == 0, fit.stderr
    assert final_val_acc(fit.stdout) == pytest.approx(reported, abs=0.01)
