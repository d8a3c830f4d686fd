"""A linear classifier trained with minibatch SGD, and its softmax version (cs231n linear_classifier.py).

Usage::

    clf = Softmax()
    loss_history = clf.train(X_train, y_train, learning_rate=1e-7, reg=2.5e4, num_iters=1500)
    y_pred = clf.predict(X_val)
"""
import numpy as np

from reference_numpy.softmax import softmax_loss_vectorized


class LinearClassifier:
    """Holds W: (D, C); subclasses define ``loss``."""

    def __init__(self):
        self.W = None

    def train(self, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False):
        """X: (N, D), y: (N,) labels in [0, C). Returns the list of per-iteration losses."""
        num_train, dim = X.shape
        num_classes = np.max(y) + 1  # assume y takes values 0...K-1
        if self.W is None:
            self.W = 0.001 * np.random.randn(dim, num_classes)  # (D, C)

        loss_history = []
        for it in range(num_iters):
            indices = np.random.choice(num_train, batch_size)  # with replacement
            X_batch = X[indices]  # (B, D)
            y_batch = y[indices]  # (B,)
            loss, grad = self.loss(X_batch, y_batch, reg)
            loss_history.append(loss)
            self.W -= learning_rate * grad  # the SGD update
            if verbose and it % 100 == 0:
                print(f"iteration {it} / {num_iters}: loss {loss:f}")
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
