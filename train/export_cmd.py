"""``python -m train export``: a Lightning checkpoint's weights as an .npz in the NumPy reference's params layout,
with the preprocessing that turns pictures into the net's input.

Usage::

    python -m train export --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --out net.npz

and then, in NumPy only::

    from reference_numpy.images import predict_images
    from reference_numpy.neural_net import TwoLayerNet
    net = TwoLayerNet.from_npz("net.npz")        # the sizes come from the file
    net.predict(X)                               # X: (N, D), preprocessed as in training
    predict_images(net, ["cat.jpg", pixels])     # image files or (H, W, 3) uint8 pixels -> class names

The file holds float64 arrays W1 (D, H), b1 (H,), W2 (H, C), b2 (C,): TwoLayerNetModule keeps the net as
``self.net`` in the reference's layout, so the checkpoint's ``state_dict`` keys net.W1 ... net.b2 are copied as
they are. For image data (the digits, CIFAR-10, an ImageFolder tree) it also holds the data module's
preprocessing (reference_numpy/images.py: image_shape, channels, pixel_max, mean_image, whitening when
whitened, class_names, and an ImageFolder run's val_files), taken from the checkpoint, where the data module's
state_dict saved it; a checkpoint written before data modules saved it gets it rebuilt from its run's data
settings (the data must then be readable). The checkpoint is read with ``torch.load(weights_only=True)``, which
unpickles tensors and plain containers only, never arbitrary objects.
"""
import argparse
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from torch_impl.neural_net import PARAM_NAMES
from train.atomic import atomic_write
from train.runs import LOGS_ROOT, PARAM_KEYS, newest_last_checkpoint, read_checkpoint, run_config_of


def resolve_ckpt_path(ckpt_path, verb="exporting"):
    """``ckpt_path``, or for "last" the newest last.ckpt of the runs under ./lightning_logs; ValueError when none."""
    if ckpt_path is None or str(ckpt_path) == "":
        raise ValueError("--ckpt_path: missing; expected the checkpoint to export, e.g. "
                         f"--ckpt_path {LOGS_ROOT}/version_0/checkpoints/last.ckpt, or last")
    if str(ckpt_path) == "last":
        ckpt_path = newest_last_checkpoint()
        if ckpt_path is None:
            raise ValueError(f"--ckpt_path last: no run under ./{LOGS_ROOT} has a last.ckpt; expected a checkpoint "
                             "file, or run python -m train fit first")
        print(f"--ckpt_path last: {verb} the newest run's {os.path.relpath(ckpt_path)}", file=sys.stderr)
    return ckpt_path


def checkpoint_params(ckpt, ckpt_path):
    """{'W1': (D, H), 'b1': (H,), 'W2': (H, C), 'b2': (C,)} float64 arrays from a TwoLayerNetModule checkpoint dict
    ``ckpt`` read from ``ckpt_path``."""
    where = f"--ckpt_path: {str(ckpt_path)!r}"
    state = ckpt["state_dict"]
    params = {}
    for name, key in zip(PARAM_NAMES, PARAM_KEYS):
        t = state[key]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{where}: state_dict[{key!r}] is {type(t).__name__}, expected a float tensor")
        params[name] = t.detach().to("cpu", torch.float64).numpy()
    W1, b1, W2, b2 = (params[name].shape for name in PARAM_NAMES)
    if len(W1) != 2 or len(W2) != 2 or b1 != W1[1:] or W2[0] != W1[1] or b2 != W2[1:]:
        shapes = {name: p.shape for name, p in params.items()}
        raise ValueError(f"{where}: inconsistent shapes {shapes}; expected W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)")
    return params


def read_checkpoint_params(ckpt_path):
    """checkpoint_params of the checkpoint file ``ckpt_path`` ("last": the newest run's last.ckpt)."""
    ckpt_path = resolve_ckpt_path(ckpt_path)
    return checkpoint_params(read_checkpoint(ckpt_path), ckpt_path)


def checkpoint_preprocessing(ckpt, ckpt_path):
    """The data module's preprocessing (ArraySplits.preprocessing) as .npz arrays, from the checkpoint, else rebuilt
    from the data settings of its run; {} when the data are not images or no settings are known."""
    pre = next((v["preprocessing"] for v in ckpt.values() if isinstance(v, dict) and "preprocessing" in v), None)
    if pre is None:
        data = run_data_settings(ckpt, ckpt_path)
        if not data or "class_path" not in data:
            return {}
        print(f"{ckpt_path}: no preprocessing saved in it; rebuilding it from its data settings "
              f"({data['class_path']})", file=sys.stderr)
        module, name = data["class_path"].rsplit(".", 1)
        try:
            dm = getattr(importlib.import_module(module), name)(**(data.get("init_args") or {}))
            pre = dm.splits.preprocessing
        except (ValueError, ImportError, AttributeError, TypeError, OSError) as err:
            print(f"{ckpt_path}: cannot rebuild the preprocessing ({err}); writing the weights only",
                  file=sys.stderr)
        if pre is None:
            return {}
    return {key: np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value) for key, value in pre.items()}


def run_data_settings(ckpt, ckpt_path):
    """The data settings ({class_path, init_args}) of the checkpoint's run config.yaml, else those saved in it."""
    config = run_config_of(ckpt_path)
    if config is not None:
        with open(config) as f:
            return (yaml.safe_load(f) or {}).get("data")
    return (ckpt.get("run_settings") or {}).get("data")


def check_out(out):
    """``out`` as a Path, or a ValueError naming --out when it is missing or cannot be written."""
    if out is None or str(out) == "":
        raise ValueError("--out: missing; expected the .npz file to write, e.g. --out net.npz")
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"--out: {str(out)!r} is a directory or its folder does not exist; expected a file path "
                         "in an existing folder, e.g. --out net.npz")
    return out


def export_checkpoint(ckpt_path, out):
    """Write the parameters and preprocessing of ``ckpt_path`` to the .npz ``out``; returns the arrays written
    (W1, b1, W2, b2, then the preprocessing's). ValueError on bad input."""
    out = check_out(out)  # before the (slow) load
    ckpt_path = resolve_ckpt_path(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    params = checkpoint_params(ckpt, ckpt_path)
    pre = checkpoint_preprocessing(ckpt, ckpt_path)
    # a file object: given a name, np.savez would append ".npz" to it; an interrupted export leaves no half file
    atomic_write(out, lambda f: np.savez(f, **params, **pre))
    return {**params, **pre}


def describe_preprocessing(pre):
    """'preprocessing: mean_image (3072,), whitening (3072, 256), 10 class names, 1000 val_files' or 'weights
    only'."""
    if not pre:
        return "weights only (the data are not images)"
    parts = [f"{key} {tuple(pre[key].shape)}" for key in ("mean_image", "whitening") if key in pre]
    parts += [f"{len(pre[key])} {key}" for key in ("class_names", "val_files") if key in pre]
    return "preprocessing: " + ", ".join(parts)


def main(argv: list[str]) -> int:
    """``python -m train export --ckpt_path CKPT --out net.npz``; returns 0, or 2 with a message on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m train export",
        description="Write a TwoLayerNetModule checkpoint's W1, b1, W2, b2 (float64, the NumPy reference's params "
                    "layout) and, for image data, its preprocessing (mean image, whitening, image size, class "
                    "names) to an .npz that reference_numpy.neural_net.TwoLayerNet.from_npz reads and "
                    "reference_numpy.images.predict_images applies to pictures.")
    parser.add_argument("--ckpt_path", help="the Lightning checkpoint, e.g. lightning_logs/version_0/checkpoints/"
                                            "last.ckpt, or last: the newest run's last.ckpt")
    parser.add_argument("--out", help="the .npz file to write, e.g. net.npz")
    args = parser.parse_args(argv)
    try:
        arrays = export_checkpoint(args.ckpt_path, args.out)
    except ValueError as e:
        print(f"python -m train export: error: {e}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{name} {tuple(arrays[name].shape)}" for name in PARAM_NAMES)
    pre = {key: value for key, value in arrays.items() if key not in PARAM_NAMES}
    print(f"wrote {args.out}: {shapes} (float64) from {args.ckpt_path}; {describe_preprocessing(pre)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
