"""The argv completion of ``python -m train fit|validate|test|predict``: the settings a command runs with.

Usage (train/cli.py's build_cli calls it before LightningCLI parses)::

    with_run_config(["test", "--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt"])
    # -> ["test", "--model", "{...}", "--data", "{...}", "--torch_num_threads", "1", "--trainer.precision",
    #     "32-true", "--trainer.logger", "false", "--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt"]

What is added, always before the command line's own options (which therefore override it):

- validate/test/predict without --config and with no or a ``last`` --ckpt_path: the newest run's last.ckpt;
- an explicit checkpoint and no --config: its run's config.yaml (fit: all of it; validate/test/predict: its model
  and data, and the settings that change its numbers, RUN_NUMBER_SETTINGS: torch_num_threads and
  trainer.precision), or else the same settings saved in the checkpoint (RunSettings), or else its model
  hyperparameters, in place of configs/digits.yaml;
- otherwise configs/digits.yaml when neither --config nor --data is given (a --data choice starts from the class
  defaults, so digits' values never leak into another data set);
- validate/test/predict: no logger (their results are printed, and predict's predictions.csv goes into the
  checkpoint's run folder), so they leave no version folder behind.
"""
import json
import os
import sys
from pathlib import Path

import yaml

from train.cli_help import FULL_HELP_FLAG
from train.runs import newest_last_checkpoint, read_checkpoint, run_config_of

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
# besides the model and the data, what changes the numbers of a checkpoint's validate/test/predict: the threads
# (a PCA whitening refitted on two threads differs in the last bits) and the precision (the data's dtype)
RUN_NUMBER_SETTINGS = ("torch_num_threads", "trainer.precision")


def option_value(args, name):
    """The value of ``name`` in args (``name VALUE`` or ``name=VALUE``; the last one wins), or None."""
    value = None
    for k, arg in enumerate(args):
        if arg == name and k + 1 < len(args):
            value = args[k + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


def with_option(args, name, value):
    """args with every ``name`` option removed and ``name value`` appended."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return [*out, name, value]


def number_settings_args(settings):
    """``--torch_num_threads N --trainer.precision P`` from a run's settings ({"torch_num_threads": N, "trainer":
    {"precision": P}}, a config.yaml or RunSettings' record); those it lacks are left out."""
    args = []
    for dotted in RUN_NUMBER_SETTINGS:
        value = settings
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            args += [f"--{dotted}", str(value)]
    return args


def checkpoint_settings_args(ckpt):
    """``--model JSON [--data JSON] [--torch_num_threads N --trainer.precision P]`` from a checkpoint alone: the
    run settings RunSettings saved in it, else the model's saved hyperparameters (the data-linked sizes left
    out); [] when it has neither."""
    settings = ckpt.get("run_settings") or {}
    if settings.get("model") and settings.get("data"):
        return [arg for key in ("model", "data") for arg in (f"--{key}", json.dumps(settings[key]))] + \
            number_settings_args(settings)
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items()
               if not k.startswith("_") and k not in ("input_size", "num_classes")}
    return ["--model", json.dumps(hparams)] if hparams else []


def run_settings_args(run_config):
    """``--model JSON --data JSON`` and the RUN_NUMBER_SETTINGS from a run's config.yaml: what validate/test/predict
    take from the run (its other Trainer settings, such as devices or strategy, stay the command's own)."""
    with open(run_config) as f:
        config = yaml.safe_load(f) or {}
    return [arg for key in ("model", "data") if config.get(key) for arg in (f"--{key}", json.dumps(config[key]))] + \
        number_settings_args(config)


def default_config(data_given):
    """``--config configs/digits.yaml``, unless a --data choice was made (or the file is missing)."""
    return ["--config", str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() and not data_given else []


def given(args, *names):
    """Whether any of the options ``names`` is in args (``--name VALUE`` or ``--name=VALUE``)."""
    return any(a in names or a.startswith(tuple(f"{n}=" for n in names)) for a in args)


def with_run_config(argv):
    """argv completed with the settings it runs with (the module docstring says which). A file that is not a
    TwoLayerNetModule checkpoint raises ValueError (one line)."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return list(argv)
    subcommand, args = argv[0], list(argv[1:])
    if any(a in ("-h", "--help", FULL_HELP_FLAG) for a in args):
        return [subcommand, *[a for a in args if a != FULL_HELP_FLAG], *(["--help"] if FULL_HELP_FLAG in args else [])]
    config_given, data_given = given(args, "--config", "-c"), given(args, "--data")
    ckpt = option_value(args, "--ckpt_path")
    if subcommand != "fit" and not config_given and ckpt in (None, "last"):
        newest = newest_last_checkpoint()
        if newest is not None:  # else the CLI searches the configured logger's root, or stops
            how = "--ckpt_path last" if ckpt == "last" else "no --ckpt_path given"
            print(f"{how}: using the newest run's {os.path.relpath(newest)}", file=sys.stderr)
            args, ckpt = with_option(args, "--ckpt_path", newest), newest
    prefix = default_config(data_given) if not config_given else []
    if ckpt not in (None, "last") and not config_given:
        prefix = checkpoint_run_args(subcommand, ckpt, data_given)
    elif ckpt not in (None, "last"):
        read_checkpoint(ckpt)  # a file that is not a checkpoint: one line, before anything loads
    if subcommand != "fit" and option_value(args, "--trainer.logger") is None:
        prefix += ["--trainer.logger", "false"]
    return [subcommand, *prefix, *args]


def checkpoint_run_args(subcommand, ckpt, data_given):
    """The settings of checkpoint ``ckpt``'s run, as options placed before the command line's (said on stderr)."""
    checkpoint = read_checkpoint(ckpt)
    run_config = run_config_of(ckpt)
    if run_config is not None:
        what = "the settings" if subcommand == "fit" else "the model, data, thread and precision settings"
        print(f"{subcommand}: {what} of {os.path.relpath(run_config)} (the checkpoint's run); options on "
              "the command line override them", file=sys.stderr)
        return ["--config", str(run_config)] if subcommand == "fit" else run_settings_args(run_config)
    from_checkpoint = checkpoint_settings_args(checkpoint)
    data_saved = "--data" in from_checkpoint
    if data_saved:
        print(f"{subcommand}: the model and data settings saved in {ckpt} (no config.yaml of its run beside "
              "it); options on the command line override them", file=sys.stderr)
    return [*default_config(data_given or data_saved), *from_checkpoint]
