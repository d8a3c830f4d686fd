"""Data modules that hold whole splits as tensors on the training device and yield batches sampled with
replacement, as the article trains (``np.random.choice(num_train, batch_size)``).

Usage::

    dm = DigitsDataModule(batch_size=200, seed=0)
    dm.input_size, dm.num_classes        # known right after construction (linked into the model by the CLI)

Every module subclasses ArrayDataModule and implements ``load() -> ArraySplits``: flattened float features,
already preprocessed (mean image of the train split subtracted). Batches come from WithReplacementBatches: an
epoch is ceil(num_train / batch_size) batches and batch ``b`` of epoch ``e`` is drawn from a generator keyed by
(seed, e, b), so runs are reproducible and a resumed run continues the same sequence.
"""
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch


@dataclass
class ArraySplits:
    """Preprocessed splits. X_*: (N_*, D) float tensors; y_*: (N_*,) int64 tensors; image_shape: (C, H, W) of one
    example before flattening (for plotting W1), or None when the features are not an image."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    image_shape: tuple | None = None
    class_names: list | None = None


def batch_indices(seed, epoch, batch_idx, num_train, batch_size):
    """(batch_size,) int64 indices in [0, num_train), drawn with replacement, a pure function of its arguments."""
    rng = np.random.default_rng([seed, epoch, batch_idx])
    return torch.from_numpy(rng.integers(0, num_train, size=batch_size, dtype=np.int64))


class WithReplacementBatches:
    """One epoch of batches (X_b (B, D), y_b (B,)) sampled with replacement from device-resident tensors.

    Indices come from ``batch_indices(seed, epoch, b, ...)``; with ``world_size > 1`` every rank draws the same
    global batch and keeps its own contiguous slice, so two processes with B/2 each see what one process with B sees.
    """

    def __init__(self, X, y, batch_size, seed, epoch=0, start_batch=0, rank=0, world_size=1):
        self.X, self.y = X, y
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.start_batch = start_batch
        self.rank, self.world_size = rank, world_size
        self.num_batches = math.ceil(X.shape[0] / batch_size)

    def __len__(self):
        return self.num_batches - self.start_batch

    def __iter__(self):
        per_rank = self.batch_size // self.world_size
        for b in range(self.start_batch, self.num_batches):
            idx = batch_indices(self.seed, self.epoch, b, self.X.shape[0], self.batch_size)
            idx = idx[self.rank * per_rank:(self.rank + 1) * per_rank].to(self.X.device, non_blocking=True)
            yield self.X.index_select(0, idx), self.y.index_select(0, idx)


class ArrayDataModule(L.LightningDataModule):
    """Base of every data module here: subclasses implement ``load() -> ArraySplits``; this class loads once,
    moves the splits to the training device in ``setup`` and serves sampled training batches.

    batch_size: examples per SGD step (drawn with replacement); seed: keys the batch sequence.
    """

    def __init__(self, batch_size: int = 200, seed: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self._splits = None

    def load(self) -> ArraySplits:
        raise NotImplementedError("a data module implements load() -> ArraySplits")

    @property
    def splits(self) -> ArraySplits:
        """The preprocessed splits, loaded on first use (the CLI reads input_size right after construction)."""
        if self._splits is None:
            self._splits = self.load()
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
