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
"""
import logging
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

import train.data  # noqa: F401  (registers DigitsDataModule, SpiralDataModule for --data SHORT_NAME)
from torch_impl.lightning_module import TwoLayerNetModule
from train.callbacks import PredictionsCSV, TrainingPlots
from train.data import ArrayDataModule

try:  # the image data modules (CIFAR10DataModule, ImageFolderDataModule), when present
    import train.image_data  # noqa: F401
except ModuleNotFoundError as err:
    if err.name != "train.image_data":
        raise

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")

# Known-harmless warnings on every run, silenced one by one (the data are device tensors, not DataLoaders).
QUIET_WARNINGS = [
    r".*does not have many workers which may be a bottleneck.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*Your `IterableDataset` has `__len__` defined.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The dirpath has changed from .* won't be reloaded.*",  # validate/test/predict log to a new version
    r"Couldn.t infer the batch indices fetched from your dataloader.*",  # PredictionsCSV does not need them
    r"LightningCLI's args parameter is intended to run from within Python.*",  # python -m train passes argv
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
                             "checkpoint.mode": "max", "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(TrainingPlots, "plots")
        parser.add_lightning_class_args(PredictionsCSV, "predictions")
        parser.add_argument("--torch_num_threads", type=int | None, default=None,
                            help="torch.set_num_threads before training (1 suits tiny problems: the digits' GEMMs "
                                 "are too small to split, and extra threads only wait on each other)")

    def before_instantiate_classes(self):
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("torch_num_threads"):
            torch.set_num_threads(config["torch_num_threads"])

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


def with_default_config(argv):
    """argv with ``--config configs/digits.yaml`` after the subcommand when neither --config nor --data is given
    (a --data choice starts from the class defaults, so digits' values never leak into another data set)."""
    chosen = lambda a: a in ("--config", "-c", "--data") or a.startswith(("--config=", "--data="))
    if argv and argv[0] in SUBCOMMANDS and DEFAULT_CONFIG.is_file() and not any(chosen(a) for a in argv):
        return [argv[0], "--config", str(DEFAULT_CONFIG), *argv[1:]]
    return list(argv)


def run_cli(argv: list[str]) -> int:
    """Run LightningCLI on argv (e.g. ["fit", "--config", "configs/spiral.yaml"]); returns the exit status."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdvert())
    TwoLayerCLI(
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
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(sys.argv[1:]))
