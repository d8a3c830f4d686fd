"""A tiny data module and a one-thread fixture shared by the Lightning tests (test_lightning_module.py,
test_cuda_graph.py)."""
import pytest
import torch

from train.data import ArrayDataModule, ArraySplits


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GEMMs: one thread is fastest, and immune to a busy machine
    yield
    torch.set_num_threads(threads)


class BlobsDataModule(ArrayDataModule):
    """n x 6 Gaussian features, 3 classes by a linear teacher; val = test = 40 more. With the defaults,
    90 / 20 = 5 batches per epoch (4.5 rounded up)."""

    def __init__(self, n=90, batch_size=20, seed=0):
        super().__init__(batch_size=batch_size, seed=seed)
        self.n = n

    def load(self):
        g = torch.Generator().manual_seed(0)
        X = torch.randn(self.n + 40, 6, generator=g)  # (n + 40, 6)
        y = (X @ torch.randn(6, 3, generator=g)).argmax(dim=1)  # (n + 40,)
        return ArraySplits(X[:self.n], y[:self.n], X[self.n:], y[self.n:], X[self.n:], y[self.n:])
