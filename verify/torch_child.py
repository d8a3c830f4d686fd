"""The child's side of the PyTorch loss kinds (verify/torch_kinds.py): run the student's torch code on the cases
and record what the parent judges (verify/torch_checks.py). It judges nothing.

- two_layer_loss: outputs (scores, loss, grads) and centred finite differences of its own loss, as for NumPy code.
- autograd Functions: the forward's value; backward's gradients through autograd (upstream 1, then 2.5); and
  autograd of the Function's own forward, run as plain torch code with a stand-in ctx (finite differences of
  apply when that forward cannot be differentiated).

train() and a LightningModule's step are verify/torch_loops.py's. torch is imported only in the child, after the
student's file has imported it.
"""
import sys
import types

import numpy as np

from verify.loading import explain
from verify.torch_kinds import APPLY_INPUTS, GRAD_NAMES, PARAMS

FD_STEP = 1e-5
UPSTREAM = 2.5  # the upstream gradient of the second backward: backward must scale by it


class Fail(Exception):
    """The target raised or returned something unusable: (status, one line)."""

    def __init__(self, status, line):
        super().__init__(line)
        self.status, self.line = status, line


def _torch():
    return sys.modules.get("torch") or __import__("torch")


def _np(x):
    """A number, array or tensor as a float64 array; None for anything else."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, (int, float, np.number, np.ndarray)) and not isinstance(x, bool):
        return np.asarray(x, dtype=np.float64)
    return None


def _call(root, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: one line, never a crash
        raise Fail(*explain(e, root)) from None


def _tensors(case, names, numpy=False):
    """Fresh copies of the case's arrays: tensors (or NumPy arrays for code written in NumPy)."""
    return [np.array(case.arrays[n]) if numpy else _torch().tensor(case.arrays[n]) for n in names]


def _leaves(case, names):
    return [t.requires_grad_(True) for t in _tensors(case, names)]


# ---- two_layer_loss(X, y, W1, b1, W2, b2, reg): as the NumPy loss targets ----

NET_INPUTS = ("X", "y", "W1", "b1", "W2", "b2")


def _loss_case(fn, module, case, root, out, entry):
    numpy = "torch" not in sys.modules  # NumPy code (reference_numpy's two_layer_loss) gets NumPy arrays
    try:
        result = _call(root, fn, *_tensors(case, NET_INPUTS, numpy), case.reg)
    except Fail:
        if not numpy:
            raise
        numpy = False
        result = _call(root, fn, *_tensors(case, NET_INPUTS, numpy), case.reg)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Fail("FAIL", f"returned a {type(result).__name__}; expected a pair (loss, grads)")
    loss, grads = result
    grads = grads if isinstance(grads, dict) else {}
    out["out/loss"] = _np(loss)
    out.update({f"out/{p}": _np(grads.get(p)) for p in PARAMS["two_layer"]})
    inputs = _tensors(case, NET_INPUTS, numpy)
    try:
        out["out/scores"] = _np(fn(inputs[0], None, *inputs[2:], case.reg))
    except BaseException as e:
        entry["scores_note"] = f"scores not checked: two_layer_loss(X, None, ...) {explain(e, root)[1]}"
    if out["out/loss"] is None:
        return

    def own_loss(p, value):
        args = _tensors(case, NET_INPUTS, numpy)
        args[2 + PARAMS["two_layer"].index(p)] = np.array(value) if numpy else _torch().tensor(value)
        return float(_np(_call(root, fn, *args, case.reg)[0]))
    _finite_differences(case, PARAMS["two_layer"], own_loss, out)


def _finite_differences(case, params, loss, out):
    """Centred differences of loss(p, value) along 3 random directions and the largest gradient's coordinate."""
    rng = np.random.default_rng(7)
    for p in params:
        base = case.arrays[p]
        dirs = [d / np.linalg.norm(d) for d in rng.standard_normal((3, *base.shape))]
        g = out.get(f"out/{GRAD_NAMES[p]}")
        if g is not None and g.shape == base.shape and np.all(np.isfinite(g)) and np.any(g):
            e = np.zeros_like(base)
            e[np.unravel_index(np.argmax(np.abs(g)), g.shape)] = 1.0
            dirs.append(e)
        fd = [(loss(p, base + FD_STEP * v) - loss(p, base - FD_STEP * v)) / (2 * FD_STEP) for v in dirs]
        out[f"fd/{p}"], out[f"dir/{p}"] = np.array(fd), np.array(dirs)


# ---- autograd.Function: backward against autograd of its own forward ----

class StandInCtx(types.SimpleNamespace):
    """What a Function's forward may use of its ctx, when forward runs as plain differentiable torch code."""

    needs_input_grad = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *args):
        pass

    def mark_dirty(self, *args):
        pass

    def set_materialize_grads(self, value):
        pass


def _function_case(cls, module, case, root, out, entry):
    torch = _torch()
    names = APPLY_INPUTS["two_layer" if "W1" in case.arrays else "softmax"]
    params = [n for n in names if n in GRAD_NAMES]

    def apply(upstream):
        args = _tensors(case, names)
        leaves = {n: args[names.index(n)].requires_grad_(True) for n in params}
        loss = _call(root, cls.apply, *args, case.reg)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return _np(loss) if loss is not None else None, {}
        if loss.grad_fn is None:
            raise Fail("FAIL", "the loss apply returns has no grad_fn: forward detached it from autograd")
        grads = _call(root, torch.autograd.grad, loss, list(leaves.values()), torch.tensor(upstream, dtype=loss.dtype),
                      allow_unused=True)
        return _np(loss), dict(zip(params, grads))

    loss, grads = apply(1.0)
    out["out/loss"] = loss
    if loss is None:
        return
    out.update({f"out/{GRAD_NAMES[p]}": _np(g) for p, g in grads.items()})
    _, scaled = apply(UPSTREAM)
    out.update({f"up/{GRAD_NAMES[p]}": _np(g) for p, g in scaled.items()})
    try:
        out.update(_own_forward_grads(cls, case, names, params))
    except BaseException as e:  # not differentiable as plain torch code: finite differences of apply instead
        entry["own_note"] = f"own check by finite differences: its forward cannot run under autograd ({e!r:.80})"

        def own_loss(p, value):
            args = _tensors(case, names)
            args[names.index(p)] = torch.tensor(value)
            return float(_np(_call(root, cls.apply, *args, case.reg)))
        _finite_differences(case, params, own_loss, out)


def _own_forward_grads(cls, case, names, params):
    """{"own/<grad>": autograd's gradient of the Function's own forward} (forward run with a stand-in ctx)."""
    torch = _torch()
    args = _tensors(case, names)
    leaves = [args[names.index(n)].requires_grad_(True) for n in params]
    with torch.enable_grad():
        if any("setup_context" in vars(c) for c in type.mro(cls) if not c.__module__.startswith("torch")):
            loss = cls.forward(*args, case.reg)
        else:
            loss = cls.forward(StandInCtx(), *args, case.reg)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return {f"own/{GRAD_NAMES[p]}": _np(g) if g is not None else np.zeros_like(case.arrays[p])
            for p, g in zip(params, grads)}
