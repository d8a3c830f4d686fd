"""The plain-autograd twins of the hand-written losses, built from standard torch ops (``F.cross_entropy``).

They are what the hand-written gradients are proven equal to (tests/, ``python -m train verify``) and what
training uses with ``grad_mode: autograd``.

Usage::

    loss = two_layer_loss_autograd(X, y, W1, b1, W2, b2, reg); loss.backward()
    loss, grads = two_layer_loss_and_grads_autograd(X, y, W1, b1, W2, b2, reg)
"""
import torch
import torch.nn.functional as F


# [bridge:autograd-softmax]
def softmax_loss_autograd(W, X, y, reg):
    """W: (D, C), X: (N, D), y: (N,). Returns the differentiable 0-d loss: mean cross-entropy + reg ||W||^2."""
    return F.cross_entropy(X @ W, y) + reg * torch.sum(W * W)
# [/bridge:autograd-softmax]


# [bridge:autograd-two-layer]
def two_layer_loss_autograd(X, y, W1, b1, W2, b2, reg):
    """X: (N, D), y: (N,), W1: (D, H), b1: (H,), W2: (H, C), b2: (C,). Returns the differentiable 0-d loss."""
    scores = F.relu(X @ W1 + b1) @ W2 + b2  # (N, C)
    return F.cross_entropy(scores, y) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))
# [/bridge:autograd-two-layer]


def _leaf(t):
    """A detached copy that requires grad, so the caller's tensor is never touched."""
    return t.detach().clone().requires_grad_(True)


def softmax_loss_and_grad_autograd(W, X, y, reg):
    """Same signature and return as softmax_loss_vectorized: (loss, dW), with dW found by autograd."""
    W = _leaf(W)
    with torch.enable_grad():
        loss = softmax_loss_autograd(W, X, y, reg)
        (dW,) = torch.autograd.grad(loss, [W])
    return loss.detach(), dW


# [bridge:autograd-grads]
def two_layer_loss_and_grads_autograd(X, y, W1, b1, W2, b2, reg):
    """Same signature and return as two_layer_loss: (loss, grads) with keys W1, b1, W2, b2, found by autograd."""
    leaves = {"W1": _leaf(W1), "b1": _leaf(b1), "W2": _leaf(W2), "b2": _leaf(b2)}
    with torch.enable_grad():
        loss = two_layer_loss_autograd(X, y, *leaves.values(), reg)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))
# [/bridge:autograd-grads]
