"""How the child calls each kind of target on a case: the outputs it returns, and centred finite differences of
its own loss (NumPy only; torch only for targets written in torch).

    runner = Runner("softmax", softmax_loss_vectorized, module, root)
    outputs, changed = runner.outputs(case)     # {quantity: float64 array or None}, [inputs it changed in place]
    fds = runner.finite_differences(case, outputs)   # {param: (fd values (k,), directions (k, *shape))}

A call that raises, or returns the wrong type or shape, raises BadCall with one line; nothing is judged here.
"""
import sys

import numpy as np

from verify.compare import is_tensor, to_float64
from verify.kinds import KINDS, PARAM_NAMES, binds, parameter_names
from verify.loading import explain

FD_STEP = 1e-5  # h of the centred differences (float64: truncation ~h^2, rounding ~eps |L| / h, both << 1e-6)
FD_RANDOM_DIRECTIONS = 3  # plus the coordinate of the largest |gradient| entry


class BadCall(Exception):
    """The target raised, or returned something of the wrong type or shape: ``status`` ERROR or FAIL."""

    def __init__(self, status, line):
        super().__init__(line)
        self.status, self.line = status, line


LOW_PRECISION = ("float32", "float16", "bfloat16")
LOW_PRECISION_SEEN = set()  # quantities returned in a low-precision dtype (reported, then compared in float64)


def as_array(value, quantity):
    """A returned number/array/tensor (or list of numbers) as a float64 array; None stays None; anything else is a
    BadCall."""
    if value is None:
        return None
    if str(getattr(value, "dtype", "")).split(".")[-1] in LOW_PRECISION:
        LOW_PRECISION_SEEN.add(quantity)
    if is_tensor(value):
        return to_float64(value)
    if isinstance(value, (list, tuple)):  # a list of numbers, as cs231n's own rel_error accepts
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadCall("FAIL", f"{quantity} is a {type(value).__name__} that is not an array of numbers; "
                                  "expected a number or an array") from None
        return arr
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number, np.ndarray)):
        raise BadCall("FAIL", f"{quantity} is a {type(value).__name__}; expected a number or an array")
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise BadCall("FAIL", f"{quantity} has dtype {arr.dtype}; expected numbers")
    return to_float64(arr)


class Runner:
    """Calls one target of one kind; ``mode`` is "numpy" or "torch" (tensors in, for code written in torch)."""

    def __init__(self, kind, obj, module, root):
        self.kind, self.obj, self.module, self.root = KINDS[kind], obj, module, root
        self.mode = "numpy"
        self.scores_note = None
        self.absent = []  # gradient keys the last call's grads dict lacked
        self.forward = None
        if self.kind.forward:
            self.forward = getattr(module, self.kind.forward, None)
            if not callable(self.forward):
                raise BadCall("ERROR", f"{obj.__name__} needs {self.kind.forward} from the same file for its cache")

    def _in(self, a):
        """A fresh copy of a case array, as the target takes it."""
        if self.mode == "torch":
            import torch  # only for targets written in torch

            return torch.tensor(a)
        return np.array(a)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BaseException as e:  # SystemExit, KeyboardInterrupt and MemoryError too: one line, never a crash
            status, line = explain(e, self.root)
            raise BadCall(status, line) from None

    # ---- building the net of a class target ----
    def _net(self, case):
        a = case.arrays
        D, H, C = a["W1"].shape[0], a["W1"].shape[1], a["W2"].shape[1]
        cls = self.obj
        state = np.random.get_state()
        try:
            if self.kind.name == "two_layer":
                net = self._call(cls, D, H, C, 1e-4) if binds(cls, D, H, C, 1e-4) else self._call(cls, D, H, C)
            else:
                kw = dict(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3, reg=case.reg)
                if not binds(cls, **kw):  # e.g. no reg or weight_scale argument: pass the ones it takes
                    kw = {k: v for k, v in kw.items() if k in (parameter_names(cls) or [])}
                net = self._call(cls, **kw)
        finally:
            np.random.set_state(state)
        params = getattr(net, "params", None)
        if not hasattr(params, "__getitem__") or not hasattr(params, "keys"):
            raise BadCall("FAIL", "the instance has no params dict (keys W1, b1, W2, b2)")
        if self.kind.name == "fc_net":
            net.reg = case.reg
        if _is_module(net):
            net.to(dtype=sys.modules["torch"].float64)  # an nn.Module: verification runs in float64
        self._set_params(net, {k: a[k] for k in PARAM_NAMES})
        return net

    def _set_params(self, net, values):
        params = net.params
        for k, v in values.items():
            current = params[k] if k in params.keys() else None
            if is_tensor(current):
                import torch

                if isinstance(current, torch.nn.Parameter):  # an nn.Module's parameters: fill them in place
                    with torch.no_grad():
                        current.copy_(torch.as_tensor(v, dtype=current.dtype))
                else:
                    params[k] = torch.tensor(v)
                self.mode = "torch"
            else:
                params[k] = np.array(v)

    def _net_loss(self, net, case, X, y):
        if self.kind.name == "two_layer":
            return self._call(net.loss, X, y, reg=case.reg) if y is not None else self._call(net.loss, X)
        return self._call(net.loss, X, y) if y is not None else self._call(net.loss, X)

    # ---- one call: the outputs of every quantity ----
    def outputs(self, case):
        """({quantity: float64 array or None}, [names of inputs it changed])."""
        k, a = self.kind.name, case.arrays
        if k in ("softmax", "svm"):
            args = [self._in(a[n]) for n in ("W", "X", "y")]
            out = self._call(self.obj, *args, case.reg)
            loss, dW = _pair(out, "(loss, dW)")
            if np.ndim(as_array(loss, "loss")) == 2 and np.size(as_array(dW, "dW")) == 1:
                raise BadCall("FAIL", "returned (dW, loss); the order is (loss, dW)")
            return {"loss": as_array(loss, "loss"), "dW": as_array(dW, "dW")}, _changed(["W", "X", "y"], args, a)
        if k in ("two_layer", "fc_net"):
            net = self._net(case)
            X, y = self._in(a["X"]), self._in(a["y"])
            try:
                scores = self._net_loss(net, case, X, None)
            except BadCall as e:  # scores are part of the API, but a loss without them can still be checked
                scores, self.scores_note = None, f"scores not checked: loss(X) without y {e.line}"
            out = self._net_loss(net, case, X, y)
            changed = _changed(["X", "y"], [X, y], a)
            changed += [f"self.params['{n}']" for n in PARAM_NAMES
                        if not np.array_equal(to_float64(net.params[n]), a[n])]
            if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], dict):
                raise BadCall("FAIL", "returned (grads, loss); the order is (loss, grads)")
            loss, grads = _pair(out, "(loss, grads)")
            if grads is None:
                grads = {}
            if not hasattr(grads, "get"):
                raise BadCall("FAIL", f"grads is a {type(grads).__name__}; expected a dict with keys W1, b1, W2, b2")
            self.absent = [n for n in PARAM_NAMES if n not in grads]
            res = {"scores": as_array(scores, "scores"), "loss": as_array(loss, "loss")}
            res.update({n: as_array(grads.get(n), n) for n in PARAM_NAMES})
            return res, changed
        if k in ("affine_forward", "affine_relu_forward", "relu_forward"):
            args = [self._in(a[n]) for n in (("x",) if k == "relu_forward" else ("x", "w", "b"))]
            out, _ = _pair(self._call(self.obj, *args), "(out, cache)")
            return {"out": as_array(out, "out")}, _changed(["x", "w", "b"], args, a)
        if k in ("affine_backward", "affine_relu_backward", "relu_backward"):
            names = ("x",) if k == "relu_backward" else ("x", "w", "b")
            args = [self._in(a[n]) for n in names]
            _, cache = _pair(self._call(self.forward, *args), "(out, cache)", self.kind.forward)
            dout = self._in(a["dout"])
            res = self._call(self.obj, dout, cache)
            if k == "relu_backward":
                if isinstance(res, (tuple, list)) and len(res) == 1:
                    res = res[0]
                return {"dx": as_array(res, "dx")}, _changed(["dout"], [dout], a)
            if not isinstance(res, (tuple, list)) or len(res) != 3:
                raise BadCall("FAIL", f"returned {_what(res)}; expected (dx, dw, db)")
            return ({q: as_array(v, q) for q, v in zip(("dx", "dw", "db"), res)},
                    _changed(["dout"], [dout], a))
        # softmax_loss, svm_loss
        x, y = self._in(a["x"]), self._in(a["y"])
        loss, dx = _pair(self._call(self.obj, x, y), "(loss, dx)")
        changed = _changed(["x", "y"], [x, y], a)
        shift = to_float64(x) - a["x"]  # (N, C)
        if changed == ["x"] and np.allclose(shift, shift[:, :1], rtol=0, atol=1e-9 * (1 + np.abs(a["x"]).max())):
            changed = ["x (row shift)"]
        return {"loss": as_array(loss, "loss"), "dx": as_array(dx, "dx")}, changed

    # ---- the target's own loss, for finite differences ----
    def own_loss(self, case):
        """L(values) -> float: the target's own scalar loss at the case with some inputs replaced by values."""
        k, a = self.kind.name, case.arrays
        if k in ("softmax", "svm"):
            return lambda v: _scalar(_pair(self._call(self.obj, self._in(v["W"]), self._in(a["X"]),
                                                      self._in(a["y"]), case.reg), "(loss, dW)")[0])
        if k in ("two_layer", "fc_net"):
            net = self._net(case)

            def loss(v):
                self._set_params(net, {n: v.get(n, a[n]) for n in PARAM_NAMES})
                return _scalar(_pair(self._net_loss(net, case, self._in(a["X"]), self._in(a["y"])), "")[0])
            return loss
        if k in ("softmax_loss", "svm_loss"):
            return lambda v: _scalar(_pair(self._call(self.obj, self._in(v["x"]), self._in(a["y"])), "")[0])
        names = ("x",) if k == "relu_backward" else ("x", "w", "b")

        def inner(v):  # <forward(x, w, b), dout>: its gradient is what backward returns
            out = as_array(_pair(self._call(self.forward, *(self._in(v.get(n, a[n])) for n in names)), "")[0], "out")
            if out is None or out.shape != a["dout"].shape:
                raise BadCall("FAIL", f"{self.kind.forward} returned out of the wrong shape or None")
            return float(np.sum(out * a["dout"]))
        return inner

    def finite_differences(self, case, grads):
        """{param: (fd values (k,), directions (k, *shape))} of the own loss; grads picks the coordinate."""
        loss = self.own_loss(case)
        rng = np.random.default_rng(7)
        result = {}
        for p, q in self.kind.params.items():
            base = case.arrays[p]
            dirs = [d / np.linalg.norm(d) for d in rng.standard_normal((FD_RANDOM_DIRECTIONS, *base.shape))]
            g = grads.get(q)
            if g is not None and g.shape == base.shape and np.all(np.isfinite(g)) and np.any(g):
                e = np.zeros_like(base)
                e[np.unravel_index(np.argmax(np.abs(g)), g.shape)] = 1.0
                dirs.append(e)
            fds = []
            for v in dirs:
                plus, minus = loss({p: base + FD_STEP * v}), loss({p: base - FD_STEP * v})
                fds.append((plus - minus) / (2 * FD_STEP))
            result[p] = (np.array(fds), np.array(dirs))
        return result


def _is_module(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _what(x):
    return f"a {type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else "")


def _pair(out, expected, who=None):
    if out is None and expected:
        raise BadCall("FAIL", f"looks unfinished: {who or 'it'} returned None (finish its TODOs and return the "
                              f"pair {expected})")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise BadCall("FAIL", f"{who + ' ' if who else ''}returned {_what(out)}; expected a pair {expected}")
    return out


def _scalar(x):
    a = as_array(x, "loss")
    if a is None or a.size != 1:
        raise BadCall("FAIL", "the loss is not a single number")
    return float(a.reshape(()))


def _changed(names, given, arrays):
    return [n for n, g in zip(names, given) if n in arrays and not np.array_equal(to_float64(g), arrays[n])]
