"""Rung 9: rung 8 on a folder of image files: torchvision's ImageFolder Dataset over root/train/<class>/*.jpg|png.

Run: python docs/ladder/rung9_imagefolder.py ROOT [DIR]. Only ``load_data`` and the settings differ from rung 8
(``diff`` them). The images are decoded, resized to image_size, flattened channel by channel (CHW) and the train
split's mean image is subtracted; the last num_val images of one fixed shuffle are val. That is fit's preprocessing
without PCA whitening and augmented views, so it prints the numbers of
``python -m train fit --data train.image_data.ImageFolderDataModule --data.root ROOT --trainer.max_epochs 5``,
cs231n's settings (tests/test_ladder.py). It saves the weights to DIR/two_layer_net.pt.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

hidden_size, std, reg, learning_rate, learning_rate_decay = 50, 1e-4, 0.25, 1e-4, 0.95  # fit's defaults, cs231n's
batch_size, num_epochs, seed, init_seed, num_val, image_size = 200, 5, 0, 0, 1000, 32
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# [bridge:ladder-imagefolder-data]
def load_data(root, dtype):
    """Train and val Datasets of (x (3 S S,), y) pairs from root/train, minus the train split's mean image; and the
    class names (the sorted folder names)."""
    pixels = v2.Compose([v2.Resize((image_size, image_size)), v2.PILToTensor()])  # PIL's bilinear; (3, S, S) uint8
    images = datasets.ImageFolder(os.path.join(root, "train"), transform=pixels)
    order = np.random.default_rng(0).permutation(len(images))  # fit's fixed shuffle (the files are listed by class)
    train_rows, val_rows = order[:-num_val], order[-num_val:]
    sums = (X.double().sum(dim=0) for X, _ in DataLoader(Subset(images, train_rows), batch_size=1000))
    mean = (sum(sums) / len(train_rows)).float()  # (3, S, S)  the train split's mean image
    images.transform = v2.Compose([pixels, lambda x: (x.float() - mean).flatten().to(dtype)])  # (3 S S,) CHW
    return Subset(images, train_rows), Subset(images, val_rows), images.classes
# [/bridge:ladder-imagefolder-data]


def epoch_batches(epoch, num_examples):
    """fit's batches of one epoch: ceil(N / B) index arrays drawn with replacement (cs231n's np.random.choice(N, B)),
    batch b from a generator keyed by (seed, epoch, b) (train/batches.py, batch_indices)."""
    return [np.random.default_rng([seed, epoch, b]).integers(0, num_examples, batch_size)
            for b in range(math.ceil(num_examples / batch_size))]


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


def train(root, folder=".", dtype=torch.float32):
    """Train from fit's start, validate every epoch, save the weights and load them into a new net. Returns the net."""
    train_data, val_data, classes = load_data(root, dtype)
    val_loader = DataLoader(val_data, batch_size=1000)  # in order
    model = TwoLayerNet(len(train_data[0][0]), hidden_size, len(classes)).to(dtype)
    init_like_fit(model)
    model.to(device)  # move the parameters before the optimizer is built on them
    print(f"training on {device} in {dtype}")
    opt = torch.optim.SGD(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=learning_rate_decay)  # lr *= decay per epoch
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
        print(f"epoch {epoch:2d}  train/loss {loss.item():.4f}  val/loss {val_loss:.4f}  val/acc {val_acc:.4f}")
    steps = num_epochs * len(epoch_batches(0, len(train_data)))
    print(f"final val/acc = {val_acc:.4f} after {steps} steps ({num_epochs} epochs)")

    path = os.path.join(folder, "two_layer_net.pt")
    torch.save(model.state_dict(), path + ".tmp")  # {"fc1.weight": (H, D), "fc1.bias": (H,), ...}
    os.replace(path + ".tmp", path)  # atomic: a crash never leaves half a file under the real name
    restored = TwoLayerNet(len(train_data[0][0]), hidden_size, len(classes)).to(dtype).to(device)
    restored.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    print(f"loaded {path}: val/acc = {evaluate(restored, val_loader)[1]:.4f}")
    return model


if __name__ == "__main__":
    train(*sys.argv[1:3])
