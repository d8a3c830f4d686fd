"""CIFAR10DataModule on a fake cifar-10-batches-py, ImageFolderDataModule on generated PNG/JPEG trees.

Run: .venv/bin/python -m pytest tests/test_image_data.py -q
"""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import train.image_data as image_data
from tests.helpers import assert_close_report
from train.image_data import SPLIT_SEED, CIFAR10DataModule, ImageFolderDataModule

pytestmark = pytest.mark.lightning

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- CIFAR-10 (torchvision's pickle release)


def write_fake_cifar(root, rows_per_batch=4, test_rows=6, seed=0):
    """The official layout: root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; each batch a
    dict with "data" (n, 3072) uint8 (1024 red, 1024 green, 1024 blue per row) and "labels" (n ints). The
    official files are Python 2 pickles whose keys load as str under torchvision's encoding="latin1" (cs231n
    reads them with encoding="bytes" and sees b"data"), so str keys are what torchvision must find here.
    Returns (train data (5 * rows, 3072), train labels, test data, test labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = rng.integers(0, 256, size=(5 * rows_per_batch, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5 * rows_per_batch).tolist()
    for i in range(5):
        part = slice(i * rows_per_batch, (i + 1) * rows_per_batch)
        with open(folder / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": data[part], "labels": labels[part]}, f)
    test = rng.integers(0, 256, size=(test_rows, 3072), dtype=np.uint8)
    test_labels = rng.integers(0, 10, size=test_rows).tolist()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test, "labels": test_labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return data, labels, test, test_labels


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A fake release, with torchvision's MD5 check satisfied for this test only (the product keeps it)."""
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    return tmp_path, write_fake_cifar(tmp_path)


def test_cifar10_splits_follow_cs231n(fake_cifar):
    root, (data, labels, test, test_labels) = fake_cifar
    dm = CIFAR10DataModule(root=str(root), num_train=15, num_val=3, num_test=4)
    s = dm.splits
    assert (s.X_train.shape, s.X_val.shape, s.X_test.shape) == ((15, 3072), (3, 3072), (4, 3072))
    assert s.X_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert (dm.input_size, dm.num_classes, s.image_shape, s.class_names) == (3072, 10, (3, 32, 32), CLASSES)
    mean = data[:15].astype(np.float64).mean(axis=0)  # (3072,) the train split's mean image
    # rows [0, 15) train, [15, 18) val (cs231n's mask), test rows [0, 4); CHW order = the official row layout
    assert_close_report("X_train", s.X_train, data[:15] - mean, rtol=0, atol=1e-4)
    assert_close_report("X_val", s.X_val, data[15:18] - mean, rtol=0, atol=1e-4)
    assert_close_report("X_test", s.X_test, test[:4] - mean, rtol=0, atol=1e-4)
    assert s.y_train.tolist() == labels[:15] and s.y_val.tolist() == labels[15:18]
    assert s.y_test.tolist() == test_labels[:4]
    assert_close_report("train mean after subtraction", s.X_train.double().mean(0), np.zeros(3072),
                        rtol=0, atol=1e-4)


def test_cifar10_missing_data_names_root_and_fixes(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError) as err:
        _ = dm.splits
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "--data.download true" in message and "--data.root" in message and "cifar-10-batches-py" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torchvision's traceback stays out


def test_cifar10_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="num_train"):
        CIFAR10DataModule(num_train=49500, num_val=1000)
    with pytest.raises(ValueError, match="num_val"):
        CIFAR10DataModule(num_val=0)


# ---------------------------------------------------------------- ImageFolder trees


def write_tree(root, split="train", per_class=3, size=8, seed=0, formats=("png", "jpg")):
    """root/<split>/{cat,dog}/NN.<fmt>: random RGB noise, plus an RGBA PNG, a grey JPEG and a 10x12 image (so
    RGB conversion and resizing are exercised). Returns the sorted file paths, the ImageFolder order."""
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / split / c).mkdir(parents=True)
        for i in range(per_class):
            fmt = formats[i % len(formats)]
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / c / f"{i:02d}.{fmt}")
    Image.fromarray(rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8), "RGBA").save(
        root / split / "cat" / "90.png")
    Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8), "L").save(root / split / "dog" / "91.jpg")
    Image.fromarray(rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)).save(root / split / "dog" / "92.png")
    return sorted(str(p) for p in (root / split).glob("*/*"))


def rgb_chw(path, size):
    """The reference decode: PIL, RGB, resized to (size, size), flattened CHW. (3 * size * size,) float64."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            return None
        return np.asarray(im, dtype=np.float64).transpose(2, 0, 1).reshape(-1)


def test_imagefolder_split_order_pixels_and_mean(tmp_path):
    files = write_tree(tmp_path)
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3, cache_dir=str(tmp_path / "c"))
    s = dm.splits
    n = len(files)
    assert (s.X_train.shape, s.X_val.shape, s.X_test) == ((n - 3, 192), (3, 192), None)
    assert (dm.input_size, dm.num_classes, s.image_shape, s.class_names) == (192, 2, (3, 8, 8), ["cat", "dog"])
    assert_close_report("train mean", s.X_train.double().mean(0), np.zeros(192), rtol=0, atol=1e-4)
    # the documented order: the class-sorted file list shuffled once by default_rng(SPLIT_SEED), val = the tail
    order = np.random.default_rng(SPLIT_SEED).permutation(n)  # row k of [train; val] is files[order[k]]
    X_all = torch.cat([s.X_train, s.X_val]).double().numpy()  # (n, 192)
    assert torch.cat([s.y_train, s.y_val]).tolist() == [0 if "/cat/" in files[i] else 1 for i in order]
    # PNG is lossless: one PNG row gives the subtracted mean image, and every PNG row then matches exactly
    png = [k for k, i in enumerate(order) if files[i].endswith(".png") and rgb_chw(files[i], 8) is not None]
    mean_image = rgb_chw(files[order[png[0]]], 8) - X_all[png[0]]  # (192,)
    for k in png:
        assert_close_report(f"row of {files[order[k]]}", X_all[k] + mean_image, rgb_chw(files[order[k]], 8),
                            rtol=0, atol=1e-3)
    for k, i in enumerate(order):  # JPEG is lossy: close to PIL's decode (the grey one too, as R = G = B)
        if files[i].endswith(".jpg"):
            assert np.abs(X_all[k] + mean_image - rgb_chw(files[i], 8)).mean() < 3.0, files[i]


def test_imagefolder_resizes_to_image_size(tmp_path):
    write_tree(tmp_path, size=8)
    s = ImageFolderDataModule(str(tmp_path), image_size=4, num_val=2, cache_dir=str(tmp_path / "c")).splits
    assert s.X_train.shape[1] == 48 and s.image_shape == (3, 4, 4)


def test_imagefolder_cache_is_written_reused_and_invalidated(tmp_path, monkeypatch):
    write_tree(tmp_path)
    first = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3).splits  # cache_dir None: root/.cache
    cached = list((tmp_path / ".cache").glob("imagefolder-train-*.pt"))
    assert len(cached) == 1 and not list((tmp_path / ".cache").glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds these files")

    monkeypatch.setattr(image_data, "_decode_chunk", no_decoding)
    monkeypatch.setattr(image_data, "_decode_rgb", no_decoding)
    second = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3).splits
    for name in ("X_train", "y_train", "X_val", "y_val"):
        torch.testing.assert_close(getattr(second, name), getattr(first, name), rtol=0, atol=0)
    # a changed file list is a different cache key: the new tree is decoded (here: the patched decoder runs)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "train" / "cat" / "50.png")
    with pytest.raises(AssertionError, match="decoded although"):
        _ = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3).splits


def test_imagefolder_read_only_root_caches_in_home(tmp_path, monkeypatch):
    write_tree(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    real_access = os.access
    read_only = str(tmp_path / "data")
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(read_only)
                        else real_access(p, mode, **kw))
    _ = ImageFolderDataModule(read_only, image_size=8, num_val=3).splits
    assert len(list((tmp_path / "home" / ".cache" / "twolayer-bridge").glob("imagefolder-train-*.pt"))) == 1


def test_imagefolder_train_only_has_no_test_split(tmp_path):
    write_tree(tmp_path, formats=("jpg",))  # JPEG-only: the batched decode_jpeg path
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=2, num_test=5, cache_dir=str(tmp_path / "c"))
    assert dm.splits.X_test is None and dm.splits.y_test is None
    with pytest.raises(ValueError, match="no test split.*test"):
        dm.test_dataloader()


def test_imagefolder_uses_test_folder_with_train_mean(tmp_path):
    write_tree(tmp_path)
    write_tree(tmp_path, split="test", seed=1)
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3, num_test=4, cache_dir=str(tmp_path / "c"))
    s = dm.splits
    assert s.X_test.shape == (4, 192) and s.y_test.shape == (4,)
    everything = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=3, cache_dir=str(tmp_path / "c"))
    assert everything.splits.X_test.shape[0] == 9
    torch.testing.assert_close(everything.splits.X_test[:4], s.X_test)  # the subset is the head of one order
    assert abs(float(s.X_test.double().mean())) > 1e-3  # centred by the train mean, not its own


@pytest.mark.parametrize("name", ["bad.jpg", "bad.png"])
def test_imagefolder_undecodable_file_is_named(tmp_path, name):
    write_tree(tmp_path, formats=("jpg",) if name.endswith(".jpg") else ("png",))
    (tmp_path / "train" / "dog" / name).write_bytes(b"this is not an image")
    dm = ImageFolderDataModule(str(tmp_path), image_size=8, num_val=2, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=f"cannot decode image file .*{name}"):
        _ = dm.splits


def test_imagefolder_bad_roots_and_sizes(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        ImageFolderDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="train/"):
        ImageFolderDataModule(str(tmp_path))
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="not an ImageFolder tree"):
        _ = ImageFolderDataModule(str(tmp_path), cache_dir=str(tmp_path / "c")).splits
    write_tree(tmp_path / "small")
    with pytest.raises(ValueError, match="num_val"):
        _ = ImageFolderDataModule(str(tmp_path / "small"), num_val=100, cache_dir=str(tmp_path / "c")).splits
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderDataModule(str(tmp_path / "small"), image_size=0)


def test_imagefolder_with_one_class_is_refused_in_its_own_words(tmp_path):
    write_tree(tmp_path)
    for path in (tmp_path / "train" / "dog").iterdir():
        path.unlink()
    (tmp_path / "train" / "dog").rmdir()
    with pytest.raises(ValueError, match=r"train/ holds 1 class folder\(s\) \['cat'\]; expected one folder per class "
                                         r"and at least 2 classes"):
        _ = ImageFolderDataModule(root=str(tmp_path), image_size=8, num_val=1).splits
