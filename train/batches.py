"""The keyed with-replacement batches of every data module, as the article trains
(``np.random.choice(num_train, batch_size)``): an epoch is ceil(num_train / batch_size) batches, and batch ``b`` of
epoch ``e`` is drawn from a generator keyed by (seed, e, b), so runs are reproducible and a resumed run continues
the same sequence. ContiguousChunks serves the evaluation splits in order.

Epoch and resume protocol (how Lightning drives WithReplacementBatches):
- Lightning calls ``dataloader.sampler.set_epoch(epoch)`` at every epoch start (the DistributedSampler protocol);
  ``WithReplacementBatches.sampler`` is the object itself, so the epoch key follows the trainer.
- It is a Lightning "stateful" iterable (``state_dict``/``load_state_dict``): a checkpoint stores
  {epoch, next_batch}, and a run restored mid-epoch starts that epoch at ``next_batch``. In step-block mode
  next_batch counts the SGD steps taken (a block cut at max_steps reports its steps through ``block.ran``).
"""
import math
import warnings

import numpy as np
import torch

from train.step_blocks import StepBlock


def batch_indices(seed, epoch, batch_idx, num_train, batch_size, views=1):
    """(batch_size,) int64 row indices, drawn with replacement, a pure function of its arguments.

    Examples i in [0, num_train); with views V > 1 the same generator then draws a view v in [0, V) per example and
    the row is v * num_train + i (ArraySplits.train_views), so the examples are those drawn with V = 1.
    """
    rng = np.random.default_rng([seed, epoch, batch_idx])
    rows = rng.integers(0, num_train, size=batch_size, dtype=np.int64)  # (B,) examples
    if views > 1:
        rows += num_train * rng.integers(0, views, size=batch_size, dtype=np.int64)  # (B,) rows of the drawn views
    return torch.from_numpy(rows)


class WithReplacementBatches:
    """One epoch of batches (X_b (B, D), y_b (B,)) sampled with replacement from device-resident tensors.

    Indices come from ``batch_indices(seed, epoch, b, ...)``; with ``world_size > 1`` every rank draws the same
    global batch and keeps its own contiguous slice, so two processes with B/2 each see what one process with B sees.
    ``len()`` is the full epoch, ceil(N / B), even when ``start_batch`` skips the first batches of a resumed epoch
    (Lightning counts the skipped batches as already done).

    ``block_size`` K >= 1 (ArrayDataModule.step_block_size, handed over by TwoLayerNetModule with steps_per_call
    or cuda_graph) yields step blocks instead (train/step_blocks.py's StepBlock), ceil(ceil(N / B) / K) per epoch:
    the whole device-resident split, this epoch's batch index table (ceil(N / B), B) on the device, the block's
    first batch and its count (<= K, or < 2K for the first block of an epoch resumed inside a block), and ``ran``.
    """

    def __init__(self, X, y, batch_size, seed, epoch=0, start_batch=0, rank=0, world_size=1, block_size=0, views=1):
        self.X, self.y = X, y
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.start_batch = start_batch
        self.rank, self.world_size = rank, world_size
        self.views = views  # X, y stack this many views of the N = X.shape[0] // views examples
        self.num_examples = X.shape[0] // views
        self.num_batches = math.ceil(self.num_examples / batch_size)
        self.next_batch = start_batch  # the batch the next ``next()`` yields; saved by state_dict
        self.block_size = block_size  # 0: (X_b, y_b) batches; K >= 1: step blocks of up to K batches

    @property
    def sampler(self):
        """Lightning calls ``dataloader.sampler.set_epoch(e)`` each epoch; this object is its own sampler."""
        return self

    def set_epoch(self, epoch):
        """Key the following iterations by ``epoch``; a new epoch starts at batch 0."""
        if epoch != self.epoch:
            self.epoch, self.start_batch = epoch, 0

    def state_dict(self):
        """{epoch, next_batch, seed}: where this epoch's batch sequence stands (saved in checkpoints)."""
        return {"epoch": self.epoch, "next_batch": self.next_batch, "seed": self.seed}

    def load_state_dict(self, state):
        """Continue from a state_dict: the next iteration of ``state['epoch']`` starts at ``next_batch``."""
        self.epoch, self.start_batch = state["epoch"], state["next_batch"]
        K, n = self.block_size, self.start_batch
        if K and n < self.num_batches and math.ceil(n / K) == len(self):
            warnings.warn(f"resuming epoch {self.epoch} at batch {n}, inside its last step block (a cut at max_steps): "
                          f"Lightning counts that block as done, so batches {n}..{self.num_batches - 1} of the epoch "
                          "are skipped; stop at a max_steps that ends a block to resume exactly", stacklevel=2)

    def __len__(self):
        return math.ceil(self.num_batches / self.block_size) if self.block_size else self.num_batches

    def __iter__(self):
        return self._blocks() if self.block_size else self._batches()

    def epoch_indices(self, epoch):
        """(ceil(N / B), B / world_size) int64 on X's device: every batch's indices (this rank's slice) of ``epoch``."""
        per_rank = self.batch_size // self.world_size
        table = torch.stack([batch_indices(self.seed, epoch, b, self.num_examples, self.batch_size, self.views)
                             for b in range(self.num_batches)])  # (num_batches, B)
        return table[:, self.rank * per_rank:(self.rank + 1) * per_rank].to(self.X.device)

    def ran(self, first, count):
        """A consumer ran only ``count`` batches of the block starting at ``first`` (a cut at trainer.max_steps):
        the saved state then counts the batches stepped, and a resumed epoch continues right after them."""
        self.next_batch = first + count

    def _blocks(self):
        epoch, start = self.epoch, self.start_batch  # read at the first next(), as in _batches
        self.start_batch = 0
        table = self.epoch_indices(epoch)  # (num_batches, B): one host-to-device copy per epoch
        K, first = self.block_size, start
        while first < self.num_batches:
            # blocks end on multiples of K; a resume inside a block (cut at max_steps) runs the rest of that block
            # with the next one, so the epoch keeps the block count Lightning has counted (the cut block included)
            end = min((first // K + 1 + (first % K > 0)) * K, self.num_batches)
            self.next_batch = end
            yield StepBlock(self.X, self.y, table, first, end - first, self.ran)
            first = end
        self.next_batch = self.num_batches

    def _batches(self):
        # A generator's body runs at the first next(), so the epoch and start are read then, not at iter(): a
        # resumed fit creates its iterator before set_epoch() of the epoch it resumes into (fit_loop.setup_data).
        epoch, start = self.epoch, self.start_batch
        self.start_batch = 0  # a skip applies to one iteration only
        per_rank = self.batch_size // self.world_size
        for b in range(start, self.num_batches):
            idx = batch_indices(self.seed, epoch, b, self.num_examples, self.batch_size, self.views)  # (B,)
            idx = idx[self.rank * per_rank:(self.rank + 1) * per_rank].to(self.X.device, non_blocking=True)
            self.next_batch = b + 1
            yield self.X.index_select(0, idx), self.y.index_select(0, idx)  # (B, D), (B,)
        self.next_batch = self.num_batches


class ContiguousChunks:
    """An evaluation split in order as a few large slices (X[i:i+chunk] (n, D), y[i:i+chunk] (n,))."""

    def __init__(self, X, y, chunk_size=8192):
        self.X, self.y, self.chunk_size = X, y, chunk_size

    def __len__(self):
        return math.ceil(self.X.shape[0] / self.chunk_size)

    def __iter__(self):
        for i in range(0, self.X.shape[0], self.chunk_size):
            yield self.X[i:i + self.chunk_size], self.y[i:i + self.chunk_size]
