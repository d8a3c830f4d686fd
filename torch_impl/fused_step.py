"""One whole SGD step of the two-layer net with the update fused into the gradient GEMMs: the "fused" step path.

Usage::

    loss = fused_sgd_step(X_b, y_b, net.W1, net.b1, net.W2, net.b2, reg=0.25, lr=1e-4)  # updates W in place
    loss = fused_sgd_step(..., momentum=0.9, buffers=[v_W1, v_b1, v_W2, v_b2])           # SGD with momentum

It is TwoLayerLoss's forward and backward followed by torch.optim.SGD's update, rearranged so that no weight
gradient ever exists as a tensor. SGD's update with formula (5) inside it is

    W - lr (A^T dS + 2 reg W)  =  (1 - 2 lr reg) W - lr A^T dS

(A, dS = X, dH1 for layer 1 and H1, dS2 for layer 2), which is one ``W.addmm_(A.T, dS, beta=1 - 2 lr reg,
alpha=-lr)``: a single pass over W, where the autograd path makes three (the gradient's addmm into a new
tensor, the optimizer reading it and writing W) and adds the autograd engine, the optimizer and zero_grad on
top. With momentum the gradient goes into the momentum buffer instead (v = momentum v + 2 reg W + A^T dS: one
add and one addmm), then W -= lr v; ``buffers`` are torch.optim.SGD's ``momentum_buffer`` tensors, so the
optimizer's state (and a checkpoint of it) is the same whichever path ran.

No autograd, so no ``.grad``: DDP's all-reduce, a GradScaler, gradient clipping and callbacks that read
gradients see nothing of this step. The forward and the formulas are TwoLayerLoss's own pieces
(torch_impl/backward_ops.py); tests/test_step_paths.py proves the step equal to TwoLayerLoss.apply, backward and
torch.optim.SGD. fit runs it as its "fused" step path, only where nothing listens to ``.grad`` (train/step_blocks.py).
"""
import math

import torch

from torch_impl.backward_ops import relu_backward, scaled_dscores, two_layer_forward
from torch_impl.validation import check_two_layer_inputs


@torch.no_grad()
def fused_sgd_step(X, y, W1, b1, W2, b2, reg, lr, momentum=0.0, buffers=None, finite_only=False):
    """One SGD step on the batch X: (N, D), y: (N,) int64 in [0, C); W1 (D, H), b1 (H,), W2 (H, C), b2 (C,) in place.

    reg: L2 strength; lr: learning rate; momentum: in [0, 1), with ``buffers`` the four momentum buffers (shaped
    like W1, b1, W2, b2; zeros before the first step). finite_only: leave the parameters untouched when the loss is
    NaN/Inf (reads the loss: free on a CPU, a host sync on an accelerator). Returns the 0-d loss before the update.
    """
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg, values=False)  # metadata only: no host sync
    if momentum and (buffers is None or len(buffers) != 4):
        raise ValueError(f"buffers: got {buffers!r} with momentum={momentum}; expected 4 momentum buffers, shaped "
                         "like W1, b1, W2, b2")
    loss, H1, log_probs = two_layer_forward(X, y, W1, b1, W2, b2, reg)  # TwoLayerLoss.forward: 0-d, (N, H), (N, C)
    if finite_only and not math.isfinite(loss):  # a Python float read: ~0.3 us on a CPU, 5 us as torch.isfinite
        return loss
    # backward: the formulas, everything taken before any parameter changes
    dS2 = scaled_dscores(log_probs, y, 1.0)  # (N, C)  formula (4): dS2 = (P - Y) / N
    dH1 = relu_backward(dS2, W2, H1)  # (N, H)  dS2 W2^T masked by (S1 > 0)
    layers = ((W1, b1, X, dH1), (W2, b2, H1, dS2))  # (W, b, A, dS): dW = A^T dS + 2 reg W, db = column sums of dS
    if not momentum:
        # [bridge:fused-update]
        for W, b, A, dS in layers:
            W.addmm_(A.T, dS, beta=1 - 2 * lr * reg, alpha=-lr)  # W -= lr (A^T dS + 2 reg W), one pass
            b.sub_(dS.sum(0), alpha=lr)  # b -= lr db
        # [/bridge:fused-update]
        return loss
    for (W, b, A, dS), vW, vb in zip(layers, buffers[0::2], buffers[1::2]):
        vW.mul_(momentum).add_(W, alpha=2 * reg).addmm_(A.T, dS)  # v = momentum v + (A^T dS + 2 reg W)
        vb.mul_(momentum).add_(dS.sum(0))  # v_b = momentum v_b + db
        W.sub_(vW, alpha=lr)  # W -= lr v
        b.sub_(vb, alpha=lr)
    return loss
