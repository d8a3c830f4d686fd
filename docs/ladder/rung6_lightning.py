"""Rung 6: a minimal LightningModule with automatic optimization. Lightning runs the loop rung 5 wrote.

Run: python docs/ladder/rung6_lightning.py. ``training_step`` returns the loss; Lightning calls
``opt.zero_grad()``, ``loss.backward()`` and ``opt.step()`` around it, for the optimizer ``configure_optimizers``
returns. The batches come from a DataLoader (here over the same fixed index lists as every rung).
"""
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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

# [bridge:ladder-lightning-auto]
class TwoLayerNetModule(L.LightningModule):
    """Rung 5's net and loss; Lightning does zero_grad, backward and step."""

    def __init__(self, params, learning_rate, reg):
        super().__init__()
        self.net = TwoLayerNet(D, H, C)
        with torch.no_grad():  # our (D, H) layout into nn.Linear's (H, D)
            for layer, W, b in ((self.net.fc1, "W1", "b1"), (self.net.fc2, "W2", "b2")):
                layer.weight.copy_(torch.from_numpy(params[W].T))
                layer.bias.copy_(torch.from_numpy(params[b]))
        self.learning_rate, self.reg = learning_rate, reg
        self.loss_history = []

    def training_step(self, batch, batch_idx):
        X, y = batch  # (B, D), (B,)
        loss = F.cross_entropy(self.net(X), y) + self.reg * (
            torch.sum(self.net.fc1.weight ** 2) + torch.sum(self.net.fc2.weight ** 2))
        self.loss_history.append(loss.item())
        return loss  # Lightning: opt.zero_grad(); loss.backward(); opt.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate)
# [/bridge:ladder-lightning-auto]


def train(X, y, params, batches, learning_rate, reg):
    """SGD over the given batches from ``params``. Returns the loss history, one float per step."""
    data = TensorDataset(torch.from_numpy(X).to(dtype), torch.from_numpy(y))  # (N, D), (N,) int64
    loader = DataLoader(data, batch_sampler=batches.tolist())  # one batch per index list, in order
    module = TwoLayerNetModule(params, learning_rate, reg)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return module.loss_history


if __name__ == "__main__":
    X, y, params, batches = make_problem()
    loss_history = train(X, y, params, batches, learning_rate, reg)
    print("loss every 5 steps:", " ".join(f"{loss:.6f}" for loss in loss_history[::5]))
