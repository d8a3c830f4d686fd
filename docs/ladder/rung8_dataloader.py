"""Rung 8: the net as a PyTorch user writes it, on real data: a Dataset and a DataLoader over the 8x8 digits,
``.to(device)``, a train loop and a validation loop, and ``state_dict`` save and load.

Run: python docs/ladder/rung8_dataloader.py [DIR]. It trains what ``python -m train fit`` trains (configs/digits.yaml):
the same split and preprocessing, initial weights, batches (drawn with replacement) and lr decay, so it prints fit's
numbers, ending ``final val/acc = 0.9800 after 175 steps (25 epochs)``. It saves the weights to DIR/two_layer_net.pt.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

hidden_size, std, reg, learning_rate, learning_rate_decay = 100, 1e-4, 1e-3, 0.2, 0.95  # configs/digits.yaml
batch_size, num_epochs, seed, init_seed, num_val, num_test = 200, 25, 0, 0, 250, 250
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# [bridge:ladder-dataloader-data]
def load_data(dtype):
    """Train and val Datasets of (x (64,), y) pairs, minus the train split's mean image; and the class names."""
    digits = load_digits()
    X, y = torch.as_tensor(digits.data, dtype=torch.float64), torch.as_tensor(digits.target)  # (1797, 64), (1797,)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(X)))  # fit's fixed split
    train_rows, val_rows = order[:-num_val - num_test], order[-num_val - num_test:-num_test]
    mean = X[train_rows].mean(dim=0)  # (64,)  the train split's mean image, in float64
    return (TensorDataset((X[train_rows] - mean).to(dtype), y[train_rows]),
            TensorDataset((X[val_rows] - mean).to(dtype), y[val_rows]), [str(d) for d in range(10)])
# [/bridge:ladder-dataloader-data]


# [bridge:ladder-dataloader-batches]
def epoch_batches(epoch, num_examples):
    """fit's batches of one epoch: ceil(N / B) index arrays drawn with replacement (cs231n's np.random.choice(N, B)),
    batch b from a generator keyed by (seed, epoch, b) (train/batches.py, batch_indices)."""
    return [np.random.default_rng([seed, epoch, b]).integers(0, num_examples, batch_size)
            for b in range(math.ceil(num_examples / batch_size))]
# [/bridge:ladder-dataloader-batches]


class TwoLayerNet(nn.Module):
    """affine - ReLU - affine; scores (N, C) from X (N, D)."""

    def __init__(self, D, H, C):
        super().__init__()
        self.fc1 = nn.Linear(D, H)  # fc1.weight: (H, D), our W1.T
        self.fc2 = nn.Linear(H, C)  # fc2.weight: (C, H), our W2.T

    def forward(self, X):
        return self.fc2(F.relu(self.fc1(X)))  # (N, C)


@torch.no_grad()
def init_like_fit(model):
    """fit's start: W1 = std * randn(D, H), then W2 = std * randn(H, C), from one seeded generator; biases 0."""
    generator = torch.Generator().manual_seed(init_seed)
    for layer in (model.fc1, model.fc2):
        layer.weight.copy_((std * torch.randn(layer.in_features, layer.out_features, generator=generator)).T)
        layer.bias.zero_()


def l2(model):
    return reg * (torch.sum(model.fc1.weight ** 2) + torch.sum(model.fc2.weight ** 2))  # the weights, not the biases


# [bridge:ladder-dataloader-eval]
@torch.no_grad()  # evaluation records no graph
def evaluate(model, loader):
    """(the training loss, the accuracy) over the loader's examples: fit's val/loss and val/acc."""
    model.eval()  # evaluation mode (what Dropout and BatchNorm need; this net has neither)
    loss_sum, correct = 0.0, 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        scores = model(X)  # (B, C)
        loss_sum += F.cross_entropy(scores, y, reduction="sum").item()
        correct += (scores.argmax(dim=1) == y).sum().item()
    return loss_sum / len(loader.dataset) + l2(model).item(), correct / len(loader.dataset)
# [/bridge:ladder-dataloader-eval]


def train(folder=".", dtype=torch.float32):
    """Train from fit's start, validate every epoch, save the weights and load them into a new net. Returns the net."""
    train_data, val_data, classes = load_data(dtype)
    val_loader = DataLoader(val_data, batch_size=1000)  # in order
    model = TwoLayerNet(len(train_data[0][0]), hidden_size, len(classes)).to(dtype)
    init_like_fit(model)
    model.to(device)  # move the parameters before the optimizer is built on them
    print(f"training on {device} in {dtype}")
    opt = torch.optim.SGD(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=learning_rate_decay)  # lr *= decay per epoch
    # [bridge:ladder-dataloader-loop]
    for epoch in range(num_epochs):
        model.train()  # training mode
        for X, y in DataLoader(train_data, batch_sampler=epoch_batches(epoch, len(train_data))):
            X, y = X.to(device), y.to(device)  # (B, D), (B,)  the batch goes where the model is
            loss = F.cross_entropy(model(X), y) + l2(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        val_loss, val_acc = evaluate(model, val_loader)
        # [/bridge:ladder-dataloader-loop]
        print(f"epoch {epoch:2d}  train/loss {loss.item():.4f}  val/loss {val_loss:.4f}  val/acc {val_acc:.4f}")
    steps = num_epochs * len(epoch_batches(0, len(train_data)))
    print(f"final val/acc = {val_acc:.4f} after {steps} steps ({num_epochs} epochs)")

    # [bridge:ladder-dataloader-state-dict]
    path = os.path.join(folder, "two_layer_net.pt")
    torch.save(model.state_dict(), path + ".tmp")  # {"fc1.weight": (H, D), "fc1.bias": (H,), ...}
    os.replace(path + ".tmp", path)  # atomic: a crash never leaves half a file under the real name
    restored = TwoLayerNet(len(train_data[0][0]), hidden_size, len(classes)).to(dtype).to(device)
    restored.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    print(f"loaded {path}: val/acc = {evaluate(restored, val_loader)[1]:.4f}")
    # [/bridge:ladder-dataloader-state-dict]
    return model


if __name__ == "__main__":
    train(*sys.argv[1:2])
