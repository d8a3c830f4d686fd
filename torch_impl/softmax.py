"""Softmax loss and its gradient, as derived in the article, in PyTorch with hand-written gradients.

Usage::

    loss, dW = softmax_loss_vectorized(W, X, y, reg)       # by hand, no autograd
    loss = SoftmaxLoss.apply(W, X, y, reg); loss.backward()  # the same gradient through autograd

The derivation, numbered as the docstrings below refer to it:

    (1) S = X W                                  scores, (N, C)
    (2) dL/dW = X^T dL/dS                        chain rule through the matrix product
    (3) L_i depends only on S_i                  so dL/dS is computed row by row
    (4) dL_i/dS_i = softmax(S_i) - onehot(y_i)
    (5) dW = X^T (P - Y) / N + 2 reg W           P: softmax rows, Y: one-hot rows

Numerical note: unlike the NumPy reference, the loss is computed in the stable log-sum-exp form
``log(sum(exp(s - m))) - (s_y - m)``, which stays finite in float32 for any logit spread. Everything runs on the
device and in the dtype of the inputs.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from torch_impl.backward_ops import reg_plus_mm, scaled_dscores, upstream_scale
from torch_impl.validation import check_softmax_inputs


def softmax_loss_naive(W, X, y, reg):
    """Softmax loss with explicit loops.

    W: (D, C) weights; X: (N, D) data; y: (N,) integer labels in [0, C); reg: L2 strength.
    Returns (loss, dW): a 0-d tensor and (D, C).
    """
    check_softmax_inputs(W, X, y, reg)
    y = y.long()  # any integer dtype: indexing needs int64
    loss = torch.zeros((), dtype=W.dtype, device=W.device)
    dW = torch.zeros_like(W)
    num_train = X.shape[0]
    num_classes = W.shape[1]
    for i in range(num_train):
        scores = X[i] @ W  # (C,)  formula (1), one row
        scores = scores - torch.max(scores)  # max subtraction: exp cannot overflow
        probs = torch.exp(scores) / torch.sum(torch.exp(scores))  # (C,)  softmax(S_i)
        loss += torch.log(torch.sum(torch.exp(scores))) - scores[y[i]]  # stable -log(probs[y_i])
        for j in range(num_classes):
            # formula (4): dL_i/dS_ij = p_j - [j == y_i]; formula (2): dW[:, j] += X_i * dL_i/dS_ij
            dW[:, j] += (probs[j] - (j == y[i]).to(W.dtype)) * X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * torch.sum(W * W)
    dW += 2 * reg * W  # formula (5), regularization part
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """Softmax loss, no explicit loops.

    W: (D, C) weights; X: (N, D) data; y: (N,) integer labels in [0, C); reg: L2 strength.
    Returns (loss, dW): a 0-d tensor and (D, C).
    """
    check_softmax_inputs(W, X, y, reg)
    y = y.long()  # any integer dtype: indexing needs int64
    num_train = X.shape[0]
    # [bridge:softmax-scores]
    scores = X @ W  # (N, C)  formula (1)
    # [/bridge:softmax-scores]
    # [bridge:softmax-probs]
    scores = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    exp_scores = torch.exp(scores)  # (N, C)
    sum_exp = torch.sum(exp_scores, dim=1, keepdim=True)  # (N, 1)
    probs = exp_scores / sum_exp  # (N, C)  P = softmax(S)
    # [/bridge:softmax-probs]
    # [bridge:softmax-loss]
    loss = torch.mean(torch.log(sum_exp[:, 0]) - scores[torch.arange(num_train), y]) + reg * torch.sum(W * W)
    # [/bridge:softmax-loss]
    # [bridge:softmax-dscores]
    dscores = probs.clone()  # (N, C)  formula (4): P - Y
    dscores[torch.arange(num_train), y] -= 1
    dscores /= num_train
    # [/bridge:softmax-dscores]
    # [bridge:softmax-dW]
    dW = X.T @ dscores + 2 * reg * W  # (D, C)  formula (5): dW = X^T (P - Y) / N + 2 reg W
    # [/bridge:softmax-dW]
    return loss, dW


class SoftmaxLoss(torch.autograd.Function):
    """``SoftmaxLoss.apply(W, X, y, reg)`` -> loss; ``loss.backward()`` fills ``W.grad`` with formula (5).

    W: (D, C); X: (N, D); y: (N,) any integer dtype, in [0, C); reg: float. The same math as softmax_loss_vectorized
    (tests/test_fast_paths.py proves them equal), arranged for speed: forward computes the loss and saves X and
    log P; backward computes ``g (X^T dS + 2 reg W)``, g the upstream gradient, as a single addmm.
    Only W gets a gradient: X, y and reg are data.
    """

    @staticmethod
    def forward(ctx, W, X, y, reg):
        check_softmax_inputs(W, X, y, reg, values=False)  # metadata only: no host sync
        y = y.long()  # any integer dtype: nll_loss and scatter need int64 (no copy when it is)
        scores = (X @ W).to(W.dtype)  # (N, C)  formula (1); under autocast, the softmax runs in W's dtype
        shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
        log_probs = shifted.sub_(torch.exp(shifted).sum(1, keepdim=True).log_())  # (N, C)  log P, log-sum-exp
        loss = F.nll_loss(log_probs, y).add_(torch.dot(W.reshape(-1), W.reshape(-1)), alpha=reg)  # + reg ||W||^2
        ctx.save_for_backward(W, X, y, log_probs)
        ctx.reg = reg
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        W, X, y, log_probs = ctx.saved_tensors
        if log_probs.dtype != W.dtype:  # forward ran under autocast: finish in the parameter's dtype
            X, log_probs = X.to(W.dtype), log_probs.to(W.dtype)
        g = upstream_scale(grad_loss)
        dS = scaled_dscores(log_probs, y, g)  # (N, C)  formula (4): dS = g (P - Y) / N
        return reg_plus_mm(W, X.T, dS, 2 * ctx.reg, g), None, None, None  # (D, C)  formula (5)
