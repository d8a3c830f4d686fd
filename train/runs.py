"""A checkpoint's run: which run folder it belongs to, the settings it was trained with, the newest run.

Every ``python -m train fit`` writes one run folder (the CSV logger's)::

    lightning_logs/version_N/config.yaml              the run's whole configuration (model, data, trainer)
    lightning_logs/version_N/checkpoints/last.ckpt    its newest state (plus the best one)

so a checkpoint ``.../version_N/checkpoints/*.ckpt`` finds its run's settings in ``.../version_N/config.yaml``; a
checkpoint copied elsewhere still holds its run's model and data settings (``run_settings``, written by the CLI's
RunSettings callback) and the model's hyperparameters (``hyper_parameters``, Lightning's save_hyperparameters).
train/cli.py uses these to test, validate, predict and export a checkpoint with the settings it was trained
with, and to resume ``--ckpt_path last`` from a run of the same shapes (newest_last_checkpoint, last_checkpoints).
"""
import glob
import os
import pickle
import zipfile
from pathlib import Path

import torch

from torch_impl.neural_net import PARAM_NAMES
from train.checkpoint_io import check_intact, damage, unreadable_message

LOGS_ROOT = "lightning_logs"  # the CLI's CSVLogger: save_dir ".", name "lightning_logs"
PARAM_KEYS = tuple(f"net.{name}" for name in PARAM_NAMES)  # TwoLayerNetModule's state_dict keys


def read_checkpoint(path, argument="--ckpt_path"):
    """The checkpoint dict at ``path`` (torch.load with weights_only: tensors and plain containers, never arbitrary
    objects). A missing file, or a file that is not a Lightning checkpoint of TwoLayerNetModule (e.g. an .npz),
    raises ValueError in one line naming ``argument``."""
    where = f"{argument}: {str(path)!r}"
    expected = "expected a Lightning checkpoint (.ckpt) of TwoLayerNetModule, e.g. " \
               f"{LOGS_ROOT}/version_0/checkpoints/last.ckpt"
    if not Path(path).is_file():
        raise ValueError(f"{where}: no such file; {expected}")
    if zipfile.is_zipfile(path):  # torch.save's archive: its CRC-32s checked before torch.load trusts a byte
        check_intact(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        if Path(path).suffix == ".ckpt" and "Unsupported global" not in str(err):  # a torn checkpoint: name the rest
            raise ValueError(unreadable_message(path, err)) from err
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line), "")
        raise ValueError(f"{where}: not a readable PyTorch checkpoint ({type(err).__name__}{': ' if detail else ''}"
                         f"{detail}); {expected}") from err
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{where}: has no 'state_dict'; {expected}")
    missing = [k for k in PARAM_KEYS if k not in state]
    if missing:
        raise ValueError(f"{where}: not a TwoLayerNetModule checkpoint: its state_dict lacks {missing} "
                         f"(it has {sorted(state)[:8]}); {expected}")
    return ckpt


def param_shapes(state_dict):
    """{'W1': (D, H), 'b1': (H,), 'W2': (H, C), 'b2': (C,)} of a TwoLayerNetModule state_dict."""
    return {key.removeprefix("net."): tuple(state_dict[key].shape) for key in PARAM_KEYS}


def shape_text(shapes):
    """'W1 (2, 100), W2 (100, 3)': the two shapes that fix D, H and C."""
    return f"W1 {shapes['W1']}, W2 {shapes['W2']}"


def run_dir_of(ckpt_path):
    """The run folder of a checkpoint: version_N for version_N/checkpoints/x.ckpt, else the checkpoint's folder."""
    folder = Path(ckpt_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def run_config_of(ckpt_path):
    """The config.yaml of the checkpoint's run (written by fit beside checkpoints/), or None."""
    config = run_dir_of(ckpt_path) / "config.yaml"
    return config if config.is_file() else None


def last_checkpoints(root=LOGS_ROOT, folders=()):
    """Every last*.ckpt of the runs under ``root`` (root/*/checkpoints/; None: none) and in ``folders``, newest
    (modification time) first, as absolute paths. A checkpoint's temporary file (.last.ckpt.*.tmp) is no match."""
    if root:
        folders = [*folders, *glob.glob(os.path.join(glob.escape(str(root)), "*", "checkpoints"))]
    found = {os.path.abspath(path) for folder in folders
             for path in glob.glob(os.path.join(glob.escape(str(folder)), "last*.ckpt"))}
    return sorted(found, key=os.path.getmtime, reverse=True)


def newest_last_checkpoint(root=LOGS_ROOT, folders=()):
    """The newest last*.ckpt of the runs under ``root`` and in ``folders`` (last_checkpoints), or None: what
    validate/test/predict/export take without a checkpoint, and ``--ckpt_path last``."""
    return next(iter(last_checkpoints(root, folders)), None)


def intact_or_fallback(path, say=lambda text: None):
    """``path`` when it is intact; for a damaged one, the newest intact checkpoint in its folder (the same run),
    said through ``say``; None when there is none."""
    why = damage(path)
    if why is None:
        return path
    folder = Path(path).parent
    others = sorted((p for p in folder.glob("*.ckpt") if p != Path(path) and damage(p) is None),
                    key=os.path.getmtime, reverse=True)
    if not others:
        say(f"{path} is damaged ({why}), and no intact checkpoint lies beside it: passed over")
        return None
    say(f"{path} is damaged ({why}): using the newest intact checkpoint of its run, {others[0]}, instead")
    return str(others[0])
