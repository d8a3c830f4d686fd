"""Building blocks of the fast SGD step: fused gradient pieces for the autograd Functions and a one-pass optimizer.

Usage::

    opt = make_sgd(net.parameters(), lr=1e-4, momentum=0.0)
    loss = TwoLayerLoss.apply(X_b, y_b, W1, b1, W2, b2, reg); loss.backward()  # fills .grad
    opt.step(); opt.zero_grad()                                                # W -= lr dW in place

SoftmaxLoss (torch_impl/softmax.py) and TwoLayerLoss (torch_impl/neural_net.py) compute their gradients in
``backward`` with these helpers: the upstream gradient g is folded into the matrix products (a Python float on
CPU, a 0-d tensor on CUDA so that nothing waits for the device), and each weight gradient
``g (X^T dS + 2 reg W)`` is a single addmm, one pass over W. make_sgd keeps the update as cheap: torch.optim.SGD's
fused kernel, or its foreach path where no fused kernel exists; ``zero_grad`` sets the grads to None, so the next
backward hands its fresh gradient tensors to ``.grad`` without a copy. benchmarks/bench_step.py measures the result.
"""
import torch

FUSED_SGD_DEVICES = ("cpu", "cuda")  # devices with a fused SGD kernel in torch >= 2.4


def upstream_scale(grad_loss):
    """The upstream gradient of a 0-d loss: a Python float on CPU (reading it is free), else the 0-d tensor."""
    return float(grad_loss) if grad_loss.device.type == "cpu" else grad_loss


def scaled_dscores(log_probs, y, g):
    """Formula (4) divided by N and times g: dS = g (P - Y) / N.

    log_probs: (N, C) log softmax of the scores; y: (N,) int64 labels; g: float or 0-d tensor. Returns (N, C).
    """
    dS = torch.exp(log_probs)  # (N, C)  P
    dS.scatter_(1, y.unsqueeze(1), -1.0, reduce="add")  # (N, C)  P - Y: subtract 1 at each row's label
    return dS.mul_(g / log_probs.shape[0])  # (N, C)


def reg_plus_mm(W, A, B, two_reg, g):
    """Formula (5) in one addmm: A B + 2 reg g W, where A or B already carries the factor g.

    W: (P, Q); A: (P, K); B: (K, Q); two_reg: 2 reg; g: float (folded into addmm's beta) or 0-d tensor (one extra
    small kernel instead of a host sync). Returns a new (P, Q) tensor.
    """
    if isinstance(g, float):
        return torch.addmm(W, A, B, beta=two_reg * g)  # (P, Q)  beta W + A B
    return torch.mul(W, two_reg * g).addmm_(A, B)  # (P, Q)


def make_sgd(params, lr, momentum=0.0):
    """torch.optim.SGD over ``params`` (an iterable of tensors on one device) with the fastest update available.

    lr: learning rate (> 0); momentum: in [0, 1). The update formula is plain SGD's, W -= lr (dW + momentum ...).
    """
    params = list(params)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and devices <= set(FUSED_SGD_DEVICES) and all(p.is_floating_point() for p in params)
    if fused:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, fused=True)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
