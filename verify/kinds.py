"""The kinds of target verify knows: cs231n's APIs of every course year, detected by name and signature.

    kind                   API                                                    course years
    softmax                softmax_loss_naive/vectorized(W, X, y, reg) -> (loss, dW)          2016+
    svm                    svm_loss_naive/vectorized(W, X, y, reg) -> (loss, dW)              2016+
    two_layer              neural_net.TwoLayerNet(input_size, hidden_size, output_size, std),
                           loss(X, y=None, reg=0.0) -> scores | (loss, grads)                 2016-2019
    fc_net                 fc_net.TwoLayerNet(input_dim, hidden_dim, num_classes, weight_scale, reg),
                           self.reg, loss(X, y=None) -> scores | (loss, grads)                2017+ (asg. 1 2020+)
    affine_forward         (x, w, b) -> (out, cache);  affine_backward (dout, cache) -> (dx, dw, db)
    relu_forward           (x) -> (out, cache);        relu_backward (dout, cache) -> dx
    affine_relu_forward    (x, w, b) -> (out, cache);  affine_relu_backward (dout, cache) -> (dx, dw, db)
    softmax_loss, svm_loss (x, y) -> (loss, dx)
    two_layer_train        neural_net.TwoLayerNet.train(X, y, X_val, y_val, learning_rate, learning_rate_decay, reg,
                           num_iters, batch_size) -> {loss_history, train_acc_history, val_acc_history}  2016-2019
    two_layer_predict      neural_net.TwoLayerNet.predict(X) -> (N,) labels                  2016-2019
    linear_train           linear_classifier.LinearClassifier.train(X, y, learning_rate, reg, num_iters, batch_size)
                           -> loss_history (Softmax, LinearSVM: through a subclass)          2016+
    linear_predict         linear_classifier.LinearClassifier.predict(X) -> (N,) labels      2016+

Imports nothing heavy: the child process uses it before it imports the student's code.
"""
import inspect
from dataclasses import dataclass

from reference_numpy.neural_net import PARAM_NAMES  # the one order of W1, b1, W2, b2 (numpy only, no torch)
from verify import torch_kinds


@dataclass(frozen=True)
class Kind:
    """quantities: what the target's outputs are compared on; params: what its own loss is differentiated in
    (centred finite differences), with the gradient quantity of each; regularized: the weights an L2 term uses."""

    name: str
    api: str
    quantities: tuple
    params: dict
    regularized: tuple = ()
    default_convention: str = ""
    forward: str = ""  # a backward target needs its module's forward for the cache


def _kind(name, api, quantities, params=None, regularized=(), default_convention="", forward=""):
    return Kind(name, api, tuple(quantities), dict(params or {}), tuple(regularized), default_convention, forward)


TWO_LAYER_GRADS = {p: p for p in PARAM_NAMES}
KINDS = {k.name: k for k in [
    _kind("softmax", "softmax_loss_*(W, X, y, reg) -> (loss, dW)", ("loss", "dW"), {"W": "dW"}, ("W",), "full"),
    _kind("svm", "svm_loss_*(W, X, y, reg) -> (loss, dW)", ("loss", "dW"), {"W": "dW"}, ("W",), "full"),
    _kind("two_layer", "TwoLayerNet(input_size, hidden_size, output_size, std) with params and "
          "loss(X, y=None, reg=0.0)", ("scores", "loss", *PARAM_NAMES), TWO_LAYER_GRADS, ("W1", "W2"), "full"),
    _kind("fc_net", "TwoLayerNet(input_dim, hidden_dim, num_classes, weight_scale, reg) with params, reg and "
          "loss(X, y=None)", ("scores", "loss", *PARAM_NAMES), TWO_LAYER_GRADS, ("W1", "W2"), "half"),
    _kind("affine_forward", "affine_forward(x, w, b) -> (out, cache)", ("out",)),
    _kind("affine_backward", "affine_backward(dout, cache) -> (dx, dw, db)", ("dx", "dw", "db"),
          {"x": "dx", "w": "dw", "b": "db"}, forward="affine_forward"),
    _kind("relu_forward", "relu_forward(x) -> (out, cache)", ("out",)),
    _kind("relu_backward", "relu_backward(dout, cache) -> dx", ("dx",), {"x": "dx"}, forward="relu_forward"),
    _kind("affine_relu_forward", "affine_relu_forward(x, w, b) -> (out, cache)", ("out",)),
    _kind("affine_relu_backward", "affine_relu_backward(dout, cache) -> (dx, dw, db)", ("dx", "dw", "db"),
          {"x": "dx", "w": "dw", "b": "db"}, forward="affine_relu_forward"),
    _kind("softmax_loss", "softmax_loss(x, y) -> (loss, dx)", ("loss", "dx"), {"x": "dx"}),
    _kind("svm_loss", "svm_loss(x, y) -> (loss, dx)", ("loss", "dx"), {"x": "dx"}),
    # methods, judged on what they do with a spy in place of self.loss (verify/spy.py, verify/train_checks.py)
    _kind("two_layer_train", "TwoLayerNet.train(X, y, X_val, y_val, learning_rate, learning_rate_decay, reg, "
          "num_iters, batch_size) -> dict of histories", ("call", "iterations", "batch_size", "batch_rows",
                                                          "batch_labels", "reg", "W1", "b1", "W2", "b2",
                                                          "learning_rate", "loss_history", "train_acc_history",
                                                          "val_acc_history")),
    _kind("two_layer_predict", "TwoLayerNet.predict(X) -> (N,) class labels", ("call", "y_pred")),
    _kind("linear_train", "LinearClassifier.train(X, y, learning_rate, reg, num_iters, batch_size) -> loss_history",
          ("call", "iterations", "init", "batch_size", "batch_rows", "batch_labels", "reg", "W", "learning_rate",
           "loss_history")),
    _kind("linear_predict", "LinearClassifier.predict(X) -> (N,) class labels", ("call", "y_pred")),
]}
METHOD_KINDS = ("two_layer_train", "two_layer_predict", "linear_train", "linear_predict")

# the names cs231n's files define, and the kind of each (a file given without :NAME is searched for these)
KNOWN_NAMES = {
    "softmax_loss_naive": "softmax", "softmax_loss_vectorized": "softmax",
    "svm_loss_naive": "svm", "svm_loss_vectorized": "svm",
    "TwoLayerNet": None,  # two_layer or fc_net: the signature decides
    **{name: name for name in ("affine_forward", "affine_backward", "relu_forward", "relu_backward",
                               "affine_relu_forward", "affine_relu_backward", "softmax_loss", "svm_loss")},
}

KINDS.update({name: _kind(name, *spec) for name, spec in torch_kinds.SPECS.items()})  # the PyTorch kit's kinds
KNOWN_NAMES.update(torch_kinds.KNOWN_NAMES)

CONVENTIONS = {
    "full": ("reg*sum(W*W), gradient 2*reg*W", "cs231n 2017-2019 softmax.py and neural_net.py"),
    "half": ("0.5*reg*sum(W*W), gradient reg*W", "cs231n 2016, and fc_net.py from 2017 on"),
}
REG_FACTOR = {"full": 1.0, "half": 0.5}  # the loss's L2 term is REG_FACTOR * reg * sum(W*W)


class Unsupported(Exception):
    """The object has none of the APIs verify knows (reported as ERROR, exit 2)."""


def parameter_names(obj):
    """The names of obj's parameters (a class: its __init__'s, without self); None when it has no signature."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # None, or a builtin without a signature
        return None
    return [p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def binds(obj, *args, **kwargs):
    """Whether obj(*args, **kwargs) fits its signature (True when it has none: the call decides)."""
    try:
        inspect.signature(obj).bind(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def signature_text(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _net_kind(cls):
    """'two_layer' or 'fc_net' for a class, by its __init__'s parameter names, else by how many it takes."""
    names = parameter_names(cls) or []
    if {"input_dim", "hidden_dim"} <= set(names) or "weight_scale" in names:
        return "fc_net"
    if {"input_size", "hidden_size"} <= set(names) or "std" in names:
        return "two_layer"
    if binds(cls, 1, 2, 3):  # other names: a loss that takes reg is the 2016-2019 API
        return "two_layer" if "reg" in (parameter_names(getattr(cls, "loss", None)) or []) else "fc_net"
    return None


def detect_kind(name, obj, override=None):
    """The kind of obj (found under ``name``); ``override`` (--kind) is taken when the signature fits it.
    Raises Unsupported with "unsupported: expected ..." when obj fits no API."""
    what = f"{name}{signature_text(obj)}"
    torch_kind, unsupported = torch_kinds.detect(name, obj, override)  # autograd.Function, train, LightningModule
    if unsupported:
        raise Unsupported(unsupported)
    if torch_kind:
        return torch_kind
    if inspect.isclass(obj):
        kind = override or _net_kind(obj)
        if kind not in ("two_layer", "fc_net"):
            raise Unsupported(f"unsupported: class {what}; expected {KINDS['two_layer'].api} (cs231n 2016-2019) "
                              f"or {KINDS['fc_net'].api} (fc_net.py)")
        if not callable(getattr(obj, "loss", None)):
            raise Unsupported(f"unsupported: class {name} has no loss method; expected {KINDS[kind].api}")
        init_args = (1, 2, 3) if kind == "two_layer" else ()
        init_kwargs = {} if kind == "two_layer" else {"input_dim": 1, "hidden_dim": 2, "num_classes": 3}
        if not binds(obj, *init_args, **init_kwargs):
            raise Unsupported(f"unsupported: class {what}; expected {KINDS[kind].api}")
        loss_ok = binds(obj.loss, None, 1, 2, reg=0.0) if kind == "two_layer" else binds(obj.loss, None, 1, 2)
        if not loss_ok:
            raise Unsupported(f"unsupported: {name}.loss{signature_text(obj.loss)}; expected {KINDS[kind].api}")
        return kind
    if not callable(obj):
        raise Unsupported(f"unsupported: {name} is a {type(obj).__name__}; expected a function or a class with "
                          "cs231n's API (see python -m verify --help)")
    kind = override or KNOWN_NAMES.get(name)
    if kind is None:  # a function under another name: the signature decides
        kind = "svm" if "svm" in name.lower() else "softmax" if binds(obj, 1, 2, 3, 4) else None
    if kind is None or kind in ("two_layer", "fc_net"):
        raise Unsupported(f"unsupported: function {what}; expected {KINDS['softmax'].api}, or one of cs231n's "
                          f"layer functions ({', '.join(n for n in KNOWN_NAMES if n in KINDS)})")
    arity = {"softmax": 4, "svm": 4, "affine_forward": 3, "affine_relu_forward": 3, "relu_forward": 1,
             "softmax_loss": 2, "svm_loss": 2}.get(kind, 2)
    if not binds(obj, *range(arity)):
        raise Unsupported(f"unsupported: function {what}; expected {KINDS[kind].api}")
    return kind
