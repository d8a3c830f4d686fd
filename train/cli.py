"""``python -m train fit|validate|test|predict``: LightningCLI over TwoLayerNetModule and the data modules.

Usage::

    python -m train fit                                   # = --config configs/digits.yaml (val acc >= 0.97)
    python -m train fit --config configs/spiral.yaml      # an explicit config starts from the class defaults
    python -m train fit --model.hidden_size 100 --data SpiralDataModule --data.batch_size 100
    python -m train fit --print_config > my.yaml          # the full config, runnable with --config my.yaml
    python -m train test --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt   # that run's settings
    python -m train test                                  # the newest run's last.ckpt (said on stderr)
    python -m train fit --help                            # model, data and the main Trainer options
    python -m train fit --trainer.help                    # every option, the Trainer's and the checkpoints' too

The rooms: this file is the TwoLayerCLI class and its entry points (run_cli, build_cli); train/cli_argv.py
completes argv with the settings a command runs with (configs/digits.yaml by default, a checkpoint's own run
settings); train/cli_help.py is the short --help.

The data module's input size and class count are linked into the model, so no config repeats them. fit writes
checkpoints (last.ckpt and the best), a CSV log, its config.yaml and the plots of train/callbacks.py into
lightning_logs/version_N/; validate and test print their accuracy (``val/acc = 0.9720 (CHECKPOINT)``, the digits
of fit's ``final val/acc``) and write nothing; predict writes predictions.csv into the checkpoint's run folder and
says where. validate/test/predict without ``--ckpt_path`` (or with ``last``) take the newest run's last.ckpt and
say so; with no run at all they stop with one error line, never evaluating an untrained net. test and predict
without a test split stop before any data is loaded. A file that is not a TwoLayerNetModule checkpoint, or one
whose W1/W2 shapes differ from the model the command builds, stops with one ``error:`` line; a run that fails
before writing anything but its config leaves no version folder behind.

Speed default: ``--model.steps_per_call 16`` runs 16 SGD steps per Lightning training_step (one step block; a
block never spans two epochs), so trainer.global_step, max_steps, log_every_n_steps, metrics.csv's step and the
progress bar (StepProgressBar) count SGD steps while val_check_interval counts blocks. fit names its step path in
one line at the start (``step path: fused, 16 SGD steps per training_step``; front door | fused | graph,
train/step_blocks.py); ``--model.steps_per_call 1`` gives one front-door step per training_step.

Reliability defaults (train/checkpoint_io.py, train/divergence.py):
- checkpoints are written atomically (AtomicCheckpointIO, unless --trainer.plugins names another CheckpointIO);
  last.ckpt (--step_checkpoint, a LastCheckpoint) is the newest state: rewritten every 100 steps, at every epoch
  end and at the end of fit; ``save_last: link`` is refused (it deletes last.ckpt before relinking);
- ``fit --ckpt_path last`` resumes the newest last.ckpt whose W1/W2 shapes are the model's, under the logger's
  root or in an explicit --checkpoint.dirpath / --step_checkpoint.dirpath, and says which (and which newer runs
  of another shape it passed over); a resumed run logs to a new version_N and continues bit for bit;
- DivergenceGuard (--divergence.*) stops at the first NaN/Inf loss or gradient.
Errors end the run with ONE line on stderr, ``error: ...``: exit status 2 for bad input (a ValueError: arguments,
data, an unreadable checkpoint), 3 when training diverged or gradient verification failed. Unknown keys and bad
types are reported by LightningCLI's parser (usage and an ``error:`` line, exit status 2).
"""
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO

import train.data  # noqa: F401  (registers DigitsDataModule, SpiralDataModule for --data SHORT_NAME)
import train.image_data  # noqa: F401  (registers CIFAR10DataModule, ImageFolderDataModule for --data)
from train.callbacks import PredictionsCSV, RunSettings, StepProgressBar, TrainingPlots
from train.checkpoint_io import AtomicCheckpointIO, LastCheckpoint
from train.cli_argv import DEFAULT_CONFIG, with_run_config
from train.cli_help import FULL_HELP_FLAG, ShortHelpParser
from train.config_checks import check_trainer, is_system_error, os_error_line
from train.data import ArrayDataModule
from train.divergence import DivergenceGuard, TrainingDiverged
from train.module import TwoLayerNetModule
from train.quiet import quiet_known_noise
from train.runs import (
    LOGS_ROOT,
    intact_or_fallback,
    last_checkpoints,
    param_shapes,
    read_checkpoint,
    run_config_of,
    shape_text,
)
from train.verification_callback import GradientVerificationError

# The default progress bar redraws every this many batches (and at each epoch's end) instead of Lightning's every
# batch: a redraw costs ~0.2 ms, a sixth of a CIFAR-sized step on 2 cores. A bar given in --trainer.callbacks is
# kept as it is (e.g. ``--trainer.callbacks+=TQDMProgressBar --trainer.callbacks.refresh_rate 1``).
PROGRESS_BAR_REFRESH_RATE = 10
FIT_STEPS_PER_CALL = 16  # the CLI's default --model.steps_per_call (the module's own default is 1)
RUN_FILES = {"config.yaml", "hparams.yaml"}  # what a run folder holds before its first metric or checkpoint


class TwoLayerCLI(LightningCLI):
    """LightningCLI with the data module's D and C linked into the model and the checkpoint/plot callbacks."""

    def __init__(self, *args, started=None, **kwargs):
        if started is not None:
            started.append(self)  # the caller can clean up after a failure inside the constructor
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.input_size", "model.input_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.groups["checkpoint"].title = "The best checkpoint (ModelCheckpoint, monitoring val/acc)"
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.monitor": "val/acc",
                             "checkpoint.mode": "max", "checkpoint.filename": "best-{epoch}-{step}",
                             "checkpoint.enable_version_counter": False})
        # last.ckpt also within an epoch, so a kill mid-epoch resumes from at most N steps back; both callbacks
        # write the same last.ckpt (no version counter: a second writer would otherwise make last-v1.ckpt)
        parser.add_lightning_class_args(LastCheckpoint, "step_checkpoint")
        parser.groups["step_checkpoint"].title = "last.ckpt, the run's newest state (LastCheckpoint)"
        parser.set_defaults({"step_checkpoint.save_last": True, "step_checkpoint.save_top_k": 0,
                             "step_checkpoint.every_n_train_steps": 100,
                             "step_checkpoint.enable_version_counter": False})
        # K SGD steps per Lightning training_step on the fused step path: Lightning's per-step hooks are paid once
        # per block (docs/performance.md: fit_fused against fit_front_door)
        parser.set_defaults({"model.steps_per_call": FIT_STEPS_PER_CALL})
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(TrainingPlots, "plots")
        parser.add_lightning_class_args(PredictionsCSV, "predictions")
        for key, title in [("trainer", "The Trainer (python -m train fit --trainer.help lists all its options)"),
                           ("model", "The model: TwoLayerNetModule (train/module.py)"),
                           ("data", "The data: a data module of train/data.py or train/image_data.py "
                                    "(--data.help NAME lists its options)"),
                           ("divergence", "Stop at the first NaN/Inf loss or gradient (DivergenceGuard)"),
                           ("plots", "Plots written at the end of fit (TrainingPlots)"),
                           ("predictions", "predict's output file (PredictionsCSV)")]:
            if key in parser.groups:
                parser.groups[key].title = title
        parser.add_argument("--torch_num_threads", type=int | None, default=None,
                            help="torch.set_num_threads before training (1 suits tiny problems: the digits' GEMMs "
                                 "are too small to split, and extra threads only wait on each other)")

    def before_instantiate_classes(self):
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_trainer(config.get("trainer") or {})  # the settings Lightning accepts and then fails on mid-run
        for key in ("checkpoint", "step_checkpoint"):
            if config.get(key) and config[key].get("save_last") == "link":
                raise ValueError(f"{key}.save_last: got 'link'; expected true or false (a link is made by deleting "
                                 "last.ckpt first, so a kill in between leaves no last checkpoint)")
        if config.get("torch_num_threads"):
            torch.set_num_threads(config["torch_num_threads"])
        if self.subcommand in ("test", "predict"):  # before any data is loaded (the CLI links D and C from it)
            missing = missing_split_of(config.get("data"), "test")
            if missing:
                raise ValueError(f"data: {missing}; {self.subcommand} needs a test split (use validate, or data "
                                 "with one)")

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
        if self.subcommand == "fit":
            trainer.callbacks.append(RunSettings(self.run_settings(trainer)))
        bar = trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar and bar.refresh_rate == 1 and not any(c is bar for c in configured):
            # Lightning's own default bar (refresh_rate 1): counting SGD steps, redrawn less often
            trainer.callbacks[trainer.callbacks.index(bar)] = StepProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE)
        return trainer

    def run_settings(self, trainer):
        """{"model": ..., "data": ..., "torch_num_threads": ..., "trainer": {"precision": ...}} of this run as plain
        values (the data-linked sizes left out): what changes the numbers of its checkpoints (cli_argv.py)."""
        config = self.config[self.subcommand]
        settings = {"torch_num_threads": config.get("torch_num_threads"),
                    "trainer": {"precision": str(trainer.precision)}}
        for key in ("model", "data"):
            value = config.get(key)
            value = value.as_dict() if hasattr(value, "as_dict") else value
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in ("input_size", "num_classes") or key == "data"}
            settings[key] = json.loads(json.dumps(value, default=str))
        return settings

    def _parse_ckpt_path(self):
        """Nothing: with_run_config has put the checkpoint's settings before the command line already.

        Private LightningCLI hook (2.3-2.6), called right after parsing: it would overwrite the parsed model
        settings with the checkpoint's hyperparameters, command line included, and torch.load any file (a raw
        traceback for an .npz). There is no public switch for it."""

    def _resolve_ckpt_path(self):
        """``--ckpt_path last`` (or validate/test/predict without one) -> the newest last.ckpt of a run with the
        model's shapes; any checkpoint is then refused in one line when its shapes are not the model's."""
        config = self.config_init[self.subcommand]
        ckpt = config.get("ckpt_path")
        shapes = param_shapes(self.model.state_dict())
        if ckpt == "last" or (ckpt is None and self.subcommand != "fit"):
            config["ckpt_path"] = ckpt = self._newest_of_shapes(shapes, asked=ckpt)
        if ckpt:
            found = param_shapes(read_checkpoint(ckpt)["state_dict"])
            if found != shapes:
                run_config = run_config_of(ckpt)
                advice = (f"pass its run's settings (--config {run_config}) or leave out the options that change "
                          "D, H or C") if run_config else ("no config.yaml of its run lies beside it: pass the "
                                                           f"--data it was trained on ({found['W1'][0]} features, "
                                                           f"{found['W2'][1]} classes)")
                raise ValueError(f"--ckpt_path: {ckpt} holds {shape_text(found)}, but this command builds "
                                 f"{shape_text(shapes)} (data: {type(self.datamodule).__name__}); {advice}")

    def _newest_of_shapes(self, shapes, asked):
        """The newest last*.ckpt (explicit checkpoint dirpaths, then the runs under the logger's root) holding
        ``shapes``; says on stderr which. None for fit when there is none at all; else ValueError."""
        folders = [cb.dirpath for cb in self.trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]
        logger = self.trainer.logger
        root = getattr(logger, "root_dir", None) if logger is not None else None
        if not root:
            folders.append(os.path.join(self.trainer.default_root_dir, "checkpoints"))
        candidates = last_checkpoints(root, folders)
        how = "--ckpt_path last" if asked == "last" else "no --ckpt_path given"
        say = (lambda text: print(text, file=sys.stderr)) if self.trainer.is_global_zero else (lambda text: None)
        if not candidates:
            if self.subcommand == "fit":
                say(f"{how}: no last.ckpt found, starting fresh")
                return None
            raise ValueError(f"--ckpt_path: {'missing' if asked is None else 'last'}, and no run under "
                             f"{root or LOGS_ROOT} has a last.ckpt; expected the checkpoint to "
                             f"{self.subcommand}, e.g. --ckpt_path {LOGS_ROOT}/version_0/checkpoints/last.ckpt "
                             "(python -m train fit writes one)")
        skipped = []
        for path in candidates:
            path = intact_or_fallback(path, say)  # a damaged last.ckpt: the newest intact checkpoint of its run
            if path is None:
                continue
            found = param_shapes(read_checkpoint(path)["state_dict"])
            if found == shapes:
                passed = f"; passed over newer runs of other shapes: {', '.join(skipped)}" if skipped else ""
                verb = "resuming from" if self.subcommand == "fit" else "using"
                say(f"{how}: {verb} {path} (the newest run of this model's shapes){passed}")
                return path
            skipped.append(f"{path} ({shape_text(found)})")
        newest = candidates[0]
        run_config = run_config_of(newest)
        again = f"python -m train {self.subcommand} --config {run_config} --ckpt_path last" if run_config else \
            f"--ckpt_path {newest} with that run's --model and --data settings"
        raise ValueError(f"{how}: no run has this model's shapes ({shape_text(shapes)}); the newest, {newest}, "
                         f"holds {shape_text(param_shapes(read_checkpoint(newest)['state_dict']))}: use it with "
                         f"{again}" + (", or leave out --ckpt_path to start fresh" if self.subcommand == "fit" else ""))

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

    def after_validate(self):
        self._print_metric("val/acc")

    def after_test(self):
        self._print_metric("test/acc")

    def _print_metric(self, name):
        """``val/acc = 0.6610 (CHECKPOINT)``: the line fit's ``final val/acc`` is compared with, same digits."""
        acc = self.trainer.callback_metrics.get(name)
        if acc is not None and self.trainer.is_global_zero:
            print(f"{name} = {float(acc):.4f} ({self.trainer.ckpt_path})")

    def after_predict(self):
        """Where predictions.csv went (PredictionsCSV)."""
        writer = next((cb for cb in self.trainer.callbacks if isinstance(cb, PredictionsCSV)), None)
        if writer is not None and writer.written and self.trainer.is_global_zero:
            print(f"predictions: {writer.written[1]} rows in {writer.written[0]}")



def missing_split_of(data_config, split):
    """Why the configured data module cannot serve ``split``, known before it loads anything (its class's
    ``missing_split``), or None. data_config: the parsed --data (class_path, init_args)."""
    class_path = data_config.get("class_path") if data_config is not None else None
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    init_args = data_config.get("init_args") or {}
    init_args = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args)
    return cls.missing_split(init_args, split) if hasattr(cls, "missing_split") else None


def one_line(err):
    """An exception's message on one line (``error: ...``), its own lines joined by '; '. A class's error that
    jsonargparse wrapped ("Does not validate against any of the Union subtypes ... - <the error>") is unwrapped."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Does not validate against any of the Union subtypes"):
        causes = [line[2:] for line in lines if line.startswith("- ") and "NoneType" not in line]
        lines = causes or lines
    return f"error: {'; '.join(lines) or type(err).__name__}"


def remove_run_folder_if_empty(trainer):
    """After a failed run: delete its version folder when it holds nothing but RUN_FILES (and empty folders)."""
    logger = trainer.logger if trainer is not None else None
    if logger is None or not trainer.is_global_zero or not getattr(logger, "log_dir", None):
        return
    folder = Path(logger.log_dir)
    if not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file()]
    if all(p.parent == folder and p.name in RUN_FILES for p in files):
        shutil.rmtree(folder, ignore_errors=True)


def run_cli(argv: list[str]) -> int:
    """Run LightningCLI on argv (e.g. ["fit", "--config", "configs/spiral.yaml"]); returns the exit status:
    0, 2 (bad input: one ``error:`` line on stderr), 3 (diverged or gradient verification failed)."""
    quiet_known_noise()
    started = []  # the TwoLayerCLI under construction (running its subcommand is part of construction)
    try:
        build_cli(argv, started)
    except (TrainingDiverged, GradientVerificationError) as err:
        cleanup_failed(started)
        print(one_line(err), file=sys.stderr)
        return TrainingDiverged.exit_code
    except (ValueError, FileNotFoundError, MisconfigurationException) as err:  # bad arguments, data or checkpoint
        cleanup_failed(started)
        print(one_line(err), file=sys.stderr)
        return 2
    except OSError as err:  # disk full, no permission, a read-only folder: said in one line, with the fix
        if not is_system_error(err):
            raise
        cleanup_failed(started)
        print(os_error_line(err), file=sys.stderr)
        return 2
    return 0


def cleanup_failed(started):
    for cli in started:
        remove_run_folder_if_empty(getattr(cli, "trainer", None))


def build_cli(argv, started=None):
    """The TwoLayerCLI on argv; running its subcommand is part of construction (LightningCLI's run=True).
    ``started`` (a list) receives the CLI object before it runs, so a failure can clean up after it."""
    args = with_run_config(argv)
    wants_help = any(a in ("-h", "--help") for a in args)
    ShortHelpParser.full_help = FULL_HELP_FLAG in argv
    config_given = any(a in ("--config", "-c", "--data") or a.startswith(("--config=", "-c=", "--data="))
                       for a in args)
    parser_kwargs = {"prog": "python -m train"}
    if wants_help and args[:1] == ["fit"] and not config_given and DEFAULT_CONFIG.is_file():
        # the defaults a bare fit uses are configs/digits.yaml's: show those in its --help
        parser_kwargs["fit"] = {"default_config_files": [str(DEFAULT_CONFIG)]}
    return TwoLayerCLI(
        TwoLayerNetModule,
        ArrayDataModule,
        subclass_mode_data=True,
        args=args,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        trainer_defaults={
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": ".", "name": LOGS_ROOT}},
        },
        save_config_callback=SaveConfigCallback if args[:1] == ["fit"] else None,  # the others write no run
        save_config_kwargs={"overwrite": True},
        parser_kwargs=parser_kwargs,
        parser_class=ShortHelpParser,
        started=started,
    )

