"""Softmax ladder, rung 3: autograd. The backward half of the loss is deleted; ``loss.backward()`` finds dW.

Run: python docs/ladder/softmax3_autograd.py. W becomes a leaf with ``requires_grad=True``: the forward pass records
a graph, ``loss.backward()`` adds d loss / d W into ``W.grad``, and the update runs under ``torch.no_grad()``.
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
    """Returns the loss only: autograd finds dW."""
    N = X.shape[0]
    scores = X @ W  # (N, C)  formula (1)
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    probs = torch.exp(shifted) / torch.sum(torch.exp(shifted), dim=1, keepdim=True)  # (N, C)  P
    return -torch.mean(torch.log(probs[torch.arange(N), y])) + reg * torch.sum(W * W)


def train(X, y, W, batches, learning_rate, reg):
    """SGD over the given batches from ``W`` (copied). Returns the loss history, one float per step."""
    X, y, W = torch.from_numpy(X), torch.from_numpy(y), torch.tensor(W, requires_grad=True)  # W: a leaf
    loss_history = []
    # [bridge:softmax-ladder-autograd-step]
    for indices in torch.from_numpy(batches):
        loss = softmax_loss(W, X[indices], y[indices], reg)
        loss.backward()  # fills W.grad
        with torch.no_grad():  # the update is not part of the loss: do not record it
            W -= learning_rate * W.grad
            W.grad = None  # backward adds into .grad: clear it before the next step
        loss_history.append(loss.item())
    # [/bridge:softmax-ladder-autograd-step]
    return loss_history


if __name__ == "__main__":
    X, y, W, batches = make_problem()
    loss_history = train(X, y, W, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
