"""``python -m train export``: a Lightning checkpoint's weights as an .npz in the NumPy reference's params layout.

Usage::

    python -m train export --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --out net.npz

and then, in NumPy only::

    from reference_numpy.neural_net import TwoLayerNet
    net = TwoLayerNet(1, 1, 1).load_params("net.npz")   # the sizes come from the file
    net.predict(X)                                       # X: (N, D), preprocessed as in training

The file holds float64 arrays W1 (D, H), b1 (H,), W2 (H, C), b2 (C,): TwoLayerNetModule keeps the net as
``self.net`` in the reference's layout, so the checkpoint's ``state_dict`` keys net.W1 ... net.b2 are copied as
they are. No Trainer and no data are needed. The checkpoint is read with ``torch.load(weights_only=True)``, which
unpickles tensors and plain containers only, never arbitrary objects.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from torch_impl.neural_net import PARAM_NAMES
from train.atomic import atomic_write
from train.runs import LOGS_ROOT, PARAM_KEYS, newest_last_checkpoint, read_checkpoint


def read_checkpoint_params(ckpt_path):
    """{'W1': (D, H), 'b1': (H,), 'W2': (H, C), 'b2': (C,)} float64 arrays from a TwoLayerNetModule checkpoint;
    ``ckpt_path`` "last" means the newest last.ckpt of the runs under ./lightning_logs."""
    if ckpt_path is None or str(ckpt_path) == "":
        raise ValueError("--ckpt_path: missing; expected the checkpoint to export, e.g. "
                         f"--ckpt_path {LOGS_ROOT}/version_0/checkpoints/last.ckpt, or last")
    if str(ckpt_path) == "last":
        ckpt_path = newest_last_checkpoint()
        if ckpt_path is None:
            raise ValueError(f"--ckpt_path last: no run under ./{LOGS_ROOT} has a last.ckpt; expected a checkpoint "
                             "file, or run python -m train fit first")
        print(f"--ckpt_path last: exporting the newest run's {os.path.relpath(ckpt_path)}", file=sys.stderr)
    where = f"--ckpt_path: {str(ckpt_path)!r}"
    state = read_checkpoint(ckpt_path)["state_dict"]
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
    """Write the parameters of ``ckpt_path`` to the .npz ``out`` and return them; ValueError on bad input."""
    out = check_out(out)  # before the (slow) load
    params = read_checkpoint_params(ckpt_path)
    # a file object: given a name, np.savez would append ".npz" to it; an interrupted export leaves no half file
    atomic_write(out, lambda f: np.savez(f, **params))
    return params


def main(argv: list[str]) -> int:
    """``python -m train export --ckpt_path CKPT --out net.npz``; returns 0, or 2 with a message on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m train export",
        description="Write a TwoLayerNetModule checkpoint's W1, b1, W2, b2 (float64, the NumPy reference's params "
                    "layout) to an .npz that reference_numpy.neural_net.TwoLayerNet.load_params reads.")
    parser.add_argument("--ckpt_path", help="the Lightning checkpoint, e.g. lightning_logs/version_0/checkpoints/"
                                            "last.ckpt, or last: the newest run's last.ckpt")
    parser.add_argument("--out", help="the .npz file to write, e.g. net.npz")
    args = parser.parse_args(argv)
    try:
        params = export_checkpoint(args.ckpt_path, args.out)
    except ValueError as e:
        print(f"python -m train export: error: {e}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{name} {tuple(p.shape)}" for name, p in params.items())
    print(f"wrote {args.out}: {shapes} (float64) from {args.ckpt_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
