"""Bad input at the ``python -m train`` level: each case exits non-zero with ONE ``error:`` line naming the argument
(exit status 2), no traceback; a diverging run (learning rate 1e3) exits 3 with one line and keeps a loadable
last.ckpt.

Run: pytest tests/test_bad_inputs_cli.py   (the table runs run_cli in-process; two cases run a real subprocess)
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.cli import run_cli
from train.data import DigitsDataModule
from train.module import TwoLayerNetModule

pytestmark = pytest.mark.lightning

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "configs" / "smoke.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": ""}

# (arguments after "fit --config smoke.yaml" or after "fit", the text the one error line must contain)
BAD_INPUTS = [
    (["--config", SMOKE, "--model.hidden_size", "0"], "hidden_size: got 0"),
    (["--config", SMOKE, "--model.hidden_size=-3"], "hidden_size: got -3"),
    (["--config", SMOKE, "--data.batch_size", "0"], "batch_size: got 0"),
    (["--config", SMOKE, "--model.learning_rate", "-1"], "learning_rate: got -1"),
    (["--config", SMOKE, "--model.learning_rate", "0"], "learning_rate: got 0"),
    (["--config", SMOKE, "--model.reg", "-0.1"], "reg: got -0.1"),
    (["--config", SMOKE, "--model.momentum", "1.0"], "momentum: got 1.0"),
    (["--config", SMOKE, "--model.learning_rate_decay", "1.5"], "learning_rate_decay: got 1.5"),
    (["--data", "ImageFolderDataModule", "--data.root", "/nonexistent/images"], "root"),
    (["--data", "CIFAR10DataModule", "--data.root", "/nonexistent/cifar"], "root='/nonexistent/cifar'"),
    (["--config", SMOKE, "--checkpoint.save_last", "link"], "checkpoint.save_last: got 'link'"),
    (["--config", SMOKE, "--trainer.precision", "16-mixed"], "trainer.precision: got '16-mixed'"),
    (["--config", SMOKE, "--ckpt_path", "/nonexistent/last.ckpt"], "/nonexistent/last.ckpt"),
    (["--config", SMOKE, "--trainer.max_epochs", "-5"], "trainer.max_epochs: got -5"),
    (["--config", SMOKE, "--trainer.max_steps", "-5"], "trainer.max_steps: got -5"),
    (["--config", SMOKE, "--trainer.val_check_interval", "0"], "trainer.val_check_interval: got 0"),
    (["--config", SMOKE, "--trainer.check_val_every_n_epoch", "0"], "trainer.check_val_every_n_epoch: got 0"),
    (["--config", SMOKE, "--trainer.devices", "0"], "Trainer(devices='0')"),
    (["--config", SMOKE, "--trainer.accelerator", "gpu"], "gpu"),
    (["--config", SMOKE, "--step_checkpoint.every_n_train_steps", "-3"], "every_n_train_steps=-3"),
    (["--config", SMOKE, "--data.batch_size", "100000000"], "training examples, and one batch would take"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUTS, ids=[" ".join(a[2:] if a[0] == "--config" else a)
                                                          for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_naming_the_argument(args, needle, tmp_path, monkeypatch, capsys):
    if ("16-mixed" in args or "gpu" in args) and torch.cuda.is_available():
        pytest.skip("16-mixed and the gpu accelerator work where CUDA is available")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["fit", *args]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], err[-2000:]
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a refused run left a version folder"
    assert "Traceback" not in err


def test_unknown_config_key_is_refused_by_the_parser(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", SMOKE, "--model.hiden_size", "10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--model.hiden_size" in err


class BrokenDigits(DigitsDataModule):
    """The digits with one defect: "nan" (a NaN feature in train), "label" (a val label 10 of 10 classes),
    "width" (val with one feature less)."""

    def __init__(self, defect: str = "nan", batch_size: int = 200):
        super().__init__(batch_size=batch_size)
        self.defect = defect

    def load(self):
        s = super().load()
        if self.defect == "nan":
            s.X_train[3, 5] = float("nan")
        elif self.defect == "label":
            s.y_val[7] = 10
        else:
            s.X_val = s.X_val[:, :-1]
        return s


@pytest.mark.parametrize("defect,needle", [
    ("nan", "train X: got shape (1297, 64) torch.float64 on cpu with 1 NaN"),
    ("label", "val y: got labels in [0, 10]; expected labels in [0, 10)"),
    ("width", "val X"),
])
def test_bad_data_is_named_by_split_before_training(defect, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["fit", "--data", "tests.test_bad_inputs_cli.BrokenDigits", "--data.defect", defect]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors


def run_train(cwd, *args):
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, capture_output=True, text=True, env=ENV,
                          timeout=600)


@pytest.mark.slow
def test_bad_input_in_a_subprocess_prints_one_line_and_no_traceback(tmp_path):
    proc = run_train(tmp_path, "fit", "--config", SMOKE, "--model.hidden_size", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: hidden_size: got 0; expected a positive int (>= 1)"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call", ["1", "2"])
def test_learning_rate_1e3_stops_with_one_line_and_keeps_a_loadable_checkpoint(tmp_path, steps_per_call):
    """Digits at lr 1e3: the loss overflows within the first epoch; last.ckpt every 2 steps holds finite weights
    (with 2-step blocks, whose first step is fused_sgd_step, the checkpoints fall on the block ends)."""
    proc = run_train(tmp_path, "fit", "--model.learning_rate", "1e3", "--step_checkpoint.every_n_train_steps", "2",
                     "--model.steps_per_call", steps_per_call,
                     "--plots.enabled", "false", "--trainer.enable_progress_bar", "false")
    assert proc.returncode == 3, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = errors[0]
    for needle in ("training diverged at step", "loss", "learning rate 1000", "lower --model.learning_rate"):
        assert needle in line, line
    step = int(line.split("at step ")[1].split()[0])
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    model = TwoLayerNetModule.load_from_checkpoint(ckpt, map_location="cpu")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert 0 < saved["global_step"] <= step
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), f"{name} in the kept checkpoint is not finite"
