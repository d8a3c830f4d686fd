"""Softmax loss and its gradient, as derived in the article (cs231n assignment 1, softmax.py).

Usage::

    loss, dW = softmax_loss_vectorized(W, X, y, reg)

The derivation, numbered as the docstrings below refer to it:

    (1) S = X W                                  scores, (N, C)
    (2) dL/dW = X^T dL/dS                        chain rule through the matrix product
    (3) L_i depends only on S_i                  so dL/dS is computed row by row
    (4) dL_i/dS_i = softmax(S_i) - onehot(y_i)
    (5) dW = X^T (P - Y) / N + 2 reg W           P: softmax rows, Y: one-hot rows

Numerical note: this reference keeps the article's ``-log(softmax[y])``. After the max subtraction the largest
probability is 1, but the probability of the true class, about exp(-gap) for a score ``gap`` below the row
maximum, underflows to 0 once exp(-gap) is below half the smallest subnormal number: the loss is ``inf`` from a
gap of 745.13 in float64 and 103.97 in float32 (-ln of the smallest subnormal, 744.44 and 103.28, plus ln 2;
measured on a CPU with subnormals, tests/test_reference_numpy.py). Past -ln of the smallest normal number (708.40
and 87.34) the loss is finite but loses digits: relative error 3.4e-4 at gap 744 (float64), 1.7e-4 at 100 and
2.7e-3 at 103 (float32). Hardware that flushes subnormals to zero gives ``inf`` from those normal limits. The
gradient stays finite. The torch implementation uses the log-sum-exp form instead, which stays finite.
"""
import numpy as np

from reference_numpy.validation import check_softmax_inputs


def softmax_loss_naive(W, X, y, reg):
    """Softmax loss with explicit loops.

    W: (D, C) weights; X: (N, D) data; y: (N,) integer labels in [0, C); reg: L2 strength.
    Returns (loss, dW) with dW: (D, C).
    """
    check_softmax_inputs(W, X, y, reg)
    loss = 0.0
    dW = np.zeros_like(W)
    num_train = X.shape[0]
    num_classes = W.shape[1]
    for i in range(num_train):
        scores = X[i].dot(W)  # (C,)  formula (1), one row
        scores = scores - np.max(scores)  # max subtraction: exp cannot overflow
        probs = np.exp(scores) / np.sum(np.exp(scores))  # (C,)  softmax(S_i)
        loss += -np.log(probs[y[i]])
        for j in range(num_classes):
            # formula (4): dL_i/dS_ij = p_j - [j == y_i]; formula (2): dW[:, j] += X_i * dL_i/dS_ij
            dW[:, j] += (probs[j] - (j == y[i])) * X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W  # formula (5), regularization part
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """Softmax loss, no explicit loops.

    W: (D, C) weights; X: (N, D) data; y: (N,) integer labels in [0, C); reg: L2 strength.
    Returns (loss, dW) with dW: (D, C).
    """
    check_softmax_inputs(W, X, y, reg)
    num_train = X.shape[0]
    # [bridge:softmax-scores]
    scores = X.dot(W)  # (N, C)  formula (1)
    # [/bridge:softmax-scores]
    # [bridge:softmax-probs]
    scores = scores - np.max(scores, axis=1, keepdims=True)  # (N, C)  max subtraction
    exp_scores = np.exp(scores)  # (N, C)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)  # (N, C)  P = softmax(S)
    # [/bridge:softmax-probs]
    # [bridge:softmax-loss]
    loss = -np.mean(np.log(probs[np.arange(num_train), y])) + reg * np.sum(W * W)
    # [/bridge:softmax-loss]
    # [bridge:softmax-dscores]
    dscores = probs.copy()  # (N, C)  formula (4): P - Y
    dscores[np.arange(num_train), y] -= 1
    dscores /= num_train
    # [/bridge:softmax-dscores]
    # [bridge:softmax-dW]
    dW = X.T.dot(dscores) + 2 * reg * W  # (D, C)  formula (5): dW = X^T (P - Y) / N + 2 reg W
    # [/bridge:softmax-dW]
    return loss, dW
