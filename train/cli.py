"""``python -m train fit|validate|test|predict``: LightningCLI over TwoLayerNetModule and the data modules.

Usage::

    python -m train fit                                   # = --config configs/digits.yaml (val acc >= 0.97)
    python -m train fit --config configs/spiral.yaml      # an explicit config starts from the class defaults
    python -m train fit --model.hidden_size 100 --data SpiralDataModule --data.batch_size 100
    python -m train fit --print_config > my.yaml          # the full config, runnable with --config my.yaml
    python -m train test --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt

When neither ``--config`` nor ``--data`` is given, configs/digits.yaml is used, so the bare command trains the
digits with tuned values; a ``--config`` or ``--data`` replaces it, and keys not given take the classes' defaults
(the model's are the cs231n CIFAR-10 values). Dotted overrides (``--data.batch_size 50``) keep the digits config.
The data module's input size and class count are linked into the model, so no config repeats them. Every run writes
checkpoints (last.ckpt and the best), a CSV log and the plots of train/callbacks.py into lightning_logs/version_N/.

Speed default: ``--model.steps_per_call 16`` runs 16 SGD steps per Lightning training_step (one step block; a
block never spans two epochs), so trainer.global_step and max_steps count SGD steps while log_every_n_steps,
val_check_interval and the progress bar count blocks; ``--model.steps_per_call 1`` gives one step per
training_step, every step through the autograd Function and the optimizer (train/module.py).

Reliability defaults (train/checkpoint_io.py, train/divergence.py):
- checkpoints are written atomically (AtomicCheckpointIO, unless --trainer.plugins names another CheckpointIO);
  last.ckpt (--step_checkpoint, a LastCheckpoint) is the newest state: rewritten every 100 steps, at every epoch
  end and at the end of fit, so a kill mid-epoch loses at most that many steps; ``save_last: link`` is refused
  (it deletes last.ckpt before relinking);
- ``--ckpt_path last`` means the newest last.ckpt (by modification time) under the logger's root
  (lightning_logs/version_*/checkpoints/) or in an explicit --checkpoint.dirpath / --step_checkpoint.dirpath; a
  resumed run logs to a new version_N and continues bit for bit (parameters, optimizer, lr schedule, counters,
  sampler position, RNG states);
- DivergenceGuard (--divergence.*) stops at the first NaN/Inf loss or gradient.
Errors end the run with ONE line on stderr, ``error: ...``: exit status 2 for bad input (a ValueError: arguments,
data, an unreadable checkpoint), 3 when training diverged or gradient verification failed. Unknown keys and bad
types are reported by LightningCLI's parser (usage and an ``error:`` line, exit status 2).
"""
import logging
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

import train.data  # noqa: F401  (registers DigitsDataModule, SpiralDataModule for --data SHORT_NAME)
from train.callbacks import PredictionsCSV, TrainingPlots
from train.checkpoint_io import AtomicCheckpointIO, LastCheckpoint, find_last_checkpoint
from train.data import ArrayDataModule
from train.divergence import DivergenceGuard, TrainingDiverged
from train.module import TwoLayerNetModule
from train.verification_callback import GradientVerificationError

try:  # the image data modules (CIFAR10DataModule, ImageFolderDataModule), when present
    import train.image_data  # noqa: F401
except ModuleNotFoundError as err:
    if err.name != "train.image_data":
        raise

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits.yaml"
# The default progress bar redraws every this many batches (and at each epoch's end) instead of Lightning's every
# batch: a redraw costs ~0.2 ms, a sixth of a CIFAR-sized step on 2 cores. A bar given in --trainer.callbacks is
# kept as it is (e.g. ``--trainer.callbacks+=TQDMProgressBar --trainer.callbacks.refresh_rate 1``).
PROGRESS_BAR_REFRESH_RATE = 10
SUBCOMMANDS = ("fit", "validate", "test", "predict")
FIT_STEPS_PER_CALL = 16  # the CLI's default --model.steps_per_call (the module's own default is 1)

# Known-harmless warnings on every run, silenced one by one (the data are device tensors, not DataLoaders).
QUIET_WARNINGS = [
    r".*does not have many workers which may be a bottleneck.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*Your `IterableDataset` has `__len__` defined.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The dirpath has changed from .* won't be reloaded.*",  # validate/test/predict log to a new version
    r"Couldn.t infer the batch indices fetched from your dataloader.*",  # PredictionsCSV does not need them
    r"LightningCLI's args parameter is intended to run from within Python.*",  # python -m train passes argv
    r".*AMP with fp16 is not supported on CPU.*",  # the CLI refuses 16-mixed there instead (instantiate_trainer)
    # the step checkpoint is meant to hold the state after opt.step(): that is what an exact resume continues from
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps.*",
]


class _DropAdvert(logging.Filter):
    """Drops Lightning's "try installing litlogger" tip, printed on every run."""

    def filter(self, record):
        return "litlogger" not in record.getMessage()


class TwoLayerCLI(LightningCLI):
    """LightningCLI with the data module's D and C linked into the model and the checkpoint/plot callbacks."""

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.input_size", "model.input_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.monitor": "val/acc",
                             "checkpoint.mode": "max", "checkpoint.filename": "best-{epoch}-{step}",
                             "checkpoint.enable_version_counter": False})
        # last.ckpt also within an epoch, so a kill mid-epoch resumes from at most N steps back; both callbacks
        # write the same last.ckpt (no version counter: a second writer would otherwise make last-v1.ckpt)
        parser.add_lightning_class_args(LastCheckpoint, "step_checkpoint")
        parser.set_defaults({"step_checkpoint.save_last": True, "step_checkpoint.save_top_k": 0,
                             "step_checkpoint.every_n_train_steps": 100,
                             "step_checkpoint.enable_version_counter": False})
        # K SGD steps per Lightning training_step, each run by torch_impl/fused_step.py, and
        # Lightning's ~0.7 ms of per-step hooks are paid once per block (benchmarks/README.md: 2.1x -> 1.2x floor)
        parser.set_defaults({"model.steps_per_call": FIT_STEPS_PER_CALL})
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(TrainingPlots, "plots")
        parser.add_lightning_class_args(PredictionsCSV, "predictions")
        parser.add_argument("--torch_num_threads", type=int | None, default=None,
                            help="torch.set_num_threads before training (1 suits tiny problems: the digits' GEMMs "
                                 "are too small to split, and extra threads only wait on each other)")

    def before_instantiate_classes(self):
        config = self.config[self.subcommand] if self.subcommand else self.config
        for key in ("checkpoint", "step_checkpoint"):
            if config.get(key) and config[key].get("save_last") == "link":
                raise ValueError(f"{key}.save_last: got 'link'; expected true or false (a link is made by deleting "
                                 "last.ckpt first, so a kill in between leaves no last checkpoint)")
        if config.get("torch_num_threads"):
            torch.set_num_threads(config["torch_num_threads"])

    def instantiate_trainer(self, **kwargs):
        """The Trainer, saving through AtomicCheckpointIO unless the config chose another CheckpointIO, with the
        default progress bar redrawn every PROGRESS_BAR_REFRESH_RATE batches."""
        trainer_config = (self.config_init[self.subcommand] if self.subcommand else self.config_init)["trainer"]
        configured = list(trainer_config.get("callbacks") or [])  # before the Trainer appends to that very list
        trainer = super().instantiate_trainer(**kwargs)
        asked = str(self.config_init[self.subcommand]["trainer"].get("precision") if self.subcommand else None)
        if asked in ("16-mixed", "16") and str(trainer.precision) != "16-mixed":
            device = trainer.strategy.root_device.type
            raise ValueError(f"trainer.precision: got {asked!r} on {device}, where Lightning "
                             f"has no float16 GradScaler and would train in {trainer.precision} instead; expected "
                             "bf16-mixed, 32-true or 64-true (--trainer.precision), or 16-mixed on a CUDA GPU")
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        bar = trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar and bar.refresh_rate == 1 and not any(c is bar for c in configured):
            # Lightning's own default bar (refresh_rate 1): the same bar, redrawn less often
            trainer.callbacks[trainer.callbacks.index(bar)] = TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE)
        return trainer

    def _resolve_ckpt_path(self):
        """``--ckpt_path last`` -> the newest last*.ckpt of earlier runs (see the module docstring), or None."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        config["ckpt_path"] = found = find_last_checkpoint(self.trainer)
        if self.trainer.is_global_zero:
            print(f"--ckpt_path last: {f'resuming from {found}' if found else 'no last.ckpt found, starting fresh'}",
                  file=sys.stderr)

    before_fit = before_validate = before_test = before_predict = _resolve_ckpt_path

    def after_fit(self):
        """The one line a person looks for: the final validation accuracy."""
        acc = self.trainer.callback_metrics.get("val/acc")
        logger = self.trainer.logger  # not trainer.log_dir: that is a collective call under DDP
        log_dir = logger.log_dir if logger is not None else self.trainer.default_root_dir
        if self.trainer.is_global_zero:
            if acc is None:
                print("final val/acc: none (no validation ran)")
            else:
                print(f"final val/acc = {float(acc):.4f} after {self.trainer.global_step} steps "
                      f"({self.trainer.current_epoch} epochs); logs in {log_dir}")


def one_line(err):
    """An exception's message on one line (``error: ...``), its own lines joined by '; '. A class's error that
    jsonargparse wrapped ("Does not validate against any of the Union subtypes ... - <the error>") is unwrapped."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Does not validate against any of the Union subtypes"):
        causes = [line[2:] for line in lines if line.startswith("- ") and "NoneType" not in line]
        lines = causes or lines
    return f"error: {'; '.join(lines) or type(err).__name__}"


def with_default_config(argv):
    """argv with ``--config configs/digits.yaml`` after the subcommand when neither --config nor --data is given
    (a --data choice starts from the class defaults, so digits' values never leak into another data set)."""
    chosen = lambda a: a in ("--config", "-c", "--data") or a.startswith(("--config=", "--data="))
    if argv and argv[0] in SUBCOMMANDS and DEFAULT_CONFIG.is_file() and not any(chosen(a) for a in argv):
        return [argv[0], "--config", str(DEFAULT_CONFIG), *argv[1:]]
    return list(argv)


def run_cli(argv: list[str]) -> int:
    """Run LightningCLI on argv (e.g. ["fit", "--config", "configs/spiral.yaml"]); returns the exit status:
    0, 2 (bad input: one ``error:`` line on stderr), 3 (diverged or gradient verification failed)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdvert())
    try:
        build_cli(argv)
    except (TrainingDiverged, GradientVerificationError) as err:
        print(one_line(err), file=sys.stderr)
        return TrainingDiverged.exit_code
    except (ValueError, FileNotFoundError) as err:  # bad arguments or data; a --ckpt_path that does not exist
        print(one_line(err), file=sys.stderr)
        return 2
    return 0


def build_cli(argv):
    """The TwoLayerCLI on argv; running its subcommand is part of construction (LightningCLI's run=True)."""
    return TwoLayerCLI(
        TwoLayerNetModule,
        ArrayDataModule,
        subclass_mode_data=True,
        args=with_default_config(argv),
        seed_everything_default=0,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": ".", "name": "lightning_logs"}},
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "python -m train"},
    )


if __name__ == "__main__":
    sys.exit(run_cli(sys.argv[1:]))
