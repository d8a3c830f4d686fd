"""Softmax ladder, rung 1: NumPy, as cs231n's softmax.py does it. The loss, its gradient by hand, and SGD by hand.

Run: python docs/ladder/softmax1_numpy.py. The four softmax rungs train the same classifier on the same batches from
the same W and print the same loss history (tests/test_ladder.py); ``diff`` two neighbouring rungs to see the one
idea between them.
"""
import numpy as np

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
    scores = X.dot(W)  # (N, C)  formula (1)
    shifted = scores - np.max(scores, axis=1, keepdims=True)  # (N, C)  max subtraction
    probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)  # (N, C)  P
    loss = -np.mean(np.log(probs[np.arange(N), y])) + reg * np.sum(W * W)

    dscores = probs.copy()  # (N, C)  formula (4): (P - Y) / N
    dscores[np.arange(N), y] -= 1
    dscores /= N
    dW = X.T.dot(dscores) + 2 * reg * W  # (D, C)  formula (5)
    return loss, dW


def train(X, y, W, batches, learning_rate, reg):
    """SGD over the given batches from ``W`` (copied). Returns the loss history, one float per step."""
    W = W.copy()
    loss_history = []
    # [bridge:softmax-ladder-numpy-step]
    for indices in batches:
        loss, dW = softmax_loss(W, X[indices], y[indices], reg)
        W -= learning_rate * dW  # the update, by hand
        loss_history.append(float(loss))
    # [/bridge:softmax-ladder-numpy-step]
    return loss_history


if __name__ == "__main__":
    X, y, W, batches = make_problem()
    loss_history = train(X, y, W, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
