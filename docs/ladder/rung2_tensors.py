"""Rung 2: torch tensors, the same hand-written gradients, and the update by hand under torch.no_grad().

Run: python docs/ladder/rung2_tensors.py. ``diff docs/ladder/rung1_numpy.py docs/ladder/rung2_tensors.py`` shows
only the NumPy -> torch idioms: ``@`` for ``dot``, ``dim`` for ``axis``, ``clamp_min`` for ``maximum``.
"""
import numpy as np
import torch

N, D, H, C = 64, 10, 20, 3  # examples, features, hidden units, classes
learning_rate, reg, num_iters, batch_size = 0.5, 1e-3, 30, 16
dtype = torch.float64  # torch's default is float32; float64 matches NumPy digit for digit


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
    S1 = X @ W1 + b1  # (N, H)
    H1 = torch.clamp_min(S1, 0)  # (N, H)  ReLU
    scores = H1 @ W2 + b2  # (N, C)
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    probs = torch.exp(shifted) / torch.sum(torch.exp(shifted), dim=1, keepdim=True)  # (N, C)  P
    loss = -torch.mean(torch.log(probs[torch.arange(N), y])) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))

    dS2 = probs.clone()  # (N, C)  (P - Y) / N
    dS2[torch.arange(N), y] -= 1
    dS2 /= N
    dH1 = (dS2 @ W2.T) * (S1 > 0)  # (N, H)  through W2 and the ReLU mask
    grads = {"W1": X.T @ dH1 + 2 * reg * W1, "b1": dH1.sum(dim=0),
             "W2": H1.T @ dS2 + 2 * reg * W2, "b2": dS2.sum(dim=0)}
    return loss, grads


def train(X, y, params, batches, learning_rate, reg):
    """SGD over the given batches from ``params`` (copied). Returns the loss history, one float per step."""
    X, y = torch.from_numpy(X).to(dtype), torch.from_numpy(y)  # (N, D), (N,) int64
    params = {name: torch.tensor(p, dtype=dtype) for name, p in params.items()}  # copies
    loss_history = []
    # [bridge:ladder-tensors-step]
    for indices in torch.from_numpy(batches):
        loss, grads = two_layer_loss(X[indices], y[indices], *params.values(), reg)
        with torch.no_grad():  # nothing records a graph yet; from rung 3 on, an update needs this
            for name in params:
                params[name] -= learning_rate * grads[name]  # the update, by hand
        loss_history.append(loss.item())
    # [/bridge:ladder-tensors-step]
    return loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    loss_history = train(X, y, params, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
