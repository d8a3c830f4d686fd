"""``python -m train`` end to end, as a user runs it (subprocesses in a temporary folder): fit on digits and the
spiral, then validate/test/predict from the checkpoint, --print_config round trips, the plots are valid PNGs.

Run: pytest tests/test_cli.py   (all marked slow: every subprocess pays Lightning's import, 5-15 s)
"""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

pytestmark = [pytest.mark.lightning, pytest.mark.slow]  # each subprocess imports Lightning (5-15 s)

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_train(cwd, *args, check=True):
    """python -m train ARGS in cwd; returns the CompletedProcess (text)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": ""}
    proc = subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)
    if check:
        assert proc.returncode == 0, f"python -m train {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, f"{path}: shape {image.shape}"


def final_val_acc(stdout):
    match = re.search(r"final val/acc = ([0-9.]+)", stdout)
    assert match, f"no final val/acc line in:\n{stdout[-2000:]}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def smoke_fit(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("smoke")
    proc = run_train(cwd, "fit", "--config", SMOKE)
    return cwd, cwd / "lightning_logs" / "version_0", proc


def test_fit_writes_checkpoints_logs_and_plots(smoke_fit):
    cwd, run_dir, proc = smoke_fit
    assert final_val_acc(proc.stdout) > 0.5  # 21 steps already learn the digits
    for name in ("loss_history.png", "accuracy.png", "weights.png"):
        assert_png(run_dir / name)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    # the CLI's default step blocks: one 7-step block per epoch, so one train/loss row per epoch; the step column
    # counts SGD steps (the index of each block's last step), as global_step does, not training_steps
    assert [int(r["step"]) for r in rows if r["train/loss"]] == [6, 13, 20] and any(r["val/acc"] for r in rows)
    assert "global_step': 21" in proc.stdout or "after 21 steps" in proc.stdout, proc.stdout[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr


def test_validate_test_predict_from_the_checkpoint(smoke_fit):
    cwd, run_dir, proc = smoke_fit
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    fit_acc = final_val_acc(proc.stdout)
    # no --config: the model's hyperparameters (hidden_size 32) come from the checkpoint
    out = run_train(cwd, "validate", "--ckpt_path", ckpt).stdout
    assert f"val/acc = {fit_acc:.4f} " in out, out[-2000:]  # fit's number, to its last printed digit
    out = run_train(cwd, "test", "--config", SMOKE, "--ckpt_path", ckpt).stdout
    assert 0.5 < float(re.search(r"test/acc\s+([0-9.]+)", out).group(1)) <= 1.0
    proc = run_train(cwd, "predict", "--config", SMOKE, "--ckpt_path", ckpt)
    written = sorted((cwd / "lightning_logs").glob("version_*/predictions.csv"))
    assert len(written) == 1, proc.stdout + proc.stderr
    assert f"predictions: 250 rows in {written[0]}" in proc.stdout, proc.stdout[-2000:]
    # validate, test and predict leave nothing behind: no version folder, no config.yaml in the working folder
    assert sorted(p.name for p in (cwd / "lightning_logs").iterdir()) == ["version_0"]
    assert sorted(p.name for p in cwd.iterdir()) == ["lightning_logs"]
    with open(written[0]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 250 and {int(r["predicted_class"]) for r in rows} <= set(range(10))


def test_print_config_round_trips(tmp_path):
    first = run_train(tmp_path, "fit", "--config", SMOKE, "--model.hidden_size", "12", "--print_config").stdout
    (tmp_path / "printed.yaml").write_text(first)
    second = run_train(tmp_path, "fit", "--config", str(tmp_path / "printed.yaml"), "--print_config").stdout
    assert first == second
    assert "hidden_size: 12" in first and "input_size" not in first  # linked from the data, never repeated


def test_data_short_name_and_spiral_fit(tmp_path):
    proc = run_train(tmp_path, "fit", "--config", str(ROOT / "configs" / "spiral.yaml"),
                     "--data", "SpiralDataModule", "--trainer.max_epochs", "20",
                     "--trainer.check_val_every_n_epoch", "10", "--trainer.enable_progress_bar", "false")
    assert 0.0 < final_val_acc(proc.stdout) <= 1.0
    run_dir = tmp_path / "lightning_logs" / "version_0"
    for name in ("loss_history.png", "accuracy.png", "weights.png"):  # weights.png: the decision regions
        assert_png(run_dir / name)


def test_default_config_applies_only_without_config_or_data(tmp_path):
    bare = run_train(tmp_path, "fit", "--data.batch_size", "50", "--print_config").stdout
    assert "DigitsDataModule" in bare and "hidden_size: 100" in bare and "batch_size: 50" in bare
    other = run_train(tmp_path, "fit", "--data", "SpiralDataModule", "--print_config").stdout
    assert "SpiralDataModule" in other and "hidden_size: 50" in other and "num_val" not in other


def test_bad_data_name_fails_with_a_message(tmp_path):
    proc = run_train(tmp_path, "fit", "--data", "NoSuchDataModule", "--print_config", check=False)
    assert proc.returncode != 0 and "NoSuchDataModule" in proc.stderr


def test_default_fit_reaches_097_on_digits_quietly(tmp_path):
    proc = run_train(tmp_path, "fit")
    assert final_val_acc(proc.stdout) >= 0.97
    assert "Warning" not in proc.stderr, proc.stderr
    run_dir = tmp_path / "lightning_logs" / "version_0"
    for name in ("loss_history.png", "accuracy.png", "weights.png"):
        assert_png(run_dir / name)


def test_test_and_export_refuse_a_damaged_checkpoint_in_one_line(smoke_fit, tmp_path, monkeypatch, capsys):
    """A block of W1's bytes zeroed inside last.ckpt: test, validate and export each end with one error: line naming
    the file, exit status 2, and export writes nothing."""
    import shutil

    from tests.test_checkpoint_io import damage_largest_member
    from train.cli import run_cli
    from train.export_cmd import main as export_main

    cwd, run_dir, _ = smoke_fit
    ckpt = tmp_path / "last.ckpt"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", ckpt)
    damage_largest_member(ckpt, 0, size=1024)
    monkeypatch.chdir(tmp_path)
    for command in (lambda: run_cli(["test", "--ckpt_path", str(ckpt), "--config", SMOKE]),
                    lambda: run_cli(["validate", "--ckpt_path", str(ckpt), "--config", SMOKE]),
                    lambda: export_main(["--ckpt_path", str(ckpt), "--out", str(tmp_path / "net.npz")])):
        assert command() == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(err) == 1 and "last.ckpt" in err[0] and "CRC-32" in err[0], err
    assert not (tmp_path / "net.npz").exists()
