"""GradientVerification: logs verify/max_rel_err at the checked steps of a real TwoLayerNetModule run, and stops a
run whose manual gradient is sabotaged before the bad update is applied.

Run: .venv/bin/python -m pytest tests/test_verification_callback.py -q   (markers: verify, lightning)
"""
import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from torch_impl.neural_net import TwoLayerLoss
from train.cli import run_cli
from train.data import DigitsDataModule
from train.module import TwoLayerNetModule
from train.verification_callback import GradientVerification, GradientVerificationError

pytestmark = [pytest.mark.verify, pytest.mark.lightning]


def fit(tmp_path, callback, max_steps, steps_per_call=1):
    torch.manual_seed(0)
    model = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=20, std=0.1, reg=0.01, learning_rate=0.05,
                              steps_per_call=steps_per_call)
    trainer = L.Trainer(max_steps=max_steps, logger=CSVLogger(tmp_path), callbacks=[callback], accelerator="cpu",
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=50))
    return model, trainer


def sabotage_dW1(monkeypatch, factor=1.5):
    """TwoLayerLoss.backward (the hand-written formulas) returns factor * dW1."""
    real = TwoLayerLoss.backward

    def wrong(ctx, grad_loss):
        grads = list(real(ctx, grad_loss))  # None, None, dW1, db1, dW2, db2, None
        grads[2] = factor * grads[2]
        return tuple(grads)

    monkeypatch.setattr(TwoLayerLoss, "backward", staticmethod(wrong))


def test_logs_the_metric_at_the_checked_steps(tmp_path):
    callback = GradientVerification(every_n_steps=4, tolerance=1e-4)
    _, trainer = fit(tmp_path, callback, max_steps=10)
    assert [step for step, _ in callback.history] == [0, 4, 8]
    assert all(0 <= err < 1e-5 for _, err in callback.history)  # float32 manual vs float64 autograd
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        logged = [(int(r["step"]), float(r["verify/max_rel_err"])) for r in csv.DictReader(f)
                  if r.get("verify/max_rel_err")]
    assert [step for step, _ in logged] == [step for step, _ in callback.history]
    assert [err for _, err in logged] == pytest.approx([err for _, err in callback.history], rel=1e-6)


def test_with_step_blocks_checks_the_last_step_of_each_block_holding_a_multiple(tmp_path, monkeypatch):
    """Blocks of 3 (digits at batch 50: 26 batches per epoch): steps 0-2, 3-5, 6-8, 9-11; every 4th step is due,
    so the blocks holding 0, 4, 8 are checked at their last steps 2, 5, 8 — with real gradients (needs_grads makes
    those steps go through manual_backward), the sabotage below included."""
    callback = GradientVerification(every_n_steps=4, tolerance=1e-4)
    _, trainer = fit(tmp_path, callback, max_steps=12, steps_per_call=3)
    assert trainer.global_step == 12
    assert [step for step, _ in callback.history] == [2, 5, 8]
    assert all(0 <= err < 1e-5 for _, err in callback.history)
    sabotage_dW1(monkeypatch)
    with pytest.raises(GradientVerificationError, match="at step 2: the manual gradient of W1"):
        fit(tmp_path, GradientVerification(every_n_steps=4, tolerance=1e-4), max_steps=12, steps_per_call=3)


def test_stops_a_sabotaged_run_before_the_update(tmp_path, monkeypatch):
    sabotage_dW1(monkeypatch)
    callback = GradientVerification(every_n_steps=3, tolerance=1e-4)
    torch.manual_seed(0)
    initial_W1 = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=20, std=0.1).net.W1.detach().clone()
    model = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=20, std=0.1, reg=0.01, learning_rate=0.05)
    trainer = L.Trainer(max_steps=10, logger=CSVLogger(tmp_path), callbacks=[callback], accelerator="cpu",
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    with pytest.raises(GradientVerificationError, match=r"at step 0: the manual gradient of W1 .* 5\.00e-01"):
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=50))
    assert callback.history == [(0, pytest.approx(0.5, rel=1e-5))]
    torch.testing.assert_close(model.net.W1.detach(), initial_W1)  # the bad step was never applied


def test_autograd_mode_passes_even_when_manual_is_sabotaged(tmp_path, monkeypatch):
    """grad_mode=autograd does not use TwoLayerLoss, so the check sees autograd vs autograd."""
    sabotage_dW1(monkeypatch)
    callback = GradientVerification(every_n_steps=2)
    model = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=20, grad_mode="autograd")
    trainer = L.Trainer(max_steps=4, logger=False, callbacks=[callback], accelerator="cpu",
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=50))
    assert len(callback.history) == 2 and all(err < 1e-5 for _, err in callback.history)


def test_config_turns_it_on_and_a_sabotaged_cli_run_stops(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["fit", "--config", str(Path(__file__).resolve().parent.parent / "configs" / "digits_verify.yaml"),
            "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false", "--plots.enabled", "false"]
    assert run_cli(base) == 0
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "verify/max_rel_err" in rows.splitlines()[0]
    sabotage_dW1(monkeypatch)
    capsys.readouterr()
    assert run_cli(base) == 3  # the CLI turns GradientVerificationError into one line and exit 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: gradient verification failed at step 0"), err[-3:]


@pytest.mark.parametrize("kwargs,message", [({"every_n_steps": 0}, "every_n_steps must be a positive int"),
                                            ({"tolerance": 0.0}, "tolerance must be > 0")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradientVerification(**kwargs)
