"""Rung 3: autograd. Only the forward pass is written; loss.backward() derives the gradients rung 2 wrote by hand.

Run: python docs/ladder/rung3_autograd.py. The parameters are leaves with ``requires_grad=True``, so every op on
them is recorded; ``backward()`` walks that graph and *adds* d loss / d leaf into each ``.grad``. The update must
not be recorded (``torch.no_grad()``), and ``.grad`` must be cleared before the next backward.
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


# [bridge:ladder-autograd-loss]
def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """Returns the loss only: autograd finds the gradients."""
    N = X.shape[0]
    S1 = X @ W1 + b1  # (N, H)
    H1 = torch.clamp_min(S1, 0)  # (N, H)  ReLU
    scores = H1 @ W2 + b2  # (N, C)
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    probs = torch.exp(shifted) / torch.sum(torch.exp(shifted), dim=1, keepdim=True)  # (N, C)  P
    return -torch.mean(torch.log(probs[torch.arange(N), y])) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))
# [/bridge:ladder-autograd-loss]


def train(X, y, params, batches, learning_rate, reg):
    """SGD over the given batches from ``params`` (copied). Returns the loss history, one float per step."""
    X, y = torch.from_numpy(X).to(dtype), torch.from_numpy(y)  # (N, D), (N,) int64
    params = {name: torch.tensor(p, dtype=dtype, requires_grad=True) for name, p in params.items()}  # leaves
    loss_history = []
    # [bridge:ladder-autograd-step]
    for indices in torch.from_numpy(batches):
        loss = two_layer_loss(X[indices], y[indices], *params.values(), reg)
        loss.backward()  # fills params[name].grad
        with torch.no_grad():  # the update is not part of the loss: do not record it
            for name in params:
                params[name] -= learning_rate * params[name].grad
                params[name].grad = None  # backward adds into .grad: clear it before the next step
        loss_history.append(loss.item())
    # [/bridge:ladder-autograd-step]
    return loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    loss_history = train(X, y, params, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
