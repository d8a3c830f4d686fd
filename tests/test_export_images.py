"""A net you can use on pictures: ``python -m train export`` stores the preprocessing beside the weights,
reference_numpy/images.py and torch_impl/images.py predict on image files and pixel arrays with it, and
``python -m train predict --images DIR`` writes predictions.csv.

The fits run in-process on the digits and on a generated JPEG tree (marked slow); the rest uses small synthetic
nets. Run: python -m pytest tests/test_export_images.py -q
"""
import contextlib
import csv
import io
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from reference_numpy import images as np_images
from reference_numpy.neural_net import TwoLayerNet as NumpyNet
from torch_impl import images as torch_images
from torch_impl.neural_net import TwoLayerNet as TorchNet
from train.__main__ import main as train_main
from train.cli import run_cli
from train.data import DigitsDataModule
from train.image_data import ImageFolderDataModule

pytestmark = pytest.mark.lightning

QUIET = ["--trainer.enable_progress_bar", "false", "--plots.enabled", "false", "--trainer.enable_model_summary",
         "false"]
CLASSES = ["blue", "green", "red"]


def in_folder(cwd, args):
    """run_cli(args) with cwd as the working directory; returns its exit status."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return run_cli(args)
    finally:
        os.chdir(old)


def final_val_acc(text):
    return float(re.search(r"final val/acc = ([0-9.]+)", text).group(1))


def write_jpeg_tree(root, per_class=30, seed=0):
    """root/train/<blue|green|red>/NN.jpg: 8x8 noisy images whose mean colour gives the class (learnable but not
    trivially: heavy noise), plus a 10x12 JPEG per class (resized) and a grey JPEG (grey -> RGB)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            base = np.full((8, 8, 3), 90.0)
            base[:, :, 2 - c] += 40
            pixels = np.clip(base + rng.normal(0, 60, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:02d}.jpg", quality=90)
        Image.fromarray(rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)).save(folder / "big.jpg")
        Image.fromarray(rng.integers(0, 256, size=(8, 8), dtype=np.uint8), "L").save(folder / "grey.jpg")


def synthetic_npz(path, image_shape=(3, 4, 4), channels="RGB", pixel_max=255.0, k=None, seed=0):
    """A random net with preprocessing, as export writes it; returns the arrays."""
    rng = np.random.default_rng(seed)
    D = int(np.prod(image_shape))
    arrays = {"W1": rng.normal(size=(k or D, 6)), "b1": rng.normal(size=6), "W2": rng.normal(size=(6, 3)),
              "b2": rng.normal(size=3), "image_shape": np.array(image_shape), "channels": np.array(channels),
              "pixel_max": np.array(pixel_max), "mean_image": rng.uniform(0, pixel_max, D).astype(np.float32),
              "class_names": np.array(CLASSES)}
    if k:
        arrays["whitening"] = rng.normal(size=(D, k)).astype(np.float32) / 100
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------- the digits: raw load_digits() images


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("digits")
    assert in_folder(cwd, ["fit", "--trainer.max_epochs", "10", *QUIET]) == 0
    return cwd, cwd / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_digits_net_on_raw_load_digits_images_gives_its_test_accuracy(digits_run, capsys):
    cwd, ckpt = digits_run
    capsys.readouterr()
    assert in_folder(cwd, ["test", "--ckpt_path", str(ckpt), *QUIET]) == 0
    test_acc = float(re.search(r"test/acc\s+([0-9.]+)", capsys.readouterr().out).group(1))
    assert train_main(["export", "--ckpt_path", str(ckpt), "--out", str(cwd / "net.npz")]) == 0
    assert "mean_image (64,)" in capsys.readouterr().out
    digits = load_digits()
    test_rows = np.random.default_rng(0).permutation(1797)[1297 + 250:]  # DigitsDataModule's split (seed 0)
    names = np_images.predict_images(cwd / "net.npz", digits.images[test_rows])  # raw 8x8, 0..16
    accuracy = np.mean([int(name) == label for name, label in zip(names, digits.target[test_rows])])
    assert abs(accuracy - test_acc) < 1e-6, (accuracy, test_acc)  # the Trainer's float32 metric
    net = NumpyNet.from_npz(cwd / "net.npz")
    preprocessed = DigitsDataModule().splits.X_test.numpy()  # (250, 64) the test split as fit's data gives it
    assert [int(name) for name in names] == net.predict(preprocessed).tolist()
    assert torch_images.predict_images(cwd / "net.npz", digits.images[test_rows]) == names
    assert np.mean(net.predict(digits.data[test_rows]) == digits.target[test_rows]) < accuracy  # raw, unprocessed


# ---------------------------------------------------------------- an ImageFolder tree of JPEG files


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("jpeg")
    write_jpeg_tree(cwd / "tree")
    data = ["--data", "train.image_data.ImageFolderDataModule", "--data.root", str(cwd / "tree"),
            "--data.image_size", "8", "--data.num_val", "30", "--data.batch_size", "32",
            "--data.whiten_components", "24", "--data.flip", "true", "--data.shift", "1"]
    model = ["--model.hidden_size", "30", "--model.std", "0.1", "--model.learning_rate", "0.05",
             "--model.reg", "0.001"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert in_folder(cwd, ["fit", *data, *model, "--trainer.max_epochs", "8", *QUIET]) == 0
    return cwd, cwd / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", final_val_acc(out.getvalue())


@pytest.mark.slow
def test_imagefolder_net_predicts_its_own_val_jpegs_with_the_accuracy_fit_reported(jpeg_run, capsys):
    cwd, ckpt, val_acc = jpeg_run
    assert train_main(["export", "--ckpt_path", str(ckpt), "--out", str(cwd / "net.npz")]) == 0
    assert "whitening (192, 24), 3 class_names, 30 val_files" in capsys.readouterr().out
    net = NumpyNet.from_npz(cwd / "net.npz")
    pre = net.preprocessing
    assert (pre["image_shape"], pre["channels"], pre["class_names"]) == ((3, 8, 8), "RGB", CLASSES)
    files = [cwd / "tree" / "train" / name for name in pre["val_files"]]
    names = np_images.predict_images(net, files)
    accuracy = np.mean([name == path.parent.name for name, path in zip(names, files)])
    assert abs(accuracy - val_acc) < 1e-4, (accuracy, val_acc)  # fit prints 4 decimals; 30 files: k / 30 exactly
    assert torch_images.predict_images(cwd / "net.npz", [str(f) for f in files]) == names
    # the features themselves: PIL's decode (prediction) is the data module's decode (training)
    dm = ImageFolderDataModule(str(cwd / "tree"), image_size=8, num_val=30, whiten_components=24, flip=True,
                               shift=1)
    np.testing.assert_allclose(np_images.images_to_features(files, pre), dm.splits.X_val.numpy(), rtol=0,
                               atol=1e-4)
    # the command: predictions.csv of the val split, with the same accuracy
    out = cwd / "val_predictions.csv"
    assert train_main(["predict", "--ckpt_path", str(ckpt), "--images", str(cwd / "tree"), "--split", "val",
                       "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out} (30 images, accuracy {accuracy:.4f} against their class folders)" in said, said
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [row["predicted_class"] for row in rows] == names
    assert [row["file"] for row in rows] == pre["val_files"]
    assert all(0 < float(row["probability"]) <= 1 for row in rows)
    assert [row["true_class"] for row in rows] == [f.parent.name for f in files]


@pytest.mark.slow
def test_predict_images_folder_and_its_errors(jpeg_run, tmp_path, capsys):
    cwd, ckpt, _ = jpeg_run
    assert train_main(["predict", "--ckpt_path", str(ckpt), "--images", str(cwd / "tree" / "train" / "red")]) == 0
    written = ckpt.parent.parent / "predictions.csv"  # the checkpoint's run folder
    assert f"wrote {written} (32 images)" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "damaged.ckpt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    for args, message in [
        (["--ckpt_path", str(ckpt), "--images", str(tmp_path / "nowhere")], "--images: "),
        (["--ckpt_path", str(ckpt), "--images", str(tmp_path / "empty")], "holds no image files"),
        (["--ckpt_path", str(ckpt), "--images", str(tmp_path / "broken")], "cannot decode image file"),
        (["--ckpt_path", str(tmp_path / "damaged.ckpt"), "--images", str(cwd / "tree")], "damaged.ckpt' is unreadable"),
        (["--ckpt_path", str(ckpt), "--images", str(tmp_path / "empty"), "--split", "val"], "validation files"),
    ]:
        assert train_main(["predict", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("python -m train predict: error: ") and message in err[0], err


# ---------------------------------------------------------------- the functions, on synthetic nets


def test_every_image_form_gives_the_same_features_in_numpy_and_torch(tmp_path):
    synthetic_npz(tmp_path / "net.npz", k=5)
    net = NumpyNet.from_npz(tmp_path / "net.npz")
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    for i, img in enumerate(batch):
        Image.fromarray(img).save(tmp_path / f"{i}.png")  # lossless
    files = [str(tmp_path / f"{i}.png") for i in range(3)]
    X = np_images.images_to_features(batch, net.preprocessing)  # (3, 5)
    for form in (files, list(batch), [batch[0], files[1], batch[2]], torch.from_numpy(batch)):
        np.testing.assert_array_equal(np_images.images_to_features(form, net.preprocessing), X)
        torch.testing.assert_close(torch_images.images_to_features(form, net.preprocessing), torch.from_numpy(X),
                                   rtol=1e-6, atol=1e-6)
    one = np_images.images_to_features(batch[0], net.preprocessing)
    np.testing.assert_allclose(one, X[:1], rtol=1e-6, atol=1e-5)  # one (H, W, 3) image (a float32 GEMM of 1 row)
    rgba = np.concatenate([batch[0], np.full((4, 4, 1), 7, np.uint8)], axis=2)  # (4, 4, 4): alpha dropped
    for form in (rgba, Image.fromarray(rgba, "RGBA"), Image.fromarray(batch[0])):
        np.testing.assert_allclose(np_images.images_to_features(form, net.preprocessing), one, rtol=0, atol=0)
    pixels = batch.astype(np.float64).transpose(0, 3, 1, 2).reshape(3, -1)  # (3, 48) CHW
    expected = (pixels.astype(np.float32) - net.preprocessing["mean_image"]) @ net.preprocessing["whitening"]
    np.testing.assert_allclose(X, expected, rtol=1e-6, atol=1e-6)
    names = np_images.predict_images(tmp_path / "net.npz", files)
    assert names == torch_images.predict_images(TorchNet.from_npz(tmp_path / "net.npz"), batch)
    assert names == [CLASSES[c] for c in net.predict(X.astype(np.float64))]


def test_grey_nets_scale_uint8_and_take_floats_as_they_are(tmp_path):
    synthetic_npz(tmp_path / "net.npz", image_shape=(1, 4, 4), channels="L", pixel_max=16.0)
    pre = NumpyNet.from_npz(tmp_path / "net.npz").preprocessing
    grey = np.random.default_rng(2).integers(0, 256, size=(4, 4), dtype=np.uint8)
    X = np_images.images_to_features(grey, pre)
    floats = grey.astype(np.float64) * 16 / 255  # already in 0..pixel_max
    np.testing.assert_allclose(X[0], floats.reshape(-1) - pre["mean_image"], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np_images.images_to_features(floats, pre), X, rtol=1e-6, atol=1e-5)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)  # R = G = B: the luma is the grey level
    np.testing.assert_array_equal(np_images.images_to_features(rgb, pre), X)
    Image.fromarray(grey, "L").resize((9, 7)).save(tmp_path / "big.png")  # resized back to 4x4 by PIL
    assert np_images.images_to_features(str(tmp_path / "big.png"), pre).shape == (1, 16)


def test_weights_only_files_still_load_and_say_what_is_missing(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "old.npz", W1=rng.normal(size=(48, 5)), b1=np.zeros(5), W2=rng.normal(size=(5, 3)),
             b2=np.zeros(3))
    for Net in (NumpyNet, TorchNet):
        net = Net.from_npz(tmp_path / "old.npz")
        assert net.preprocessing == {} and tuple(net.params["W1"].shape) == (48, 5)
    for module in (np_images, torch_images):
        with pytest.raises(ValueError, match="holds weights only"):
            module.predict_images(tmp_path / "old.npz", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="expected \\(H, W\\) grey or \\(H, W, 3\\) RGB"):
        synthetic_npz(tmp_path / "net.npz")
        np_images.predict_images(tmp_path / "net.npz", np.zeros((2, 4, 4, 3, 1)))


def test_a_checkpoint_without_saved_preprocessing_gets_it_rebuilt_from_its_data_settings(tmp_path, capsys):
    from train.module import TwoLayerNetModule

    module = TwoLayerNetModule(input_size=64, num_classes=10, hidden_size=8, init_seed=1)
    data = {"class_path": "train.data.DigitsDataModule", "init_args": {"num_val": 250, "num_test": 250}}
    torch.save({"state_dict": module.state_dict(), "run_settings": {"model": {}, "data": data}}, tmp_path / "m.ckpt")
    assert train_main(["export", "--ckpt_path", str(tmp_path / "m.ckpt"), "--out", str(tmp_path / "m.npz")]) == 0
    assert "rebuilding it from its data settings (train.data.DigitsDataModule)" in capsys.readouterr().err
    pre = NumpyNet.from_npz(tmp_path / "m.npz").preprocessing
    digits = DigitsDataModule()
    np.testing.assert_array_equal(pre["mean_image"], digits.splits.preprocessing["mean_image"].numpy())
    assert (pre["image_shape"], pre["channels"], pre["pixel_max"]) == ((1, 8, 8), "L", 16.0)
    # predict --images takes the exported .npz as well as the checkpoint
    for i, img in enumerate(load_digits().images[:3]):
        Image.fromarray((img * 255 / 16).round().astype(np.uint8), "L").save(tmp_path / f"{i}.png")
    for ckpt in ("m.npz", "m.ckpt"):
        out = tmp_path / f"{ckpt}.csv"
        assert train_main(["predict", "--ckpt_path", str(tmp_path / ckpt), "--images", str(tmp_path),
                           "--out", str(out)]) == 0
        with open(out) as f:
            assert [row["file"] for row in csv.DictReader(f)] == ["0.png", "1.png", "2.png"]


@pytest.mark.slow
def test_bench_memory_reports_the_peak_of_a_load(tmp_path):
    import json
    import subprocess
    import sys

    write_jpeg_tree(tmp_path / "tree", per_class=4)
    config = tmp_path / "tiny.yaml"
    config.write_text("data:\n  init_args:\n    image_size: 8\n    num_val: 3\n    whiten_components: 10\n"
                      "    flip: true\n    shift: 1\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "benchmarks/bench_memory.py", "--root", str(tmp_path / "tree"),
                           "--config", str(config), "--load-only", "--json", str(tmp_path / "m.json")],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "m.json").read_text())
    assert row["what"] == "load" and 0.05 < row["peak_rss_gib"] < 4 and row["wall_s"] > 0
    bad = subprocess.run([sys.executable, "benchmarks/bench_memory.py", "--root", str(tmp_path)], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no train/ folder" in bad.stderr
