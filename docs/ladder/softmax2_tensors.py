"""Softmax ladder, rung 2: torch tensors, the gradient still by hand. Rung 1's formulas in torch's spelling.

Run: python docs/ladder/softmax2_tensors.py. ``X.dot(W)`` becomes ``X @ W``, ``axis=`` ``dim=``, ``np.max``
``torch.amax`` and ``copy()`` ``clone()``; the arrays become float64 tensors (torch's default is float32).
"""
import numpy as np
import torch

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


def softmax_loss(W, X, y, reg):
    """Returns (loss, dW): formulas (1)-(5) of docs/bridge.md."""
    N = X.shape[0]
    scores = X @ W  # (N, C)  formula (1)
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    probs = torch.exp(shifted) / torch.sum(torch.exp(shifted), dim=1, keepdim=True)  # (N, C)  P
    loss = -torch.mean(torch.log(probs[torch.arange(N), y])) + reg * torch.sum(W * W)

    dscores = probs.clone()  # (N, C)  formula (4): (P - Y) / N
    dscores[torch.arange(N), y] -= 1
    dscores /= N
    dW = X.T @ dscores + 2 * reg * W  # (D, C)  formula (5)
    return loss, dW


def train(X, y, W, batches, learning_rate, reg):
    """SGD over the given batches from ``W`` (copied). Returns the loss history, one float per step."""
    X, y, W = torch.from_numpy(X), torch.from_numpy(y), torch.tensor(W)  # float64, int64; W copied
    loss_history = []
    # [bridge:softmax-ladder-tensors-step]
    for indices in torch.from_numpy(batches):
        loss, dW = softmax_loss(W, X[indices], y[indices], reg)
        W -= learning_rate * dW  # the update, by hand
        loss_history.append(loss.item())
    # [/bridge:softmax-ladder-tensors-step]
    return loss_history


if __name__ == "__main__":
    X, y, W, batches = make_problem()
    loss_history = train(X, y, W, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
