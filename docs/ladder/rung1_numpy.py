"""Rung 1: NumPy, as the article does it. The two-layer net's loss, its gradients by hand, and SGD by hand.

Run: python docs/ladder/rung1_numpy.py. Every rung trains the same net on the same batches from the same start and
prints the same loss history (tests/test_ladder.py); ``diff`` two neighbouring rungs to see the one idea between them.
"""
import numpy as np

N, D, H, C = 64, 10, 20, 3  # examples, features, hidden units, classes
learning_rate, reg, num_iters, batch_size = 0.5, 1e-3, 30, 16


def make_problem(seed=0):
    """X (N, D), y (N,), the start params (W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)) and the batches' indices."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = np.argmax(X.dot(rng.standard_normal((D, C))), axis=1)  # (N,)  labels a linear teacher gives: learnable
    params = {"W1": 0.1 * rng.standard_normal((D, H)), "b1": np.zeros(H),
              "W2": 0.1 * rng.standard_normal((H, C)), "b2": np.zeros(C)}
    batches = rng.integers(0, N, size=(num_iters, batch_size))  # with replacement, as np.random.choice draws them
    return X, y, params, batches


def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """Returns (loss, grads) with grads keys W1, b1, W2, b2."""
    N = X.shape[0]
    S1 = X.dot(W1) + b1  # (N, H)
    H1 = np.maximum(S1, 0)  # (N, H)  ReLU
    scores = H1.dot(W2) + b2  # (N, C)
    shifted = scores - np.max(scores, axis=1, keepdims=True)  # (N, C)  max subtraction
    probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)  # (N, C)  P
    loss = -np.mean(np.log(probs[np.arange(N), y])) + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    dS2 = probs.copy()  # (N, C)  (P - Y) / N
    dS2[np.arange(N), y] -= 1
    dS2 /= N
    dH1 = dS2.dot(W2.T) * (S1 > 0)  # (N, H)  through W2 and the ReLU mask
    grads = {"W1": X.T.dot(dH1) + 2 * reg * W1, "b1": dH1.sum(axis=0),
             "W2": H1.T.dot(dS2) + 2 * reg * W2, "b2": dS2.sum(axis=0)}
    return loss, grads


def train(X, y, params, batches, learning_rate, reg):
    """SGD over the given batches from ``params`` (copied). Returns the loss history, one float per step."""
    params = {name: p.copy() for name, p in params.items()}
    loss_history = []
    # [bridge:ladder-numpy-step]
    for indices in batches:
        loss, grads = two_layer_loss(X[indices], y[indices], *params.values(), reg)
        for name in params:
            params[name] -= learning_rate * grads[name]  # the update, by hand
        loss_history.append(float(loss))
    # [/bridge:ladder-numpy-step]
    return loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    loss_history = train(X, y, params, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
