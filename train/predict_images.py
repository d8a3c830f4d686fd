"""``python -m train predict --ckpt_path CKPT --images DIR``: a trained net's class for every picture file in DIR.

Usage::

    python -m train predict --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --images photos/
    python -m train predict --ckpt_path CKPT --images /tmp/cifar10-jpeg/train --split val   # fit's val images

Every image file under DIR (sub-folders included, hidden ones skipped; torchvision's image extensions), in sorted
order, goes through the preprocessing the checkpoint's data module saved (train/export_cmd.py; the same as
``python -m train export`` writes) and the torch net (torch_impl/images.py). ``--split val`` takes only the
validation images of an ImageFolder run, named in the checkpoint relative to its train/ folder (DIR may be that
folder or the tree's root). ``--ckpt_path`` may also be an .npz from ``python -m train export``.

predictions.csv has one row per file: file (relative to DIR), predicted_class, probability (the softmax of the
predicted class) and, when every file lies in a folder named after a class (an ImageFolder tree), true_class; the
accuracy is then printed as well. It goes into the checkpoint's run folder (as the other predict's), or --out.
No Trainer and no data module are built. Bad input gets one ``error:`` line and exit 2.
"""
import argparse
import csv
import os
import sys
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from reference_numpy.neural_net import preprocessing_of
from torch_impl.images import image_probabilities
from torch_impl.neural_net import TwoLayerNet
from train.export_cmd import checkpoint_params, checkpoint_preprocessing, resolve_ckpt_path
from train.runs import read_checkpoint, run_dir_of

CHUNK = 2048  # images decoded and predicted at a time


def load_net(ckpt_path):
    """(torch TwoLayerNet float64 with .preprocessing, the checkpoint's path) from a checkpoint or an exported .npz."""
    if str(ckpt_path).endswith(".npz"):
        try:
            return TwoLayerNet.from_npz(ckpt_path), ckpt_path
        except (ValueError, OSError) as err:
            raise ValueError(f"--ckpt_path: {err}") from None
    ckpt_path = resolve_ckpt_path(ckpt_path, verb="predicting with")
    ckpt = read_checkpoint(ckpt_path)
    net = TwoLayerNet.from_numpy(checkpoint_params(ckpt, ckpt_path))
    net.preprocessing = preprocessing_of(checkpoint_preprocessing(ckpt, ckpt_path))
    if "mean_image" not in net.preprocessing:
        raise ValueError(f"--ckpt_path: {str(ckpt_path)!r} was not trained on images (no preprocessing saved in "
                         "it or rebuildable from its data settings); expected a checkpoint of the digits, CIFAR-10 "
                         "or an ImageFolder tree")
    return net, ckpt_path


def image_files(folder, split, preprocessing):
    """(the folder the names are relative to, sorted relative names): every image file under ``folder``, or the
    validation files of the checkpoint's ImageFolder run for split 'val'."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--images: {str(folder)!r} is not a folder; expected a folder of image files")
    if split == "val":
        names = preprocessing.get("val_files")
        if not names:
            raise ValueError("--split val: the checkpoint names no validation files (only an ImageFolder run's "
                             "checkpoint does); leave out --split to predict every image under --images")
        if not (root / names[0]).is_file() and (root / "train" / names[0]).is_file():
            root = root / "train"  # the tree's root was given
        missing = [name for name in names if not (root / name).is_file()]
        if missing:
            raise ValueError(f"--images: {len(missing)} of the {len(names)} validation files are not under "
                             f"{str(root)!r} (e.g. {missing[0]}); expected the train/ folder the run was fit on")
        return root, list(names)
    names = sorted(str(path.relative_to(root)) for path in root.rglob("*")
                   if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS
                   and not any(part.startswith(".") for part in path.relative_to(root).parts))
    if not names:
        raise ValueError(f"--images: {str(folder)!r} holds no image files ({', '.join(IMG_EXTENSIONS)}); "
                         "expected a folder of pictures")
    return root, names


def predict_folder(net, root, names):
    """(predicted class indices (N,), probability of each (N,)) for the files ``names`` under ``root``."""
    classes, probabilities = [], []
    for i in range(0, len(names), CHUNK):
        _, probs = image_probabilities(net, [str(root / name) for name in names[i:i + CHUNK]])  # (n, C)
        p, c = probs.max(dim=1)
        classes.append(c)
        probabilities.append(p)
    return torch.cat(classes), torch.cat(probabilities)


def write_csv(path, names, predicted, probability, class_names):
    """predictions.csv, written atomically; returns the true class index of each file (by its folder), or None."""
    folders = [Path(name).parent.name for name in names]
    truth = [class_names.index(f) for f in folders] if all(f in class_names for f in folders) else None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "predicted_class", "probability", *(["true_class"] if truth else [])])
            for k, name in enumerate(names):
                row = [name, class_names[predicted[k]], f"{float(probability[k]):.6f}"]
                writer.writerow(row + ([class_names[truth[k]]] if truth else []))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return truth


def main(argv: list[str]) -> int:
    """``python -m train predict --ckpt_path CKPT --images DIR [--split val] [--out FILE]``; 0, or 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m train predict --images",
        description="Predict the class of every image file under a folder with a trained net (checkpoint or "
                    "exported .npz), through the preprocessing it was trained with; writes predictions.csv.")
    parser.add_argument("--ckpt_path", default="last", help="the checkpoint (or last: the newest run's last.ckpt), "
                                                            "or an .npz from python -m train export")
    parser.add_argument("--images", required=True, help="the folder of image files (searched recursively)")
    parser.add_argument("--split", choices=["all", "val"], default="all",
                        help="val: only the validation images of the checkpoint's ImageFolder run")
    parser.add_argument("--out", help="the CSV to write (default: predictions.csv in the checkpoint's run folder)")
    args = parser.parse_args(argv)
    try:
        net, ckpt_path = load_net(args.ckpt_path)
        root, names = image_files(args.images, args.split, net.preprocessing)
        out = Path(args.out) if args.out else run_dir_of(ckpt_path) / "predictions.csv"
        if out.is_dir() or not out.parent.is_dir():
            raise ValueError(f"--out: {str(out)!r} is a folder or its folder does not exist; expected a file path")
        predicted, probability = predict_folder(net, root, names)
        class_names = net.preprocessing.get("class_names") or [str(c) for c in range(net.W2.shape[1])]
        truth = write_csv(out, names, predicted.tolist(), probability, class_names)
    except ValueError as err:
        print(f"python -m train predict: error: {err}", file=sys.stderr)
        return 2
    summary = f"{len(names)} images"
    if truth is not None:
        accuracy = (predicted == torch.tensor(truth)).double().mean().item()
        summary += f", accuracy {accuracy:.4f} against their class folders"
    print(f"wrote {out} ({summary}) from {ckpt_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
