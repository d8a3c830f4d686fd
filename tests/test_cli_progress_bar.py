"""train/cli.py's progress-bar default: Lightning's own TQDM bar, counting SGD steps (StepProgressBar), redrawn
every PROGRESS_BAR_REFRESH_RATE batches (a redraw per batch costs a sixth of a CIFAR-sized CPU step); a bar given in
--trainer.callbacks is kept as given, and ``--trainer.enable_progress_bar false`` still means no bar.

Run: ``.venv/bin/python -m pytest tests/test_cli_progress_bar.py -q`` (the CLI is built with run=False: no fit).
"""
import pytest
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from train.callbacks import StepProgressBar
from train.cli import DEFAULT_CONFIG, PROGRESS_BAR_REFRESH_RATE, TwoLayerCLI
from train.data import ArrayDataModule
from train.module import TwoLayerNetModule

pytestmark = [pytest.mark.lightning,  # run=False CLIs built inside pytest, whose own argv LightningCLI notices:
              pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter is intended")]


def progress_bars(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    cli = TwoLayerCLI(TwoLayerNetModule, ArrayDataModule, subclass_mode_data=True, run=False,
                      args=["--config", str(DEFAULT_CONFIG), *args], auto_configure_optimizers=False)
    return [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]


def test_default_bar_redraws_every_n_batches(tmp_path, monkeypatch):
    bars = progress_bars(tmp_path, monkeypatch)
    assert PROGRESS_BAR_REFRESH_RATE > 1
    assert [(type(b), b.refresh_rate) for b in bars] == [(StepProgressBar, PROGRESS_BAR_REFRESH_RATE)]


@pytest.mark.parametrize("rate", [1, 3])
def test_a_configured_bar_is_kept(tmp_path, monkeypatch, rate):
    bars = progress_bars(tmp_path, monkeypatch, "--trainer.callbacks+=TQDMProgressBar",
                         "--trainer.callbacks.refresh_rate", str(rate))
    assert [(type(b), b.refresh_rate) for b in bars] == [(TQDMProgressBar, rate)]


def test_disabled_bar_stays_disabled(tmp_path, monkeypatch):
    assert progress_bars(tmp_path, monkeypatch, "--trainer.enable_progress_bar", "false") == []


def test_the_bar_counts_sgd_steps_when_a_training_step_runs_a_block(tmp_path):
    """Blobs: 5 SGD steps per epoch in blocks of 2 (3 training_steps): the bar ends each epoch at 5/5 steps."""
    import lightning as L

    from tests.blobs import BlobsDataModule

    class Seen(L.Callback):
        def __init__(self, bar):
            self.bar, self.seen = bar, []

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append((self.bar.train_progress_bar.n, self.bar.train_progress_bar.total,
                              self.bar.train_progress_bar.unit))

    bar = StepProgressBar(refresh_rate=1)
    seen = Seen(bar)
    model = TwoLayerNetModule(input_size=6, num_classes=3, hidden_size=4, steps_per_call=2)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                        callbacks=[bar, seen])
    trainer.fit(model, datamodule=BlobsDataModule())
    assert trainer.num_training_batches == 3 and seen.seen == [(5, 5, "step"), (5, 5, "step")]
