"""Data modules that hold whole splits as tensors on the training device and yield batches sampled with
replacement, as the article trains (``np.random.choice(num_train, batch_size)``).

Usage::

    dm = DigitsDataModule(batch_size=200, seed=0)
    dm.input_size, dm.num_classes        # known right after construction (linked into the model by the CLI)

Every module subclasses ArrayDataModule and implements ``load() -> ArraySplits``: flattened float features,
already preprocessed (mean image of the train split subtracted). Batches come from WithReplacementBatches: an
epoch is ceil(num_train / batch_size) batches and batch ``b`` of epoch ``e`` is drawn from a generator keyed by
(seed, e, b), so runs are reproducible and a resumed run continues the same sequence (train/batches.py).
"""
import os
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from torch_impl.validation import check_positive_int, check_split
from train.batches import ContiguousChunks, WithReplacementBatches

TRAINING_DTYPE = torch.float32  # of 32-true and the mixed precisions; a "true" precision keeps its own dtype
TRUE_PRECISION_DTYPES = {"64-true": torch.float64, "64": torch.float64, "16-true": torch.float16,
                         "bf16-true": torch.bfloat16}


def precision_dtype(precision):
    """The dtype of the data and parameters under a Lightning precision ("64-true" -> float64, "bf16-true" ->
    bfloat16, ...): a "true" precision's own dtype, else (32-true and the mixed precisions) float32."""
    return TRUE_PRECISION_DTYPES.get(str(precision), TRAINING_DTYPE)


@dataclass
class ArraySplits:
    """Preprocessed splits. X_*: (N_*, D) float tensors; y_*: (N_*,) int64 tensors; image_shape: (C, H, W) of one
    example before flattening (for plotting W1), or None when the features are not an image.

    train_views V >= 1: X_train (V * N, D) and y_train (V * N,) stack V views of the N training examples (e.g. an
    image and its mirror), row v * N + i being view v of example i; the sampler draws one view per drawn example.
    preprocessing: how raw pixels became the features (reference_numpy/images.py), or None when they are not images.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    image_shape: tuple | None = None
    class_names: list | None = None
    train_views: int = 1
    preprocessing: dict | None = None


class ArrayDataModule(L.LightningDataModule):
    """The base of every data module here: whole splits on the training device, batches drawn with replacement.

    Subclasses implement ``load() -> ArraySplits``; this class loads once, moves the splits to the training device
    in ``setup`` and serves sampled training batches.

    Args:
        batch_size: examples per SGD step, drawn with replacement (under DDP the global batch, split across ranks).
        seed: keys the batch sequence (batch b of epoch e comes from a generator seeded with (seed, e, b)).
    """

    def __init__(self, batch_size: int = 200, seed: int = 0):
        super().__init__()
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = seed
        self._splits = None
        self._device_splits = None  # the splits on the training device, in the training dtype (after setup)
        # 0: the training loader yields (X_b, y_b) batches; K >= 1: step blocks of up to K batches. Handed over by
        # the model at fit start, from the step path it chose (TwoLayerNetModule.on_fit_start)
        self.step_block_size = 0

    def load(self) -> ArraySplits:
        raise NotImplementedError("a data module implements load() -> ArraySplits")

    @property
    def splits(self) -> ArraySplits:
        """The preprocessed splits, loaded on first use (the CLI reads input_size right after construction) and
        checked once, on the CPU: shapes, finite features, labels in [0, C) (check_split names the split)."""
        if self._splits is None:
            splits = self.load()
            check_splits(splits)
            check_batch_fits(self.batch_size, splits)  # before a (B, D) batch is ever gathered
            self._splits = splits
        return self._splits

    @property
    def input_size(self) -> int:
        """D, the number of features per example."""
        return int(self.splits.X_train.shape[1])

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        s = self.splits
        if s.class_names is not None:
            return len(s.class_names)
        return int(s.y_train.max()) + 1

    @property
    def num_train(self) -> int:
        """N, the number of training examples, each counted once whatever its views (the model's lr schedule
        needs N / batch_size)."""
        return int(self.splits.X_train.shape[0]) // self.splits.train_views

    @property
    def image_shape(self):
        """(C, H, W) of one example before flattening, or None (read by the weight plot)."""
        return self.splits.image_shape

    def state_dict(self):
        """{"preprocessing": ...} once loaded: every checkpoint keeps it for export and predict; else {}."""
        pre = self._splits.preprocessing if self._splits is not None else None
        return {"preprocessing": pre} if pre is not None else {}

    def setup(self, stage=None):
        """Every split to the trainer's device once, in a "true" precision's dtype (64-true: float64), else float32."""
        s = self.splits
        device, dtype = torch.device("cpu"), TRAINING_DTYPE
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            dtype = precision_dtype(self.trainer.precision)
        move_X = lambda t: None if t is None else t.to(device=device, dtype=dtype)
        move_y = lambda t: None if t is None else t.to(device=device, dtype=torch.int64)
        self._device_splits = ArraySplits(move_X(s.X_train), move_y(s.y_train), move_X(s.X_val), move_y(s.y_val),
                                          move_X(s.X_test), move_y(s.y_test), s.image_shape, s.class_names,
                                          s.train_views, s.preprocessing)

    def _on_device(self):
        if self._device_splits is None:
            self.setup()
        return self._device_splits

    def train_dataloader(self):
        """WithReplacementBatches of the current epoch; under DDP each rank keeps its slice of every batch."""
        s = self._on_device()
        epoch, rank, world_size = 0, 0, 1
        if self.trainer is not None:
            epoch, rank, world_size = self.trainer.current_epoch, self.trainer.global_rank, self.trainer.world_size
        if self.batch_size % world_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by the number of processes "
                             f"({world_size}): every rank takes an equal slice of each batch")
        return WithReplacementBatches(s.X_train, s.y_train, self.batch_size, self.seed, epoch=epoch, rank=rank,
                                      world_size=world_size, block_size=self.step_block_size, views=s.train_views)

    def val_dataloader(self):
        s = self._on_device()
        return ContiguousChunks(s.X_val, s.y_val)

    def test_dataloader(self):
        return ContiguousChunks(*self._test_split("test"))

    def predict_dataloader(self):
        return ContiguousChunks(*self._test_split("predict"))  # the test split in order, as test

    def _test_split(self, stage):
        """(X_test, y_test); a data module without a test split has no test or predict stage."""
        s = self._on_device()
        if s.X_test is None:
            raise ValueError(f"{type(self).__name__} has no test split to {stage}; use validate, or data with one")
        return s.X_test, s.y_test

    @classmethod
    def missing_split(cls, init_args, name):
        """Why split ``name`` ("test") cannot be served, told from the constructor's ``init_args`` before any data
        is loaded (asked by the CLI before test and predict); None when it can be, or when loading must tell."""
        return None


def check_batch_fits(batch_size, s):
    """A batch larger than the training split is drawn with replacement (as np.random.choice(N, B) allows), but
    one whose (B, D) float32 batch would take over half of this machine's memory is refused before it is made."""
    num_train, memory = s.X_train.shape[0] // s.train_views, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = batch_size * s.X_train.shape[1] * 4
    if batch_size > num_train and need > memory / 2:
        raise ValueError(f"batch_size: got {batch_size}, more than the {num_train} training examples, and one batch "
                         f"would take {need / 2**30:.1f} GiB; expected at most {num_train} (cs231n: 200)")


def check_splits(s):
    """check_split on every split of ``s`` (an ArraySplits) present: C from class_names, else from the train labels
    (y_train.max() + 1, so val/test labels must lie in the train split's range); every split has D features."""
    num_classes = len(s.class_names) if s.class_names is not None else None
    if num_classes is None:
        check_split("train", s.X_train, s.y_train, 2 ** 62)  # shapes and values first; then the range is known
        num_classes = int(s.y_train.max()) + 1
    if not isinstance(s.train_views, int) or s.train_views < 1 or s.X_train.shape[0] % s.train_views:
        raise ValueError(f"train_views: got {s.train_views!r}; expected an integer >= 1 that divides the "
                         f"{s.X_train.shape[0]} train rows (train_views stacked copies of the train examples)")
    for name, X, y in [("train", s.X_train, s.y_train), ("val", s.X_val, s.y_val), ("test", s.X_test, s.y_test)]:
        if name == "test" and X is None and y is None:
            continue
        check_split(name, X, y, num_classes)
        if X.shape[1] != s.X_train.shape[1]:
            raise ValueError(f"{name} X: got {X.shape[1]} features per row; expected {s.X_train.shape[1]}, as the "
                             f"train split")


def subtract_train_mean(X_train, *others):
    """Mean-image subtraction, the mean taken over the train split only. X_*: (N_*, D). Returns the shifted arrays."""
    mean = X_train.mean(dim=0, keepdim=True)  # (1, D)  the mean image
    return (X_train - mean, *(None if X is None else X - mean for X in others))


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's bundled 8x8 digits (1,797 images, 0..16 grey levels, no download), the CLI's default.

    A seeded permutation splits them into 1,297 train / num_val val / num_test test; the train mean image is
    subtracted in float64 (``setup`` casts to the run's dtype). Features: (N, 64) float64; image_shape (1, 8, 8).

    Args:
        batch_size: examples per SGD step, drawn with replacement.
        seed: keys the batch sequence.
        num_val: validation images.
        num_test: test images (0: no test split).
        split_seed: seeds the permutation that splits the 1,797 images.
    """

    def __init__(self, batch_size: int = 200, seed: int = 0, num_val: int = 250, num_test: int = 250,
                 split_seed: int = 0):
        super().__init__(batch_size=batch_size, seed=seed)
        if num_val < 1 or num_test < 0 or num_val + num_test >= 1797:
            raise ValueError(f"num_val={num_val}, num_test={num_test}: expected num_val >= 1, num_test >= 0 and "
                             f"num_val + num_test < 1797 (the number of digits)")
        self.num_val, self.num_test, self.split_seed = num_val, num_test, split_seed

    def load(self) -> ArraySplits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = torch.as_tensor(digits.data, dtype=torch.float64)  # (1797, 64)
        y = torch.as_tensor(digits.target, dtype=torch.int64)  # (1797,)
        order = torch.from_numpy(np.random.default_rng(self.split_seed).permutation(X.shape[0]))
        n_tr = X.shape[0] - self.num_val - self.num_test
        tr, va, te = order[:n_tr], order[n_tr:n_tr + self.num_val], order[n_tr + self.num_val:]
        X_tr, X_va, X_te = subtract_train_mean(X[tr], X[va], X[te] if self.num_test else None)
        names = [str(d) for d in range(10)]
        pre = {"image_shape": [1, 8, 8], "channels": "L", "pixel_max": 16.0, "mean_image": X[tr].mean(dim=0),
               "class_names": names}  # load_digits().images (0..16) -> features, as subtract_train_mean
        return ArraySplits(X_tr, y[tr], X_va, y[va], X_te, y[te] if self.num_test else None,
                           image_shape=(1, 8, 8), class_names=names, preprocessing=pre)


def make_spiral(num_per_class, num_classes, rng, noise=0.2):
    """The cs231n case study's spiral: X (K*N, 2) float64, y (K*N,) int64; arm j has radii 0..1, angles
    j*4..(j+1)*4 plus noise * randn."""
    X = np.zeros((num_per_class * num_classes, 2))
    y = np.zeros(num_per_class * num_classes, dtype=np.int64)
    for j in range(num_classes):
        ix = range(num_per_class * j, num_per_class * (j + 1))
        r = np.linspace(0.0, 1, num_per_class)  # radius
        t = np.linspace(j * 4, (j + 1) * 4, num_per_class) + rng.standard_normal(num_per_class) * noise  # theta
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return torch.from_numpy(X), torch.from_numpy(y)


class SpiralDataModule(ArrayDataModule):
    """The cs231n "neural networks case study" spiral: num_classes arms x num_per_class points in 2-D.

    Train, val and test are three independent draws from one seeded generator (same arms, new noise each). The
    features are used as they are (already centred): X (K*N, 2), no image_shape.

    Args:
        batch_size: examples per SGD step, drawn with replacement.
        seed: keys the batch sequence.
        num_per_class: points per arm, in each of train, val and test.
        num_classes: arms (classes).
        noise: standard deviation of the angle noise (the case study's 0.2).
        data_seed: seeds the three draws.
    """

    def __init__(self, batch_size: int = 300, seed: int = 0, num_per_class: int = 100, num_classes: int = 3,
                 noise: float = 0.2, data_seed: int = 0):
        super().__init__(batch_size=batch_size, seed=seed)
        if num_per_class < 1 or num_classes < 2:
            raise ValueError(f"num_per_class={num_per_class}, num_classes={num_classes}: expected >= 1 and >= 2")
        self.num_per_class, self.K, self.noise, self.data_seed = num_per_class, num_classes, noise, data_seed

    def load(self) -> ArraySplits:
        rng = np.random.default_rng(self.data_seed)
        X_tr, y_tr = make_spiral(self.num_per_class, self.K, rng, self.noise)
        X_va, y_va = make_spiral(self.num_per_class, self.K, rng, self.noise)
        X_te, y_te = make_spiral(self.num_per_class, self.K, rng, self.noise)
        return ArraySplits(X_tr, y_tr, X_va, y_va, X_te, y_te, image_shape=None,
                           class_names=[f"arm {j}" for j in range(self.K)])
