"""A linear classifier trained with minibatch SGD, and its softmax version, in PyTorch (cs231n linear_classifier.py).

Usage::

    clf = Softmax()  # W in torch's default dtype, float32; Softmax(dtype=torch.float64) to compare with NumPy
    loss_history = clf.train(X_train, y_train, learning_rate=1e-7, reg=2.5e4, num_iters=1500)
    y_pred = clf.predict(X_val)

The twin of reference_numpy/linear_classifier.py, name for name; the loss is torch_impl/softmax.py's, gradient by
hand, so no autograd graph is built. X and y may be tensors or NumPy arrays (the dtype rule of
torch_impl/neural_net.py: X in W's dtype and on its device, labels as int64). A diverging run goes on as cs231n's
does: NaN/Inf losses are recorded, with one DivergenceWarning at the first.
"""
import math

import torch

from reference_numpy.validation import warn_diverged
from torch_impl.softmax import softmax_loss_vectorized
from torch_impl.validation import as_features, as_labels, check_labels, check_split, check_tensor, skip_value_checks


class LinearClassifier:
    """Holds W: (D, C), made by the first ``train`` in ``dtype`` on ``device``; subclasses define ``loss``."""

    def __init__(self, dtype=None, device=None):
        """dtype: None for torch's default (float32); device: None for the default device."""
        self.W = None
        self.dtype, self.device = dtype, device

    def train(self, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False,
              sample_indices=None, generator=None):
        """X: (N, D), y: (N,) labels in [0, C). Returns the list of per-iteration losses (Python floats).

        Batches are drawn with replacement: ``torch.randint(num_train, (batch_size,))``, from ``generator`` (on X's
        device) when given. ``sample_indices`` (optional, not in cs231n) is a callable
        ``it -> (batch_size,) int array`` that replaces that draw, so that another implementation can be driven
        with the same batch sequence.
        """
        like = self.W if self.W is not None else torch.empty(0, dtype=self.dtype, device=self.device)
        X, y = as_features(X, like), as_labels(y, like.device)
        check_tensor("X", X, 2, "(N, D)")
        check_labels("y", y, X.shape[0], X.device)
        num_train, dim = X.shape
        if self.W is not None:
            num_classes = self.W.shape[1]
        else:
            num_classes = max(int(y.max()) + 1, 1) if y.numel() else 1  # assume y takes values 0...K-1
        check_split("train", X, y, num_classes)  # the values, once: the steps below check only metadata
        if self.W is None:
            self.W = 0.001 * torch.randn(dim, num_classes, dtype=X.dtype, device=X.device, generator=generator)

        diverged_at = None  # (iteration, loss, learning_rate) of the first NaN/Inf loss: one warning
        loss_history = []
        with skip_value_checks():  # a diverged W holds NaN: go on as cs231n's code does
            for it in range(num_iters):
                if sample_indices is None:
                    indices = torch.randint(num_train, (batch_size,), device=X.device, generator=generator)
                else:
                    indices = torch.as_tensor(sample_indices(it), device=X.device)
                X_batch = X[indices]  # (B, D)
                y_batch = y[indices]  # (B,)
                loss, grad = self.loss(X_batch, y_batch, reg)
                loss_history.append(float(loss))
                if diverged_at is None and not math.isfinite(loss_history[-1]):
                    diverged_at = (it, loss_history[-1], learning_rate)
                self.W -= learning_rate * grad  # the SGD update
                if verbose and it % 100 == 0:
                    print(f"iteration {it} / {num_iters}: loss {loss_history[-1]:f}")
        if diverged_at is not None:
            warn_diverged(f"{type(self).__name__}.train", *diverged_at, reg)
        return loss_history

    def predict(self, X):
        """X: (N, D), tensor or NumPy. Returns (N,) int64 predicted class indices on W's device."""
        return torch.argmax(as_features(X, self.W) @ self.W, dim=1)

    def loss(self, X_batch, y_batch, reg):
        """X_batch: (B, D), y_batch: (B,). Returns (loss, dW)."""
        raise NotImplementedError("subclasses define loss(X_batch, y_batch, reg)")


class Softmax(LinearClassifier):
    """A linear classifier with the softmax (cross-entropy) loss."""

    def loss(self, X_batch, y_batch, reg):
        X_batch, y_batch = as_features(X_batch, self.W), as_labels(y_batch, self.W.device)
        return softmax_loss_vectorized(self.W, X_batch, y_batch, reg)
