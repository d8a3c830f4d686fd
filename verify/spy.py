"""The child side of the train and predict checks: the cases, the loss spy, and running a student's method.

    targets, only = method_targets(module, "TwoLayerNet", None)   # [("TwoLayerNet.train", "two_layer_train", None),
                                                                 #  ("TwoLayerNet.predict", "two_layer_predict", None)]
    result = run_method("TwoLayerNet.train", "two_layer_train", module, root)   # {"arrays": ..., "meta": ...}

train() runs as the student wrote it, with a spy in place of ``self.loss``. The spy records, at every call, the
parameters on the object (copies), X_batch, y_batch, reg and the caller's local arrays of a parameter's shape, and
returns the course's exact loss and gradients (two-layer net: softmax + L2 reg*sum(W*W); linear classifier:
softmax), so the update can be judged exactly whatever the student's own loss does. Called without y (predict, the
accuracy histories) it returns the course's scores. predict() runs on fixed random weights, with the same spy. The
parent judges everything (verify/train_checks.py); this module imports NumPy only.
"""
import sys
from dataclasses import dataclass, field

import numpy as np

from verify.kinds import KINDS, KNOWN_NAMES, METHOD_KINDS, Unsupported, binds, detect_kind, signature_text
from verify.loading import explain

TRAIN_SEED = 231  # np.random is seeded with TRAIN_SEED + case index before each call of train or predict
LINEAR_NAMES = ("LinearClassifier", "Softmax", "LinearSVM")
NET_PARAMS = ("W1", "b1", "W2", "b2")


@dataclass
class MethodCase:
    """arrays: X, y (and X_val, y_val; initial params W1..b2 or W, absent for a lazy W); settings: train's keywords."""

    name: str
    arrays: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def params(self, kind):
        return [p for p in (NET_PARAMS if kind.startswith("two_layer") else ("W",)) if p in self.arrays]


def _data(rng, N, D, C):
    X = rng.standard_normal((N, D))  # (N, D)  continuous: every row is unique
    y = rng.permutation(np.arange(N) % C).astype(np.int64)  # (N,)  every class present, so C = max(y) + 1
    return X, y


def _net_params(rng, D, H, C, scale):
    return {"W1": scale * rng.standard_normal((D, H)), "b1": 0.5 * rng.standard_normal(H),
            "W2": scale * rng.standard_normal((H, C)), "b2": 0.5 * rng.standard_normal(C)}


def method_cases(kind):
    """The fixed cases of a train or predict kind (a fresh list). Batches of 8 of 40 and 10 of 20 rows: drawn with
    replacement, some batch repeats a row (P(no repeat in all 19 batches) < 1e-12 for a uniform draw)."""
    rng = np.random.default_rng(2319)
    cases = []
    if kind == "two_layer_train":
        for name, N, bs, iters in (("5 iterations per epoch", 40, 8, 12), ("2 iterations per epoch", 20, 10, 7)):
            X, y = _data(rng, N, 4, 3)
            X_val, y_val = _data(rng, 15, 4, 3)
            arrays = {"X": X, "y": y, "X_val": X_val, "y_val": y_val, **_net_params(rng, 4, 5, 3, 0.5)}
            settings = dict(learning_rate=0.3, learning_rate_decay=0.8, reg=0.05, num_iters=iters, batch_size=bs)
            cases.append(MethodCase(name, arrays, settings))
    elif kind == "linear_train":
        for name, N, bs, iters, lazy in (("W is None", 40, 8, 12, True), ("W given", 20, 10, 7, False)):
            X, y = _data(rng, N, 4, 3)
            arrays = {"X": X, "y": y} if lazy else {"X": X, "y": y, "W": 0.5 * rng.standard_normal((4, 3))}
            cases.append(MethodCase(name, arrays, dict(learning_rate=0.3, reg=0.05, num_iters=iters, batch_size=bs)))
    elif kind == "two_layer_predict":
        X, _ = _data(rng, 30, 4, 4)
        cases.append(MethodCase("random weights", {"X": X, **_net_params(rng, 4, 6, 4, 1.0)}))
    elif kind == "linear_predict":
        X, _ = _data(rng, 30, 4, 4)
        cases.append(MethodCase("random weights", {"X": X, "W": rng.standard_normal((4, 4))}))
    return cases


# ---- the course's loss (float64) ----

def softmax_rows(S):
    """S: (N, C) -> the row-wise softmax P: (N, C), max-shifted."""
    E = np.exp(S - S.max(axis=1, keepdims=True))  # (N, C)
    return E / E.sum(axis=1, keepdims=True)


def course_scores(params, X):
    """Scores (N, C): X W for a linear classifier, H1 W2 + b2 with H1 = max(0, X W1 + b1) for the two-layer net."""
    if "W" in params:
        return X @ params["W"]
    return np.maximum(X @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]


def course_loss(params, X, y, reg):
    """(loss, grads) of the softmax loss + reg * sum(W*W) over the weights; grads has the keys of params."""
    N = X.shape[0]
    P = softmax_rows(course_scores(params, X))  # (N, C)
    loss = -np.mean(np.log(P[np.arange(N), y]))
    dS = P.copy()  # (N, C)  dscores = (P - Y) / N
    dS[np.arange(N), y] -= 1
    dS /= N
    if "W" in params:
        W = params["W"]
        return float(loss + reg * np.sum(W * W)), {"W": X.T @ dS + 2 * reg * W}
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    S1 = X @ W1 + b1  # (N, H)
    H1 = np.maximum(S1, 0)  # (N, H)
    dH1 = (dS @ W2.T) * (S1 > 0)  # (N, H)
    loss += reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    grads = {"W1": X.T @ dH1 + 2 * reg * W1, "b1": dH1.sum(axis=0), "W2": H1.T @ dS + 2 * reg * W2,
             "b2": dS.sum(axis=0)}
    return float(loss), grads


# ---- the spy ----

class SpyStop(BaseException):
    """Raised by the spy on a call it cannot answer (a BaseException: a student's ``except Exception`` passes it)."""


def _array(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.array(x)


class LossSpy:
    """Stands in for ``obj.loss``: records each training call and answers with the course's loss and gradients."""

    def __init__(self, obj, names):
        self.obj, self.names = obj, names
        self.calls, self.predict_calls = [], 0

    def params(self):
        if self.names == ("W",):
            return {"W": getattr(self.obj, "W", None)}
        store = getattr(self.obj, "params", None)
        return {n: (store.get(n) if hasattr(store, "get") else None) for n in self.names}

    def __call__(self, *args, **kwargs):
        X = args[0] if args else kwargs.get("X", kwargs.get("X_batch"))
        y = args[1] if len(args) > 1 else kwargs.get("y", kwargs.get("y_batch"))
        reg = args[2] if len(args) > 2 else kwargs.get("reg", 0.0)
        if X is None:
            raise SpyStop("looks unfinished: self.loss was called with X_batch None: draw the minibatch (fill in the "
                          "TODO)")
        given = [X, *self.params().values()]
        params = {n: None if p is None else np.array(_array(p), dtype=np.float64) for n, p in self.params().items()}
        missing = [n for n, p in params.items() if p is None]
        if missing:
            raise SpyStop(f"{', '.join(missing)} is None on the object when self.loss is called")
        X = np.array(_array(X), dtype=np.float64)
        if y is None:
            self.predict_calls += 1
            return _like(given, course_scores(params, X))
        y = np.array(_array(y))
        if y.shape != X.shape[:1] or not np.issubdtype(y.dtype, np.integer):
            raise SpyStop(f"y_batch has shape {y.shape} and dtype {y.dtype}; expected ({X.shape[0]},) class indices")
        loss, grads = course_loss(params, X, y, float(reg))
        caller = sys._getframe(1).f_locals
        local = {k: np.array(v, dtype=np.float64) for k, v in caller.items()
                 if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating) and v.ndim in (1, 2)
                 and any(v.shape == p.shape for p in params.values()) and k not in ("X", "X_batch", "X_val")}
        self.calls.append({"params": params, "X_batch": X, "y_batch": y, "reg": float(reg), "loss": loss,
                           "grads": {k: g.copy() for k, g in grads.items()}, "locals": local})
        return (loss, grads["W"]) if self.names == ("W",) else (loss, grads)


# ---- running the student's method ----

def _build(cls, kind, case):
    """An instance of cls with the case's parameters set (W None for a lazy linear case) and the spy as loss."""
    a = case.arrays
    state = np.random.get_state()
    try:
        if kind.startswith("two_layer"):
            D, H, C = a["W1"].shape[0], a["W1"].shape[1], a["W2"].shape[1]
            obj = cls(D, H, C, 1e-4) if binds(cls, D, H, C, 1e-4) else cls(D, H, C)
        else:
            obj = cls()
    finally:
        np.random.set_state(state)
    names = case.params(kind) if kind.startswith("two_layer") else ("W",)
    if kind.startswith("two_layer"):
        if not hasattr(getattr(obj, "params", None), "__setitem__"):
            raise SpyStop("the instance has no params dict (keys W1, b1, W2, b2)")
        for n in names:
            obj.params[n] = a[n].copy()
    else:
        obj.W = a["W"].copy() if "W" in a else None
    spy = LossSpy(obj, tuple(names))
    obj.loss = spy  # an instance attribute shadows the class's loss
    return obj, spy


def _record_train(i, case, kind, spy, obj, returned):
    """The arrays and meta of one train case: each spy call, the parameters after train, what train returned."""
    arrays, meta = {}, {"calls": len(spy.calls), "predict_calls": spy.predict_calls}
    for j, call in enumerate(spy.calls):
        for n, p in call["params"].items():
            arrays[f"{i}/{j}/before/{n}"] = p
        for n, g in call["grads"].items():
            arrays[f"{i}/{j}/grad/{n}"] = g
        for n, v in call["locals"].items():
            arrays[f"{i}/{j}/local/{n}"] = v
        arrays[f"{i}/{j}/X_batch"], arrays[f"{i}/{j}/y_batch"] = call["X_batch"], call["y_batch"]
    meta["reg"] = [c["reg"] for c in spy.calls]
    meta["loss"] = [c["loss"] for c in spy.calls]
    for n, p in spy.params().items():
        if p is not None:
            arrays[f"{i}/after/{n}"] = np.array(_array(p), dtype=np.float64)
    histories = {"loss_history": returned} if not isinstance(returned, dict) else returned
    meta["returned"] = type(returned).__name__
    meta["history_keys"] = sorted(str(k) for k in histories) if isinstance(returned, dict) else []
    for key in ("loss_history", "train_acc_history", "val_acc_history"):
        value = histories.get(key)
        try:
            arrays[f"{i}/history/{key}"] = np.array([float(np.asarray(_array(v))) for v in value], dtype=np.float64)
        except (TypeError, ValueError):  # None, not a list, or entries that are not numbers
            meta.setdefault("bad_history", {})[key] = type(value).__name__
    return arrays, meta


def _run_case(i, case, kind, cls, method, root):
    """(arrays, meta) of one case; meta["note"]/["status"] say why the call failed."""
    a, s = case.arrays, case.settings
    try:
        obj, spy = _build(cls, kind, case)
        np.random.seed(TRAIN_SEED + i)
        fn = getattr(obj, method)
        if kind == "two_layer_train":
            out = fn(a["X"].copy(), a["y"].copy(), a["X_val"].copy(), a["y_val"].copy(), verbose=False, **s)
        elif kind == "linear_train":
            out = fn(a["X"].copy(), a["y"].copy(), verbose=False, **s)
        else:
            out = fn(a["X"].copy())
    except SpyStop as e:
        return {}, {"note": str(e), "status": "FAIL"}
    except BaseException as e:  # SystemExit, KeyboardInterrupt and MemoryError too: one line, never a crash
        status, line = explain(e, root)
        return {}, {"note": line, "status": status}
    if kind.endswith("_train"):
        return _record_train(i, case, kind, spy, obj, out)
    meta = {"returned": type(out).__name__, "predict_calls": spy.predict_calls}
    if out is None:
        return {}, meta
    try:
        return {f"{i}/y_pred": np.array(_array(out), dtype=np.float64)}, meta
    except (TypeError, ValueError):
        return {}, meta


def run_method(name, kind, module, root):
    """{"arrays": {...}, "meta": {"cases": [...]}} for one train or predict target, every case of its kind."""
    class_name, method = name.split(".", 1)
    cls = getattr(module, class_name)
    arrays, metas = {}, []
    for i, case in enumerate(method_cases(kind)):
        case_arrays, meta = _run_case(i, case, kind, cls, method, root)
        arrays.update(case_arrays)
        metas.append({"name": case.name, **meta})
    return {"arrays": arrays, "meta": {"cases": metas}}


# ---- which train and predict targets a file has ----

def family(name, cls):
    """"two_layer" (neural_net.TwoLayerNet, 2016-2019), "linear" (linear_classifier.py's classes) or None."""
    if not isinstance(cls, type):
        return None
    if name in LINEAR_NAMES or any(b.__name__ == "LinearClassifier" for b in cls.__mro__):
        return "linear" if binds(cls) else None
    try:
        return "two_layer" if detect_kind(name, cls) == "two_layer" else None
    except Unsupported:
        return None


def _fits(fn, kind):
    """Whether the method (taken from the class: self is the first parameter) takes the call verify makes."""
    case = method_cases(kind)[0]
    if kind == "two_layer_train":
        return binds(fn, None, 1, 2, 3, 4, verbose=False, **case.settings)
    if kind == "linear_train":
        return binds(fn, None, 1, 2, verbose=False, **case.settings)
    return binds(fn, None, 1)


def _methods_of(module, class_name, methods, override):
    """[(Class.method, kind, error)] for the given methods of one class of the module."""
    cls = getattr(module, class_name, None)
    fam = family(class_name, cls)
    out = []
    for method in methods:
        target = f"{class_name}.{method}"
        kind = override or (f"{'two_layer' if fam == 'two_layer' else 'linear'}_{method}" if fam else None)
        if cls is None:
            out.append((target, None, f"defines no {class_name!r}"))
        elif kind not in METHOD_KINDS:
            what = ("train or predict, or give --kind" if fam else
                    "a 2016-2019 TwoLayerNet(input_size, hidden_size, output_size, std) or a LinearClassifier")
            out.append((target, None, f"unsupported: {target}; expected {what}"))
        elif not callable(getattr(cls, method, None)):
            out.append((target, None, f"unsupported: class {class_name} has no {method} method"))
        elif not _fits(getattr(cls, method), kind):
            out.append((target, None, f"unsupported: {target}{signature_text(getattr(cls, method))}; expected "
                                      f"{KINDS[kind].api}"))
        else:
            out.append((target, kind, None))
    return out


def method_targets(module, name, override):
    """(targets, only): the train/predict targets for NAME (a class, or Class.method) or, with no NAME, for every
    class the module defines; only is True when NAME is wholly a method target (no loss target besides)."""
    if override is not None and override not in METHOD_KINDS:
        return [], False
    wanted = ("train",) if override and override.endswith("_train") else ("predict",) if override else None
    if name and "." in name:
        class_name, method = name.split(".", 1)
        return _methods_of(module, class_name, (method,), override), True
    if name:
        cls = getattr(module, name, None)
        fam = family(name, cls)
        if fam is None and override is None:
            return [], False
        present = tuple(m for m in ("train", "predict") if callable(getattr(cls, m, None))  # a net may have none
                        and not _from_a_library(cls))  # an nn.Module's train(mode) and predict are not cs231n's
        return _methods_of(module, name, wanted or present, override), bool(override) or fam != "two_layer"
    out = []
    for class_name, cls in vars(module).items():
        if not isinstance(cls, type) or cls.__module__ != module.__name__ or family(class_name, cls) is None:
            continue
        own = [m for m in ("train", "predict") if m in vars(cls)]  # inherited methods are checked in their class
        out += _methods_of(module, class_name, own, None)
    return out, False


def _like(given, scores):
    """scores as a tensor when the student's code works on tensors (X or a parameter is one), else as they are."""
    tensor = next((g for g in given if type(g).__module__.startswith("torch")), None)
    return scores if tensor is None else sys.modules["torch"].as_tensor(scores, device=tensor.device)


def _from_a_library(cls):
    """Whether cls is built on a library's class (torch.nn.Module, a LightningModule): its train(mode) and its
    parameters are that library's, not cs231n's API (the kit's checks judge those)."""
    return any(c.__module__.split(".")[0] in ("torch", "lightning", "pytorch_lightning") for c in cls.__mro__[1:])


def with_methods(targets_in, module, name, override):
    """targets_in(module, name, override) (verify/_child.py: the loss and layer targets) plus the train/predict
    targets; only the latter for a method, a method kind or a linear classifier, or a file with no other target."""
    methods, only = method_targets(module, name, override)
    defines_known = any(getattr(getattr(module, n, None), "__module__", None) == module.__name__ for n in KNOWN_NAMES)
    if only or (name is None and methods and not defines_known):
        return methods
    return targets_in(module, name, override) + methods
