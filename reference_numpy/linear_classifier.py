"""A linear classifier trained with minibatch SGD, and its softmax version (cs231n linear_classifier.py).

Usage::

    clf = Softmax()
    loss_history = clf.train(X_train, y_train, learning_rate=1e-7, reg=2.5e4, num_iters=1500)
    y_pred = clf.predict(X_val)

A diverging run goes on as cs231n's does: NaN/Inf losses are recorded, with one DivergenceWarning at the first.
"""
import warnings

import numpy as np

from reference_numpy.softmax import softmax_loss_vectorized
from reference_numpy.validation import DivergenceWarning, warn_diverged


class LinearClassifier:
    """Holds W: (D, C); subclasses define ``loss``."""

    def __init__(self):
        self.W = None

    def train(self, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False,
              sample_indices=None):
        """X: (N, D), y: (N,) labels in [0, C). Returns the list of per-iteration losses.

        Batches are drawn with replacement: ``np.random.choice(num_train, batch_size)``. ``sample_indices``
        (optional, not in cs231n) is a callable ``it -> (batch_size,) int array`` that replaces that draw, so that
        another implementation can be driven with the same batch sequence.
        """
        num_train, dim = X.shape
        num_classes = np.max(y) + 1  # assume y takes values 0...K-1
        if self.W is None:
            self.W = 0.001 * np.random.randn(dim, num_classes)  # (D, C)

        diverged_at = None  # (iteration, loss, learning_rate) of the first NaN/Inf loss: one warning
        loss_history = []
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", DivergenceWarning)  # per call; the run warns once, below
            for it in range(num_iters):
                if sample_indices is None:
                    indices = np.random.choice(num_train, batch_size)  # with replacement
                else:
                    indices = np.asarray(sample_indices(it))
                X_batch = X[indices]  # (B, D)
                y_batch = y[indices]  # (B,)
                loss, grad = self.loss(X_batch, y_batch, reg)
                loss_history.append(loss)
                if diverged_at is None and not np.isfinite(loss):
                    diverged_at = (it, loss, learning_rate)
                self.W -= learning_rate * grad  # the SGD update
                if verbose and it % 100 == 0:
                    print(f"iteration {it} / {num_iters}: loss {loss:f}")
        if diverged_at is not None:
            warn_diverged(f"{type(self).__name__}.train", *diverged_at, reg)
        return loss_history

    def predict(self, X):
        """X: (N, D). Returns (N,) predicted class indices."""
        return np.argmax(X.dot(self.W), axis=1)

    def loss(self, X_batch, y_batch, reg):
        """X_batch: (B, D), y_batch: (B,). Returns (loss, dW)."""
        raise NotImplementedError("subclasses define loss(X_batch, y_batch, reg)")


class Softmax(LinearClassifier):
    """A linear classifier with the softmax (cross-entropy) loss."""

    def loss(self, X_batch, y_batch, reg):
        return softmax_loss_vectorized(self.W, X_batch, y_batch, reg)
