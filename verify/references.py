"""The course's definition of every kind, differentiated by torch.autograd in float64 (computed once, in the parent).

    want = reference("fc_net", case, "half")    # {"scores": (N, C), "loss": (), "W1": (D, H), ...}

The L2 term is REG_FACTOR[convention] * reg * sum(W*W) over the weights (never the biases): "full" is
reg*sum(W*W) (cs231n 2017-2019 softmax.py, neural_net.py), "half" is 0.5*reg*sum(W*W) (2016, fc_net.py).
The softmax and two-layer losses are torch_impl/autograd_twin.py's; the layers are written here, one line each.
"""
import torch
import torch.nn.functional as F

from torch_impl import autograd_twin
from verify.compare import to_float64
from verify.kinds import PARAM_NAMES, REG_FACTOR


def _t(a):
    return torch.as_tensor(a)


def _svm_data_loss(S, y):
    """Mean multiclass hinge loss with margin 1 (cs231n's linear_svm / svm_loss)."""
    N = S.shape[0]
    margins = torch.clamp(S - S[torch.arange(N), y][:, None] + 1.0, min=0.0)  # (N, C)
    margins = margins * (1 - F.one_hot(y, S.shape[1]).to(S.dtype))  # the true class adds nothing
    return margins.sum() / N


def _grads(value, inputs, names):
    grads = torch.autograd.grad(value, list(inputs.values()))
    return {n: to_float64(g) for n, g in zip(names, grads)}


def reference(kind, case, convention="full"):
    """{quantity: float64 array} of the course's definition at the case (see verify/kinds.py for the kinds)."""
    a = case.arrays
    reg = REG_FACTOR[convention] * case.reg
    if kind == "softmax":
        loss, dW = autograd_twin.softmax_loss_and_grad_autograd(_t(a["W"]), _t(a["X"]), _t(a["y"]), reg)
        return {"loss": to_float64(loss), "dW": to_float64(dW)}
    if kind == "svm":
        W = _t(a["W"]).clone().requires_grad_(True)
        loss = _svm_data_loss(_t(a["X"]) @ W, _t(a["y"])) + reg * torch.sum(W * W)
        return {"loss": to_float64(loss), **_grads(loss, {"W": W}, ["dW"])}
    if kind in ("two_layer", "fc_net"):
        P = [_t(a[k]) for k in PARAM_NAMES]
        loss, grads = autograd_twin.two_layer_loss_and_grads_autograd(_t(a["X"]), _t(a["y"]), *P, reg)
        scores = torch.relu(_t(a["X"]) @ P[0] + P[1]) @ P[2] + P[3]  # (N, C)
        return {"scores": to_float64(scores), "loss": to_float64(loss),
                **{k: to_float64(v) for k, v in grads.items()}}
    if kind in ("softmax_loss", "svm_loss"):
        x = _t(a["x"]).clone().requires_grad_(True)
        loss = F.cross_entropy(x, _t(a["y"])) if kind == "softmax_loss" else _svm_data_loss(x, _t(a["y"]))
        return {"loss": to_float64(loss), **_grads(loss, {"x": x}, ["dx"])}
    leaves = {k: _t(a[k]).clone().requires_grad_(True) for k in (("x",) if kind.startswith("relu") else "xwb")}
    if kind.startswith("relu"):
        out = torch.relu(leaves["x"])
    else:
        x = leaves["x"]
        out = x.reshape(x.shape[0], -1) @ leaves["w"] + leaves["b"]  # (N, M)
        if kind.startswith("affine_relu"):
            out = torch.relu(out)
    if kind.endswith("forward"):
        return {"out": to_float64(out)}
    return _grads((out * _t(a["dout"])).sum(), leaves, [f"d{k}" for k in leaves])
