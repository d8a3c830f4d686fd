"""Softmax ladder, rung 4: ``nn.Linear``, ``F.cross_entropy`` and ``torch.optim.SGD``. The layer owns W, the loss
is one call, the optimizer updates.

Run: python docs/ladder/softmax4_nn.py. ``nn.Linear(D, C, bias=False)`` computes ``X @ weight.T``, so its
``weight`` is (C, D), the transpose of our W (D, C); the bias stays the last row of W (cs231n's bias trick), and
is regularized with it. ``F.cross_entropy(scores, y)`` is the max subtraction, the log-softmax and the mean of
-log P[y] in one stable call.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N, D, C = 64, 10, 3  # examples, features (the last one is the bias column), classes
learning_rate, reg, num_iters, batch_size = 0.5, 1e-3, 30, 16


def make_problem(seed=0):
    """X (N, D) with a last column of ones (cs231n's bias trick), y (N,), the start W (D, C), the batches' indices."""
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((N, D - 1)), np.ones((N, 1))])  # the last row of W holds the biases
    y = np.argmax(X.dot(rng.standard_normal((D, C))), axis=1)  # (N,)  labels a linear teacher gives: learnable
    W = 0.1 * rng.standard_normal((D, C))
    batches = rng.integers(0, N, size=(num_iters, batch_size))  # with replacement, as np.random.choice draws them
    return X, y, W, batches


def train(X, y, W, batches, learning_rate, reg):
    """SGD over the given batches from ``W``. Returns the loss history, one float per step."""
    X, y = torch.from_numpy(X), torch.from_numpy(y)  # (N, D) float64, (N,) int64
    model = nn.Linear(D, C, bias=False, dtype=torch.float64)  # model.weight: (C, D), our W.T
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(W.T))
    opt = torch.optim.SGD(model.parameters(), lr=learning_rate)
    loss_history = []
    # [bridge:softmax-ladder-nn-step]
    for indices in torch.from_numpy(batches):
        loss = F.cross_entropy(model(X[indices]), y[indices]) + reg * torch.sum(model.weight ** 2)
        opt.zero_grad()  # clear .grad (set to None)
        loss.backward()
        opt.step()  # weight -= lr * weight.grad
        loss_history.append(loss.item())
    # [/bridge:softmax-ladder-nn-step]
    return loss_history


if __name__ == "__main__":
    X, y, W, batches = make_problem()
    loss_history = train(X, y, W, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
