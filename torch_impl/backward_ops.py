"""The pieces the autograd Functions and the fused step share: the stable two-layer forward and the backward formulas.

Usage::

    loss, H1, log_probs = two_layer_forward(X, y, W1, b1, W2, b2, reg)   # forward, saving what backward needs
    dS2 = scaled_dscores(log_probs, y, g)                                 # formula (4), times the upstream g
    dW2 = reg_plus_mm(W2, H1.T, dS2, 2 * reg, g)                          # formula (5) in one addmm
    dH1 = relu_backward(dS2, W2, H1)                                      # through W2 and the ReLU mask

TwoLayerLoss (torch_impl/neural_net.py), SoftmaxLoss (torch_impl/softmax.py) and fused_sgd_step
(torch_impl/fused_step.py) are built from these, so the readable mirror's formulas exist once more here, in their
fast arrangement, and nowhere else. The upstream gradient g is folded into the matrix products (a Python float on
a CPU, a 0-d tensor on an accelerator so that nothing waits for the device), and each weight gradient
``g (A^T dS + 2 reg W)`` is a single addmm, one pass over W.
"""
import torch
import torch.nn.functional as F


def upstream_scale(grad_loss):
    """The upstream gradient of a 0-d loss: a Python float on CPU (reading it is free), else the 0-d tensor."""
    return float(grad_loss) if grad_loss.device.type == "cpu" else grad_loss


def two_layer_forward(X, y, W1, b1, W2, b2, reg):
    """The two-layer loss in the stable log-sum-exp form, and what its backward needs.

    X: (N, D); y: (N,) int64 in [0, C); W1: (D, H); b1: (H,); W2: (H, C); b2: (C,); reg: L2 strength.
    Returns (loss 0-d, H1 (N, H) the ReLU output, log_probs (N, C) log P in W2's dtype).
    """
    S1 = torch.addmm(b1, X, W1)  # (N, H)  S1 = X W1 + b1
    H1 = S1.clamp_min_(0)  # (N, H)  ReLU in place: H1 > 0 exactly where S1 > 0, the mask backward needs
    scores = torch.addmm(b2, H1, W2).to(W2.dtype)  # (N, C)  S2 = H1 W2 + b2; autocast: softmax in W's dtype
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    log_probs = shifted.sub_(torch.exp(shifted).sum(1, keepdim=True).log_())  # (N, C)  log P, log-sum-exp
    l2 = torch.dot(W1.reshape(-1), W1.reshape(-1)).add_(torch.dot(W2.reshape(-1), W2.reshape(-1)))
    loss = F.nll_loss(log_probs, y).add_(l2, alpha=reg)  # mean -log P[y] + reg (||W1||^2 + ||W2||^2)
    return loss, H1, log_probs


def scaled_dscores(log_probs, y, g):
    """Formula (4) divided by N and times g: dS = g (P - Y) / N.

    log_probs: (N, C) log softmax of the scores; y: (N,) int64 labels; g: float or 0-d tensor. Returns (N, C).
    """
    dS = torch.exp(log_probs)  # (N, C)  P
    dS.scatter_(1, y.unsqueeze(1), -1.0, reduce="add")  # (N, C)  P - Y: subtract 1 at each row's label
    return dS.mul_(g / log_probs.shape[0])  # (N, C)


def relu_backward(dS2, W2, H1):
    """Formula (2) through W2, then the ReLU mask: dH1 = dS2 W2^T where S1 > 0. dS2: (N, C); W2: (H, C); H1: (N, H).
    Returns (N, H)."""
    return torch.ops.aten.threshold_backward(dS2 @ W2.T, H1, 0)  # (N, H)  zero where H1 = max(0, S1) is 0


def reg_plus_mm(W, A, B, two_reg, g):
    """Formula (5) in one addmm: A B + 2 reg g W, where A or B already carries the factor g.

    W: (P, Q); A: (P, K); B: (K, Q); two_reg: 2 reg; g: float (folded into addmm's beta) or 0-d tensor (one extra
    small kernel instead of a host sync). Returns a new (P, Q) tensor.
    """
    if isinstance(g, float):
        return torch.addmm(W, A, B, beta=two_reg * g)  # (P, Q)  beta W + A B
    return torch.mul(W, two_reg * g).addmm_(A, B)  # (P, Q)
