"""A student's first hour with ``python -m train`` and the library, each trap retried as a new user would:
a spiral checkpoint tested without --config, test without a checkpoint, an .npz given as a checkpoint, ``fit
--ckpt_path last`` after a run of another shape, predict's CSV, export of the newest run, ``fit --help`` and a
typo, matplotlib's backend and the CLI's warnings after importing the app, and the smaller pieces behind them.

Run: pytest tests/test_first_hour.py   (the CLI group runs run_cli in-process in one temporary folder; the import
test runs one subprocess)
"""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from train.callbacks import epoch_means
from train.cli import remove_run_folder_if_empty, run_cli
from train.data import SpiralDataModule
from train.divergence import divergence_hint, kept_checkpoint_text
from train.export_cmd import main as export_main

pytestmark = pytest.mark.lightning

ROOT = Path(__file__).resolve().parent.parent
SPIRAL = str(ROOT / "configs" / "spiral.yaml")
QUICK = ["--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "2", "--trainer.enable_progress_bar",
         "false", "--trainer.enable_model_summary", "false"]


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def help_of(lines, option):
    """The help text of ``option`` in argparse's help lines (on its own line or after the metavar)."""
    k = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " "))
    parts = lines[k].strip()[len(option):].split(None, 1)  # the metavar, then the help when it fits
    return parts[1].strip() if len(parts) > 1 else lines[k + 1].strip()


def version_folders(cwd):
    return sorted(p.name for p in (cwd / "lightning_logs").glob("version_*"))


@pytest.fixture(scope="module")
def spiral_run(tmp_path_factory):
    """One short spiral fit in its own folder: lightning_logs/version_0 with config.yaml and checkpoints/."""
    cwd = tmp_path_factory.mktemp("first_hour")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert run_cli(["fit", "--config", SPIRAL, *QUICK]) == 0
    finally:
        os.chdir(old)
    return cwd, cwd / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_a_spiral_checkpoint_is_tested_with_its_own_settings(spiral_run, monkeypatch, capsys):
    cwd, ckpt = spiral_run
    monkeypatch.chdir(cwd)
    assert run_cli(["test", "--ckpt_path", str(ckpt)]) == 0  # no --config: the run's config.yaml, not digits
    err = capsys.readouterr().err
    assert "version_0/config.yaml (the checkpoint's run)" in err, err
    assert not error_lines(err), err
    lone = cwd / "copied_away.ckpt"  # the checkpoint alone, without its run folder: the settings saved in it
    lone.write_bytes(ckpt.read_bytes())
    assert run_cli(["test", "--ckpt_path", str(lone)]) == 0
    err = capsys.readouterr().err
    assert f"the model and data settings saved in {lone}" in err and not error_lines(err), err
    # the command line still overrides the run's settings: a changed H no longer fits, in one line
    assert run_cli(["test", "--ckpt_path", str(ckpt), "--model.hidden_size", "7"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "holds W1 (2, 100)" in lines[0] and "W1 (2, 7)" in lines[0], lines


@pytest.mark.slow
def test_test_without_a_checkpoint_takes_the_newest_run_and_says_so(spiral_run, monkeypatch, capsys, tmp_path):
    cwd, ckpt = spiral_run
    monkeypatch.chdir(cwd)
    assert run_cli(["validate"]) == 0
    err = capsys.readouterr().err
    assert "no --ckpt_path given: using the newest run's lightning_logs/version_0/checkpoints/last.ckpt" in err, err
    monkeypatch.chdir(tmp_path)  # no run at all: one error line, never an untrained net
    assert run_cli(["test"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: --ckpt_path: missing"), lines
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow
def test_an_npz_given_as_a_checkpoint_is_one_error_line(spiral_run, monkeypatch, capsys):
    cwd, _ = spiral_run
    monkeypatch.chdir(cwd)
    torch.save({"W1": torch.zeros(2, 2)}, cwd / "weights.pt")  # a torch file, not a Lightning checkpoint
    (cwd / "net.npz").write_bytes(b"PK\x03\x04 not a torch zip")
    for name, needle in [("net.npz", "not a readable PyTorch checkpoint"), ("weights.pt", "has no 'state_dict'")]:
        for subcommand in ("test", "fit"):
            assert run_cli([subcommand, "--ckpt_path", name]) == 2
            lines = error_lines(capsys.readouterr().err)
            assert len(lines) == 1 and needle in lines[0] and "--ckpt_path" in lines[0], (subcommand, lines)


@pytest.mark.slow
def test_fit_ckpt_path_last_refuses_a_run_of_another_shape_in_one_line(spiral_run, monkeypatch, capsys):
    cwd, ckpt = spiral_run
    monkeypatch.chdir(cwd)
    before = version_folders(cwd)
    assert run_cli(["fit", "--ckpt_path", "last", "--trainer.max_epochs", "1"]) == 2  # digits: D = 64, C = 10
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert "no run has this model's shapes (W1 (64, 100), W2 (100, 10))" in lines[0], lines
    assert f"--config {ckpt.parent.parent / 'config.yaml'} --ckpt_path last" in lines[0], lines
    assert version_folders(cwd) == before  # the refused run left no folder


@pytest.mark.slow
def test_predictions_go_beside_the_checkpoint_with_the_true_label(spiral_run, monkeypatch, capsys):
    cwd, ckpt = spiral_run
    monkeypatch.chdir(cwd)
    before = version_folders(cwd)
    assert run_cli(["predict", "--ckpt_path", str(ckpt)]) == 0
    with open(ckpt.parent.parent / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and set(rows[0]) == {"index", "predicted_class", "true_class"}
    test_labels = SpiralDataModule(num_per_class=100, num_classes=3, noise=0.2, data_seed=0).splits.y_test
    assert [int(r["true_class"]) for r in rows] == test_labels.tolist()
    assert version_folders(cwd) == before  # predict logs nothing else
    assert f"predictions: 300 rows in {ckpt.parent.parent / 'predictions.csv'}" in capsys.readouterr().out
    assert not (cwd / "config.yaml").exists()  # no stray copy of the settings in the working folder


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_a_missing_test_split_stops_before_any_data_is_loaded(spiral_run, monkeypatch, capsys, tmp_path, subcommand):
    """An image tree without test/ (here without any images: loading would fail otherwise) is refused at once."""
    _, ckpt = spiral_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images" / "train").mkdir(parents=True)
    config = tmp_path / "images.yaml"
    config.write_text(f"data:\n  class_path: train.image_data.ImageFolderDataModule\n  init_args:\n"
                      f"    root: {tmp_path / 'images'}\n")
    assert run_cli([subcommand, "--config", str(config), "--ckpt_path", str(ckpt)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{tmp_path / 'images' / 'test'} does not exist" in lines[0], lines
    assert f"{subcommand} needs a test split" in lines[0], lines


@pytest.mark.slow
def test_validate_and_test_print_their_accuracy_and_leave_no_folder(spiral_run, monkeypatch, capsys):
    cwd, ckpt = spiral_run
    monkeypatch.chdir(cwd)
    before = version_folders(cwd)
    for subcommand, metric in [("validate", "val/acc"), ("test", "test/acc")]:
        assert run_cli([subcommand, "--ckpt_path", str(ckpt)]) == 0
        assert f"{metric} = " in capsys.readouterr().out
    assert version_folders(cwd) == before and not (cwd / "config.yaml").exists()


def test_the_settings_that_change_a_checkpoints_numbers_travel_with_it(tmp_path):
    """torch_num_threads and the precision come from the run's config.yaml, or from the checkpoint alone."""
    from train.cli_argv import checkpoint_settings_args, run_settings_args

    config = tmp_path / "config.yaml"
    config.write_text("torch_num_threads: 1\nmodel: {hidden_size: 7}\ndata: {class_path: x.Y}\n"
                      "trainer: {precision: 64-true, devices: 2}\n")
    args = run_settings_args(config)
    assert args[-4:] == ["--torch_num_threads", "1", "--trainer.precision", "64-true"]
    assert "--trainer.devices" not in args  # the command's own Trainer settings stay its own
    saved = {"model": {"hidden_size": 7}, "data": {"class_path": "x.Y"}, "torch_num_threads": 2,
             "trainer": {"precision": "32-true"}}
    args = checkpoint_settings_args({"run_settings": saved})
    assert args[-4:] == ["--torch_num_threads", "2", "--trainer.precision", "32-true"]
    saved["torch_num_threads"] = None  # not set in the run: left to the command
    assert "--torch_num_threads" not in checkpoint_settings_args({"run_settings": saved})


@pytest.mark.slow
def test_export_takes_the_newest_run(spiral_run, monkeypatch, capsys):
    cwd, _ = spiral_run
    monkeypatch.chdir(cwd)
    assert export_main(["--ckpt_path", "last", "--out", "net_last.npz"]) == 0
    import numpy as np

    with np.load(cwd / "net_last.npz") as params:
        assert params["W1"].shape == (2, 100) and params["W2"].shape == (100, 3)
    assert "exporting the newest run's lightning_logs/version_0/checkpoints/last.ckpt" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_help_is_short_documented_and_shows_the_bare_fit_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) <= 300, len(lines)
    assert "lacks type and help" not in text
    assert "--trainer.help" in text and "--trainer.gradient_clip_val" not in text  # the long list is behind it
    for option in ("hidden_size", "std", "reg", "learning_rate", "learning_rate_decay", "lr_schedule", "momentum",
                   "grad_mode", "init_seed", "cuda_graph", "steps_per_call"):
        assert not help_of(lines, f"--model.{option}").startswith("(type:"), option  # a docstring line, not bare
    flat = " ".join(text.split())  # argparse wraps the help at ~80 columns
    assert "H, hidden units. (type: int, default: 100)" in flat  # configs/digits.yaml's value, not the class's 50
    assert "SGD step size at the start. (type: float, default: 0.2)" in flat  # digits.yaml's, not 1e-4
    assert "(sum(W1 * W1) + sum(W2 * W2)). (type: float, default: 0.001)" in flat  # digits.yaml's reg, not 0.25
    headings = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert all(not h.endswith(",:") and not h.endswith(" the:") for h in headings), headings


@pytest.mark.slow
def test_every_data_option_has_help(capsys):
    for name, options in [("DigitsDataModule", ("batch_size", "seed", "num_val", "num_test", "split_seed")),
                          ("SpiralDataModule", ("num_per_class", "num_classes", "noise", "data_seed"))]:
        with pytest.raises(SystemExit):
            run_cli(["fit", "--data.help", name])
        lines = capsys.readouterr().out.splitlines()
        for option in options:
            assert not help_of(lines, f"--data.{option}").startswith("(type:"), (name, option)


@pytest.mark.slow
def test_a_typo_fails_with_a_short_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--model.hiden_size", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 4, err
    assert err[-1] == "error: unrecognized arguments: --model.hiden_size 5 (did you mean --model.hidden_size?)", err


@pytest.mark.slow
def test_importing_the_app_leaves_matplotlib_alone_and_quiets_the_cli_noise():
    script = """
import logging, warnings
import matplotlib
matplotlib.use("pdf")  # a notebook's inline backend stands for any backend chosen before the import
import train.callbacks, train.cli, train.module
from train.callbacks import TrainingPlots
import tempfile, os
plots = TrainingPlots()
plots.plot_accuracy(os.path.join(tempfile.mkdtemp(), "a.png"))
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
import matplotlib.pyplot as plt
assert plt.get_fignums() == [], plt.get_fignums()  # the plot's figure never joined pyplot's list
with warnings.catch_warnings(record=True) as shown:
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning)
    warnings.warn("The dataloader does not have many workers which may be a bottleneck.", UserWarning)
    warnings.warn("something else", UserWarning)
assert [str(w.message) for w in shown] == ["something else"], [str(w.message) for w in shown]
record = logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0, "try litlogger", None, None)
assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").filter(record)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": ""})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_divergence_hint_lowers_reg_when_the_l2_term_overshoots():
    # SGD multiplies W by (1 - 2 lr reg): at lr 3e-5, reg 5e4 that is -2 (|W| grows), so reg must come down
    hint = divergence_hint({"learning_rate": 3e-5, "reg": 5e4}, 3e-5)
    assert "lower --model.learning_rate (now 3e-05), or lower --model.reg (now 50000)" in hint, hint
    assert "1 - 2 lr reg = -2" in hint, hint
    assert "raise" not in hint
    plain = divergence_hint({"learning_rate": 10.0, "reg": 0.001}, 10.0)  # 2 lr reg = 0.02: the lr alone
    assert plain == "lower --model.learning_rate (now 10)", plain


def test_kept_checkpoint_is_claimed_only_when_one_exists(tmp_path):
    callback = SimpleNamespace(last_model_path="", best_model_path="")
    trainer = SimpleNamespace(checkpoint_callbacks=[callback], ckpt_path=None)
    assert kept_checkpoint_text(trainer) == "no checkpoint was written before it"
    (tmp_path / "last.ckpt").write_bytes(b"x")
    callback.last_model_path = str(tmp_path / "last.ckpt")
    assert kept_checkpoint_text(trainer) == f"the last good checkpoint {tmp_path / 'last.ckpt'} is kept"


def test_failed_run_folders_are_removed_only_when_empty(tmp_path):
    def trainer_logging_to(folder):
        return SimpleNamespace(logger=SimpleNamespace(log_dir=str(folder)), is_global_zero=True)

    empty, used = tmp_path / "version_0", tmp_path / "version_1"
    for folder in (empty, used):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "config.yaml").write_text("model: {}\n")
        (folder / "hparams.yaml").write_text("{}\n")
    (used / "metrics.csv").write_text("step,train/loss\n0,2.3\n")
    for folder in (empty, used):
        remove_run_folder_if_empty(trainer_logging_to(folder))
    assert not empty.exists() and (used / "metrics.csv").is_file()


def test_accuracy_history_is_averaged_per_group_of_epochs_when_long():
    few = [(e, e / 10) for e in range(5)]
    assert epoch_means(few) == ([0, 1, 2, 3, 4], [0.0, 0.1, 0.2, 0.3, 0.4], 1)
    many = [(e, float(e % 5 == 0)) for e in range(1500)]  # the spiral: one point per epoch for 1,500 epochs
    epochs, accs, per = epoch_means(many)
    assert per == 25 and len(epochs) == 60
    assert epochs[0] == 12.0 and all(math.isclose(a, 5 / 25) for a in accs)  # 5 ones in each 25 epochs


def test_the_spiral_has_its_own_test_split():
    splits = SpiralDataModule().splits
    assert splits.X_test.shape == splits.X_val.shape == (300, 2)
    assert not torch.equal(splits.X_test, splits.X_val) and not torch.equal(splits.X_test, splits.X_train)
    assert torch.equal(torch.bincount(splits.y_test), torch.tensor([100, 100, 100]))
