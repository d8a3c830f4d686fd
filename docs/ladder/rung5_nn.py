"""Rung 5: nn.Module with nn.Linear, and torch.optim.SGD. The layers own their parameters; the optimizer updates.

Run: python docs/ladder/rung5_nn.py. Two things change shape on the way:

- ``nn.Linear(D, H).weight`` is (H, D), the transpose of our W1 (D, H): it computes ``X @ weight.T + bias``.
- L2 can be written into the loss (``reg * sum(W * W)``, as the article does) or given to the optimizer as
  ``weight_decay``, which adds ``weight_decay * p`` to every gradient it updates. ``weight_decay = 2 * reg`` is the
  same gradient, but ``SGD(model.parameters(), weight_decay=...)`` decays the biases too, which the article never
  does; parameter groups give the weights the decay and the biases none. ``main`` prints all three.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


# [bridge:ladder-nn-module]
class TwoLayerNet(nn.Module):
    """affine - ReLU - affine; scores (N, C) from X (N, D)."""

    def __init__(self, D, H, C):
        super().__init__()
        self.fc1 = nn.Linear(D, H, dtype=dtype)  # fc1.weight: (H, D), our W1.T
        self.fc2 = nn.Linear(H, C, dtype=dtype)  # fc2.weight: (C, H), our W2.T

    def forward(self, X):
        return self.fc2(F.relu(self.fc1(X)))  # (N, C)


@torch.no_grad()
def load_params(model, params):
    """Copy our (D, H) layout into nn.Linear's (H, D): the weights transposed, the biases as they are."""
    model.fc1.weight.copy_(torch.from_numpy(params["W1"].T))
    model.fc1.bias.copy_(torch.from_numpy(params["b1"]))
    model.fc2.weight.copy_(torch.from_numpy(params["W2"].T))
    model.fc2.bias.copy_(torch.from_numpy(params["b2"]))
# [/bridge:ladder-nn-module]


# [bridge:ladder-nn-decay]
def make_optimizer(model, learning_rate, reg, decay):
    """torch.optim.SGD for one of three ways to apply L2 (``decay``); the first two are the article's update."""
    if decay == "reg in the loss":  # the article: reg * sum(W * W) is part of the loss backward() sees
        return torch.optim.SGD(model.parameters(), lr=learning_rate)
    if decay == "weight_decay, weights only":  # parameter groups: 2 reg W for the weights, nothing for the biases
        weights = [model.fc1.weight, model.fc2.weight]
        biases = [model.fc1.bias, model.fc2.bias]
        return torch.optim.SGD([{"params": weights, "weight_decay": 2 * reg},
                                {"params": biases, "weight_decay": 0.0}], lr=learning_rate)
    if decay == "weight_decay, everything":  # the one-liner: the biases are decayed too
        return torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=2 * reg)
    raise ValueError(f"decay: got {decay!r}; expected one of {DECAYS}")
# [/bridge:ladder-nn-decay]


DECAYS = ("reg in the loss", "weight_decay, weights only", "weight_decay, everything")


def train(X, y, params, batches, learning_rate, reg, decay="reg in the loss", model=None):
    """SGD over the given batches from ``params``. Returns the loss history, one float per step (the article's loss,
    reg term included, whichever way the decay is applied). ``model``: a TwoLayerNet to train, made if None."""
    X, y = torch.from_numpy(X).to(dtype), torch.from_numpy(y)  # (N, D), (N,) int64
    model = TwoLayerNet(D, H, C) if model is None else model
    load_params(model, params)
    opt = make_optimizer(model, learning_rate, reg, decay)
    loss_history = []
    # [bridge:ladder-nn-step]
    for indices in torch.from_numpy(batches):
        data_loss = F.cross_entropy(model(X[indices]), y[indices])  # mean -log softmax[y], stable
        loss = data_loss + reg * (torch.sum(model.fc1.weight ** 2) + torch.sum(model.fc2.weight ** 2))
        opt.zero_grad()  # clear .grad (set to None)
        (loss if decay == "reg in the loss" else data_loss).backward()  # weight_decay adds 2 reg W in step()
        opt.step()  # p -= lr * (p.grad + weight_decay * p), for every parameter of every group
        loss_history.append(loss.item())
    # [/bridge:ladder-nn-step]
    return loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    model = TwoLayerNet(D, H, C)
    print(f"our W1: {params['W1'].shape}, nn.Linear's fc1.weight: {tuple(model.fc1.weight.shape)}")
    histories = {decay: train(X, y, params, batches, learning_rate, reg, decay) for decay in DECAYS}
    for decay, loss_history in histories.items():
        diff = max(abs(a - b) for a, b in zip(loss_history, histories["reg in the loss"]))
        print(f"{decay:28s} last loss {loss_history[-1]:.12f}  max |difference| {diff:.1e}")
    train(X, y, params, batches, learning_rate, reg, model=model)
    model.eval()  # evaluation mode: what Dropout and BatchNorm need; this net has neither, so nothing changes
    with torch.no_grad():  # predicting records no graph
        accuracy = (model(torch.from_numpy(X)).argmax(dim=1).numpy() == y).mean()
    model.train()  # back to training mode
    print(f"train accuracy {accuracy:.3f}")
