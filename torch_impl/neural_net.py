"""A two-layer fully-connected net, affine - ReLU - affine - softmax, in PyTorch with hand-written gradients.

Usage::

    net = TwoLayerNet(input_size=3072, hidden_size=50, output_size=10)
    loss, grads = net.loss(X, y, reg=0.25)                       # by hand, no autograd
    loss = TwoLayerLoss.apply(X, y, *net.params.values(), 0.25)  # the same gradients through autograd
    loss.backward()                                              # fills net.W1.grad ... net.b2.grad

Backpropagation, with dS2 from formula (4) of torch_impl/softmax.py:

    S1 = X W1 + b1, H1 = max(0, S1), S2 = H1 W2 + b2
    dS2 = (P - Y) / N
    dW2 = H1^T dS2 + 2 reg W2          db2 = sum over rows of dS2
    dH1 = dS2 W2^T masked by (S1 > 0)
    dW1 = X^T dH1 + 2 reg W1           db1 = sum over rows of dH1

The loss uses the stable log-sum-exp form (see torch_impl/softmax.py). The parameters keep the NumPy layout
(W1: (D, H), not nn.Linear's (H, D)). The NumPy class's ``train`` is not mirrored here: nn.Module.train(mode)
switches training mode, and training is the Lightning module's job (train/module.py).

The dtype rule (the same in torch_impl/linear_classifier.py):

- A new net takes torch's default dtype, float32, as nn.Linear does: ``TwoLayerNet(D, H, C)``; pass
  ``dtype=torch.float64`` to compare with NumPy. A copy keeps its source's dtype, as ``torch.from_numpy`` does:
  ``from_numpy(params)`` the arrays' dtype, ``from_npz(path)`` float64 (the file's). ``dtype=`` overrides both.
- The net's methods ``loss``, ``forward`` (``net(X)``) and ``predict`` take X as a tensor or NumPy array of any
  real dtype and convert it to the net's dtype and device; labels y of any integer dtype, tensor or NumPy, become
  int64 on the net's device.
- The functions (two_layer_loss, TwoLayerLoss.apply) compute in the dtype they are given: X and the parameters
  must share one floating dtype and one device (torch_impl/validation.py names a mismatch); y may be any integer
  dtype and is converted to int64 where indexing and nll_loss need it.
"""
import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from reference_numpy.neural_net import PARAM_NAMES  # the order of every two-layer signature, grads dict and .npz
from torch_impl.backward_ops import reg_plus_mm, relu_backward, scaled_dscores, two_layer_forward, upstream_scale
from torch_impl.validation import (
    as_features,
    as_labels,
    check_net_sizes,
    check_two_layer_inputs,
    check_two_layer_params,
)


def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """Loss and gradients of the two-layer net.

    X: (N, D); y: (N,) labels in [0, C) or None; W1: (D, H); b1: (H,); W2: (H, C); b2: (C,).
    Returns scores (N, C) when y is None, else (loss, grads) with grads keys W1, b1, W2, b2.
    """
    check_two_layer_inputs(X, y, W1, b1, W2, b2, reg)
    N = X.shape[0]
    # forward pass
    # [bridge:net-forward]
    S1 = X @ W1 + b1  # (N, H)
    H1 = torch.clamp_min(S1, 0)  # (N, H)  ReLU
    scores = H1 @ W2 + b2  # (N, C)  S2
    # [/bridge:net-forward]
    if y is None:
        return scores
    y = y.long()  # any integer dtype: indexing needs int64

    # [bridge:net-softmax]
    shifted = scores - torch.amax(scores, dim=1, keepdim=True)  # (N, C)  max subtraction
    exp_scores = torch.exp(shifted)  # (N, C)
    sum_exp = torch.sum(exp_scores, dim=1, keepdim=True)  # (N, 1)
    probs = exp_scores / sum_exp  # (N, C)  P = softmax(S2)
    # [/bridge:net-softmax]
    # [bridge:net-loss]
    loss = torch.mean(torch.log(sum_exp[:, 0]) - shifted[torch.arange(N), y])  # stable -log(P[y])
    loss += reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))
    # [/bridge:net-loss]

    # backward pass
    grads = {}
    # [bridge:net-dscores]
    dS2 = probs.clone()  # (N, C)  formula (4): dS2 = (P - Y) / N
    dS2[torch.arange(N), y] -= 1
    dS2 /= N
    # [/bridge:net-dscores]
    # [bridge:net-layer2]
    grads["W2"] = H1.T @ dS2 + 2 * reg * W2  # (H, C)  formula (5) for layer 2
    grads["b2"] = torch.sum(dS2, dim=0)  # (C,)  bias: column sums
    # [/bridge:net-layer2]
    # [bridge:net-relu-mask]
    dH1 = dS2 @ W2.T  # (N, H)  formula (2) through W2
    dH1 = dH1 * (S1 > 0)  # (N, H)  ReLU mask on the pre-activation
    # [/bridge:net-relu-mask]
    # [bridge:net-layer1]
    grads["W1"] = X.T @ dH1 + 2 * reg * W1  # (D, H)  formula (5) for layer 1
    grads["b1"] = torch.sum(dH1, dim=0)  # (H,)  bias: column sums
    # [/bridge:net-layer1]
    return loss, grads


class TwoLayerNet(nn.Module):
    """Two-layer net with cs231n's interface; ``self.params`` gives the nn.Parameters W1, b1, W2, b2 by name.

    ``repr(TwoLayerNet(4, 10, 3))`` is ``TwoLayerNet(W1 (4, 10), b1 (10,), W2 (10, 3), b2 (3,), torch.float32, cpu)``.
    """

    def __init__(self, input_size, hidden_size, output_size, std=1e-4, *, dtype=None, device=None,
                 generator=None):
        """W1: (D, H), b1: (H,), W2: (H, C), b2: (C,); weights std * randn in this order, biases zero.

        dtype: None for torch's default (float32); device: None for the default device.
        """
        check_net_sizes(input_size, hidden_size, output_size, std)
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.W1 = nn.Parameter(std * torch.randn(input_size, hidden_size, generator=generator, **kw))
        self.b1 = nn.Parameter(torch.zeros(hidden_size, **kw))
        self.W2 = nn.Parameter(std * torch.randn(hidden_size, output_size, generator=generator, **kw))
        self.b2 = nn.Parameter(torch.zeros(output_size, **kw))

    @property
    def params(self):
        """{'W1': (D, H), 'b1': (H,), 'W2': (H, C), 'b2': (C,)}, the live nn.Parameters."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def extra_repr(self):
        """The shapes, dtype and device: TwoLayerNet(W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), dtype, device)."""
        shapes = ", ".join(f"{name} {tuple(p.shape)}" for name, p in self.params.items())
        return f"{shapes}, {self.W1.dtype}, {self.W1.device}"

    @torch.no_grad()
    def loss(self, X, y=None, reg=0.0):
        """X: (N, D); y: (N,) or None. Returns scores (N, C) if y is None, else (loss, grads), by hand.

        X (tensor or NumPy, any real dtype) is computed in the net's dtype on its device; y as int64 there.
        """
        p = self.params
        X, y = as_features(X, self.W1), None if y is None else as_labels(y, self.W1.device)
        return two_layer_loss(X, y, p["W1"], p["b1"], p["W2"], p["b2"], reg)

    def forward(self, X):
        """X: (N, D) -> scores (N, C), differentiable (used by autograd-based code); X converted as in ``loss``."""
        X = as_features(X, self.W1)
        return torch.clamp_min(X @ self.W1 + self.b1, 0) @ self.W2 + self.b2

    @torch.no_grad()
    def predict(self, X):
        """X: (N, D), converted as in ``loss``. Returns (N,) int64 predicted class indices on the net's device."""
        return torch.argmax(self.loss(X), dim=1)

    @classmethod
    def from_numpy(cls, params, dtype=None, device=None):
        """A net whose parameters equal a NumPy ``params`` dict (W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)).

        dtype: None keeps W1's dtype (float64 for the reference's params). Draws nothing from torch's RNG.
        """
        dtype = torch.as_tensor(np.asarray(params["W1"])).dtype if dtype is None else dtype
        if not dtype.is_floating_point:
            raise ValueError(f"params: W1 holds {dtype}; expected floating point arrays (or pass dtype=)")
        params = {name: torch.as_tensor(np.asarray(params[name]), dtype=dtype, device=device) for name in PARAM_NAMES}
        check_two_layer_params(*params.values())  # the shapes chain, or one line naming the first that does not
        D, H = params["W1"].shape
        C = params["W2"].shape[1]
        net = cls(D, H, C, dtype=params["W1"].dtype, device="meta")  # shapes only: nothing allocated or drawn
        net.to_empty(device=params["W1"].device)
        with torch.no_grad():
            for name, p in net.params.items():
                p.copy_(params[name])
        return net

    def to_numpy(self):
        """The parameters as a NumPy ``params`` dict, in the reference's layout and float64."""
        return {name: p.detach().cpu().double().numpy().copy() for name, p in self.params.items()}

    @classmethod
    def from_npz(cls, path, dtype=None, device=None):
        """A net with the parameters stored in the .npz file ``path`` (NumPy's save_params, train export).

        dtype: None keeps the file's float64. ``net.preprocessing`` is the file's preprocessing (NumPy's
        read_preprocessing; {} for a file of weights only), which torch_impl/images.py's predict_images applies.
        """
        from reference_numpy.neural_net import TwoLayerNet as NumpyTwoLayerNet  # the one reader of the format

        net = cls.from_numpy(NumpyTwoLayerNet.read_params(path), dtype=dtype, device=device)
        net.preprocessing = NumpyTwoLayerNet.read_preprocessing(path)
        return net

    def save_npz(self, path):
        """Write the parameters as float64 to the .npz file ``path``; NumPy's ``load_params`` reads it."""
        with open(path, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, **self.to_numpy())


class TwoLayerLoss(torch.autograd.Function):
    """``TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg)`` -> loss; ``loss.backward()`` fills the four ``.grad``.

    X: (N, D); y: (N,) any integer dtype, in [0, C); W1: (D, H); b1: (H,); W2: (H, C); b2: (C,); reg: float.
    The same math as two_layer_loss (tests/test_fast_paths.py proves them equal), arranged for speed: forward
    computes the loss and saves what backward needs (X, H1, log P); backward applies the formulas, times the
    upstream gradient, with each weight gradient ``g (X^T dH1 + 2 reg W1)`` a single addmm. Gradients travel
    through the autograd engine, where DDP's all-reduce hooks and AMP's grad scaler see them; X, y, reg get none.
    """

    @staticmethod
    def forward(ctx, X, y, W1, b1, W2, b2, reg):
        if y is None:
            raise ValueError("y: got None; expected (N,) integer labels (TwoLayerLoss computes a loss)")
        check_two_layer_inputs(X, y, W1, b1, W2, b2, reg, values=False)  # metadata only: no host sync
        y = y.long()  # any integer dtype: nll_loss and scatter need int64 (no copy when it is)
        loss, H1, log_probs = two_layer_forward(X, y, W1, b1, W2, b2, reg)  # 0-d, (N, H), (N, C)
        ctx.save_for_backward(X, y, W1, W2, H1, log_probs)
        ctx.reg = reg
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        X, y, W1, W2, H1, log_probs = ctx.saved_tensors
        if H1.dtype != W1.dtype:  # forward ran under autocast: finish in the parameters' dtype
            X, H1, log_probs = X.to(W1.dtype), H1.to(W1.dtype), log_probs.to(W1.dtype)
        g, two_reg, need = upstream_scale(grad_loss), 2 * ctx.reg, ctx.needs_input_grad
        dS2 = scaled_dscores(log_probs, y, g)  # (N, C)  formula (4): dS2 = g (P - Y) / N
        dW2 = reg_plus_mm(W2, H1.T, dS2, two_reg, g) if need[4] else None  # (H, C)  formula (5), layer 2
        db2 = dS2.sum(0) if need[5] else None  # (C,)  column sums
        dW1 = db1 = None
        if need[2] or need[3]:
            dH1 = relu_backward(dS2, W2, H1)  # (N, H)  dS2 W2^T masked by (S1 > 0)
            dW1 = reg_plus_mm(W1, X.T, dH1, two_reg, g) if need[2] else None  # (D, H)  formula (5), layer 1
            db1 = dH1.sum(0) if need[3] else None  # (H,)  column sums
        return None, None, dW1, db1, dW2, db2, None
