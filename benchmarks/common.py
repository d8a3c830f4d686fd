"""What every benchmark shares: cs231n's CIFAR-10 training shape, its two-layer-net settings, the synthetic data.

Usage (a benchmark run as a script has benchmarks/ on sys.path)::

    from common import BATCH, make_data
    X, y = make_data(torch.device("cpu"), NUM_TRAIN)    # (N, D) float32, (N,) int64
"""
import torch

NUM_TRAIN, INPUT_SIZE, NUM_CLASSES, BATCH = 49_000, 3_072, 10, 200  # cs231n's CIFAR-10 training shape
LR, REG, STD = 1e-4, 0.25, 1e-4  # cs231n's two-layer-net settings


def make_data(device, num_train, seed=0):
    """Synthetic training data: X (num_train, D) float32 standard normal, y (num_train,) int64 on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(num_train, INPUT_SIZE, generator=gen)  # (N, D)
    y = torch.randint(0, NUM_CLASSES, (num_train,), generator=gen)  # (N,)
    return X.to(device), y.to(device)
