"""Rung 7: our manual-gradient LightningModule: rung 4's idea (the formulas as an autograd Function) in Lightning.

Run: python docs/ladder/rung7_manual.py. ``automatic_optimization = False`` hands the step back to us:
``self.optimizers()`` gives the optimizer, and ``self.manual_backward(loss)`` is ``loss.backward()`` plus what
Lightning adds (DDP's gradient sync, the AMP scaler). The net is torch_impl's TwoLayerNet, in our (D, H) layout,
and the loss torch_impl's TwoLayerLoss, whose backward is the article's formulas. train/module.py is this module
grown up: step blocks, the lr schedule, metrics, the divergence guard.
"""
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from torch_impl.neural_net import TwoLayerLoss, TwoLayerNet

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


# [bridge:ladder-lightning-manual]
class TwoLayerNetModule(L.LightningModule):
    """torch_impl's net and TwoLayerLoss; we call backward and step ourselves."""

    def __init__(self, params, learning_rate, reg):
        super().__init__()
        self.automatic_optimization = False  # training_step does zero_grad, backward and step
        self.net = TwoLayerNet.from_numpy(params, dtype=dtype)  # W1 (D, H): our layout
        self.learning_rate, self.reg = learning_rate, reg
        self.loss_history = []

    def training_step(self, batch, batch_idx):
        X, y = batch  # (B, D), (B,)
        opt = self.optimizers()
        loss = TwoLayerLoss.apply(X, y, *self.net.params.values(), self.reg)  # backward: our formulas
        opt.zero_grad()
        self.manual_backward(loss)  # loss.backward() through Lightning: fills W1.grad ... b2.grad
        opt.step()  # W -= lr * dW
        self.loss_history.append(loss.item())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate)
# [/bridge:ladder-lightning-manual]


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
