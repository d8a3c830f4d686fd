"""Checks someone's own softmax loss or two-layer net against torch.autograd, case by case, in float64
(``python -m train verify --target FILE.py:NAME``; the CLI is train/verify_cmd.py).

Usage::

    obj = load_target("homework/softmax.py:softmax_loss_vectorized")   # TargetError: cannot load (exit 2)
    result = check_target(obj, detect_kind(obj))                       # result.rows, result.hints, result.passed

A function ``(W, X, y, reg) -> (loss, dW)`` is a softmax loss; a class with ``__init__(input_size, hidden_size,
output_size, std)``, a ``params`` dict and ``loss(X, y, reg) -> (loss, grads)`` is a two-layer net. The target
gets copies of every array (NumPy; torch tensors when it rejects NumPy or keeps torch parameters), so it cannot
corrupt the comparison; a target that changes its inputs is reported. Exceptions, wrong types and wrong shapes
become report rows, never tracebacks. The reference is cs231n's convention: mean cross-entropy + reg*sum(W*W).
"""
import contextlib
import importlib
import importlib.util
import inspect
import io
import sys
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from torch_impl import autograd_twin
from torch_impl.verify import Row, compare, softmax_cases, to_numpy, two_layer_cases
from torch_impl.verify_hints import diagnose

TARGET_RTOL = 1e-6  # float64 code agrees to ~1e-14 whatever its loops or summation order; the smallest error a
# listed mistake makes on these cases is 7e-2 (tests/fixtures/homework), so 1e-6 never confuses the two
NAN = float("nan")
QUANTITIES = {"softmax": ("loss", "dW"), "two_layer": ("loss", "W1", "b1", "W2", "b2")}


class TargetError(Exception):
    """The target cannot be loaded or is neither a softmax loss nor a two-layer net (exit code 2)."""


class _BadCall(Exception):
    """The target raised, or returned something of the wrong type or shape (one report row)."""

    def __init__(self, quantity, note):
        super().__init__(note)
        self.quantity, self.note = quantity, note


@dataclass
class TargetResult:
    kind: str
    rows: list
    hints: dict = field(default_factory=dict)

    @property
    def passed(self):
        return all(r.passed for r in self.rows)


def load_target(spec):
    """``path/to/file.py:NAME`` or ``package.module:NAME`` -> the object. Only the module import runs."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise TargetError(f"--target must be FILE.py:NAME or module:NAME, got {spec!r}")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_file():
                raise TargetError(f"--target: no such file {where!r}")
            mod_spec = importlib.util.spec_from_file_location(f"_verify_target_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = module  # as an import does (dataclasses, pickling look it up)
            sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
            try:
                mod_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            module = importlib.import_module(where)
    except TargetError:
        raise
    except (Exception, SystemExit) as e:
        raise TargetError(f"--target: importing {where!r} failed: {_describe(e)}") from None
    if not hasattr(module, name):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise TargetError(f"--target: {where!r} defines no {name!r} (it defines: {', '.join(names) or 'nothing'})")
    return getattr(module, name)


def detect_kind(obj, kind=None):
    """'softmax' for a function (W, X, y, reg), 'two_layer' for a class (input_size, hidden_size, output_size,
    std) with a loss method; ``kind`` overrides the detection (it is still checked to fit)."""
    what = getattr(obj, "__name__", repr(obj))
    if inspect.isclass(obj):
        if kind not in (None, "two_layer"):
            raise TargetError(f"--kind {kind}: {what} is a class; a softmax loss is a function (W, X, y, reg)")
        if not _binds(obj, 3):
            raise TargetError(f"class {what} cannot be built as {what}(input_size, hidden_size, output_size, std)")
        if not callable(getattr(obj, "loss", None)):
            raise TargetError(f"class {what} has no loss(X, y, reg) method")
        return "two_layer"
    if callable(obj):
        if kind not in (None, "softmax"):
            raise TargetError(f"--kind {kind}: {what} is a function; a two-layer net is a class")
        if not _binds(obj, 4):
            raise TargetError(f"function {what}{_signature(obj)} cannot be called as {what}(W, X, y, reg)")
        return "softmax"
    raise TargetError(f"{what} is a {type(obj).__name__}: expected a function (W, X, y, reg) -> (loss, dW) or a "
                      "class with cs231n's TwoLayerNet interface")


def _binds(obj, n):
    try:
        inspect.signature(obj).bind(*range(n))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


def _signature(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _describe(e):
    """'ValueError: message (file.py:12)' with the innermost frame's place."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def _as_array(value, quantity):
    """A returned number/array/tensor as a float64 array, or _BadCall naming its type."""
    numeric = isinstance(value, (int, float, np.number)) or (
        isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number))
    if (isinstance(value, torch.Tensor) or numeric) and not isinstance(value, bool):
        return to_numpy(value)
    raise _BadCall(quantity, f"{quantity} is a {type(value).__name__}; expected a number or an array")


def _copies(arrays, mode):
    """Fresh copies of the float64 case arrays for the target, as NumPy arrays or torch tensors."""
    return [torch.tensor(a) if mode == "torch" else np.array(a) for a in arrays]


def _mutated(names, given, originals):
    return [n for n, g, o in zip(names, given, originals) if not np.array_equal(to_numpy(g), o)]


def _call(fn, args):
    try:  # the target's prints and NumPy warnings would garble the table
        with warnings.catch_warnings(), np.errstate(all="ignore"), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return fn(*args)
    except Exception as e:
        raise _BadCall("call", f"raised {_describe(e)}") from None


def _run_softmax(fn, case, mode):
    """(outputs {loss, dW}, mutated input names); _BadCall when it raises or returns the wrong thing."""
    args = _copies([case.W, case.X, case.y], mode)
    out = _call(fn, [*args, case.reg])
    mutated = _mutated(["W", "X", "y"], args, [case.W, case.X, case.y])
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise _BadCall("return", f"returned {type(out).__name__}; expected a pair (loss, dW)")
    if np.ndim(out[0]) == 2 and np.size(out[1]) == 1:
        raise _BadCall("return", "returned (dW, loss); the order is (loss, dW)")
    return {"loss": _as_array(out[0], "loss"), "dW": _as_array(out[1], "dW")}, mutated


def _run_two_layer(cls, case, mode):
    """As _run_softmax for a class: build, set its params to the case's, call loss(X, y, reg)."""
    D, H = case.params["W1"].shape
    C = case.params["W2"].shape[1]
    state = np.random.get_state()
    try:
        net = _call(cls, (D, H, C, 1e-4) if _binds(cls, 4) else (D, H, C))
    finally:
        np.random.set_state(state)
    params = getattr(net, "params", None)
    if not isinstance(params, Mapping) or any(k not in params for k in case.params):
        raise _BadCall("params", "the instance has no params dict with keys W1, b1, W2, b2")
    if isinstance(net, torch.nn.Module):
        net.to(torch.float64)  # verification runs in float64
    for k, v in case.params.items():
        if isinstance(params[k], torch.nn.Parameter):  # an nn.Module's parameters: fill them in place
            with torch.no_grad():
                params[k].copy_(torch.as_tensor(v, dtype=params[k].dtype))
            mode = "torch"
        elif isinstance(params[k], torch.Tensor):
            params[k], mode = torch.tensor(v), "torch"
        else:
            params[k] = np.array(v)
    args = _copies([case.X, case.y], mode)
    out = _call(net.loss, [*args, case.reg])
    mutated = _mutated(["X", "y"], args, [case.X, case.y])
    mutated += [f"self.params['{k}']" for k in case.params
                if not np.array_equal(to_numpy(net.params[k]), case.params[k])]
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], Mapping):
        raise _BadCall("return", "returned (grads, loss); the order is (loss, grads)")
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], Mapping):
        raise _BadCall("return", f"returned {type(out).__name__}; expected a pair (loss, grads dict)")
    missing = [k for k in case.params if k not in out[1]]
    if missing:
        raise _BadCall("return", f"grads has no key(s) {', '.join(missing)}")
    return {"loss": _as_array(out[0], "loss"), **{k: _as_array(out[1][k], k) for k in case.params}}, mutated


def _reference(kind, case):
    """{quantity: float64 array} by torch.autograd (torch_impl/autograd_twin.py), cs231n's convention."""
    t = torch.as_tensor
    if kind == "softmax":
        loss, dW = autograd_twin.softmax_loss_and_grad_autograd(t(case.W), t(case.X), t(case.y), case.reg)
        return {"loss": to_numpy(loss), "dW": to_numpy(dW)}
    loss, grads = autograd_twin.two_layer_loss_and_grads_autograd(
        t(case.X), t(case.y), *(t(v) for v in case.params.values()), case.reg)
    return {"loss": to_numpy(loss), **{k: to_numpy(v) for k, v in grads.items()}}


def _check_shape(q, got, want, N, shape_hints):
    """got if its shape is right, else a FAIL note; a bias of shape (N, ...) or (1, ...) is summed for hints."""
    if got.shape == want.shape or (q == "loss" and got.size == 1):
        return got.reshape(want.shape), None
    note = f"{q} has shape {got.shape}, expected {want.shape}"
    if q != "loss" and got.shape[1:] == want.shape and got.shape[0] in (1, N):
        if got.shape[0] == 1 and N > 1:
            shape_hints.setdefault(q, set()).add(f"{q} has an extra leading axis of length 1: drop keepdims=True")
        elif N > 1:  # with N = 1 both readings fit; the other cases decide
            shape_hints.setdefault(q, set()).add(
                "bias gradient not summed over the batch: sum the rows of the upstream gradient (axis 0)")
        return None, (note, got.sum(axis=0))
    return None, (note, None)


def check_target(obj, kind):
    """Run the target on every case of its kind; TargetResult with one row per (case, quantity) and hints."""
    cases = softmax_cases() if kind == "softmax" else two_layer_cases()
    run = _run_softmax if kind == "softmax" else _run_two_layer
    rows, outputs, mutations, shape_hints, mode = [], [], {}, {}, None
    for case in cases:
        want = _reference(kind, case)
        fitted = {}
        outputs.append(fitted)
        try:
            if mode is None:  # NumPy first; torch tensors if NumPy is rejected and torch is not
                try:
                    got, mutated = run(obj, case, "numpy")
                    mode = "numpy"
                except _BadCall as numpy_error:
                    try:
                        got, mutated = run(obj, case, "torch")
                        mode = "torch"
                    except _BadCall as torch_error:
                        if numpy_error.quantity == torch_error.quantity == "call" and (
                                numpy_error.note != torch_error.note):
                            raise _BadCall("call", f"with NumPy arrays: {numpy_error.note}; with torch tensors: "
                                                   f"{torch_error.note}") from None
                        raise numpy_error from None
            else:
                got, mutated = run(obj, case, mode)
        except _BadCall as e:
            rows.append(Row(case.name, "target", e.quantity, NAN, NAN, TARGET_RTOL, False, e.note))
            continue
        for name in mutated:
            mutations.setdefault(name, []).append(case.name)
        for q in QUANTITIES[kind]:
            arr, problem = _check_shape(q, got[q], want[q], case.X.shape[0], shape_hints)
            if problem is None:
                fitted[q] = arr
                rows.append(compare(case.name, "target vs autograd", q, arr, want[q], TARGET_RTOL))
            else:
                fitted[q] = problem[1]
                rows.append(Row(case.name, "target vs autograd", q, NAN, NAN, TARGET_RTOL, False, problem[0]))
    for name, where in mutations.items():
        rows.append(Row(", ".join(where), "target", "inputs", NAN, NAN, 0.0, False,
                        f"the target changes its input {name} in place (it was given a copy)"))
    failed = {r.quantity for r in rows if not r.passed}
    hints = diagnose(kind, cases, outputs, failed & set(QUANTITIES[kind]))
    for q, extra in shape_hints.items():
        hints[q] = sorted(extra) + hints.get(q, [])
    return TargetResult(kind, rows, hints)
