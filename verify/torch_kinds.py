"""The PyTorch kinds of target (the homework kit's, python -m verify homework): what they are and how to spot them.

    kind                 API
    two_layer_loss       two_layer_loss(X, y, W1, b1, W2, b2, reg) -> scores | (loss, grads), gradients by hand
    two_layer_function   class TwoLayerLoss(torch.autograd.Function): apply(X, y, W1, b1, W2, b2, reg) -> loss
    softmax_function     class SoftmaxLoss(torch.autograd.Function): apply(W, X, y, reg) -> loss
    torch_train          train(X, y, params, batches, learning_rate, reg) -> loss_history, with torch.optim.SGD
    lightning_step       a LightningModule(input_size, hidden_size, output_size, ..., learning_rate, reg) with
                         W1, b1, W2, b2, training_step(batch, batch_idx) and configure_optimizers()

Every kind runs on the cases of a NumPy kind (CASES: two_layer or softmax). Detection looks at names, base classes
and signatures only: this module imports neither torch nor Lightning (the child uses it before the student's code).
"""
import inspect

# name: (api, quantities, {param: gradient quantity}, regularized weights, default convention)
SPECS = {
    "two_layer_loss": ("two_layer_loss(X, y, W1, b1, W2, b2, reg) -> (loss, grads)",
                       ("scores", "loss", "W1", "b1", "W2", "b2"), {q: q for q in ("W1", "b1", "W2", "b2")},
                       ("W1", "W2"), "full"),
    "two_layer_function": ("TwoLayerLoss(torch.autograd.Function).apply(X, y, W1, b1, W2, b2, reg) -> loss",
                           ("loss", "W1", "b1", "W2", "b2", "grad_loss"), {}, ("W1", "W2"), "full"),
    "softmax_function": ("SoftmaxLoss(torch.autograd.Function).apply(W, X, y, reg) -> loss",
                         ("loss", "dW", "grad_loss"), {}, ("W",), "full"),
    "torch_train": ("train(X, y, params, batches, learning_rate, reg) -> loss_history (torch.optim.SGD)",
                    ("optimizer", "batch", "W1", "b1", "W2", "b2", "loss_history"), {}, ("W1", "W2"), "full"),
    "lightning_step": ("LightningModule(input_size, hidden_size, output_size, ..., learning_rate, reg): "
                       "training_step and configure_optimizers",
                       ("optimizer", "training_step", "W1", "b1", "W2", "b2"), {}, ("W1", "W2"), "full"),
}
CASES = {"two_layer_loss": "two_layer", "two_layer_function": "two_layer", "softmax_function": "softmax",
         "torch_train": "two_layer", "lightning_step": "two_layer"}
# the inputs of a Function's apply, in order, for each case kind; reg follows them
APPLY_INPUTS = {"two_layer": ("X", "y", "W1", "b1", "W2", "b2"), "softmax": ("W", "X", "y")}
PARAMS = {"two_layer": ("W1", "b1", "W2", "b2"), "softmax": ("W",)}
GRAD_NAMES = {"W1": "W1", "b1": "b1", "W2": "W2", "b2": "b2", "W": "dW"}

# the names the kit's files define (a file given without :NAME is searched for these); None: detect() decides
KNOWN_NAMES = {"two_layer_loss": "two_layer_loss", "TwoLayerLoss": None, "SoftmaxLoss": None, "train": None,
               "LitTwoLayerNet": None}
TRAIN_ARGS = ["X", "y", "params", "batches", "learning_rate", "reg"]


def _bases(cls):
    """'module.Name' of every class in cls's method resolution order."""
    return {f"{c.__module__}.{c.__qualname__}" for c in inspect.getmro(cls)}


def is_autograd_function(obj):
    return inspect.isclass(obj) and "torch.autograd.function.Function" in _bases(obj)


def is_lightning_module(obj):
    return inspect.isclass(obj) and any(b.endswith(".LightningModule") and b.split(".")[0] in (
        "lightning", "pytorch_lightning") for b in _bases(obj))


def _names(fn):
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        return []


def function_kind(cls):
    """'two_layer_function' or 'softmax_function' by the number of inputs forward takes (or None)."""
    names = _names(cls.forward)
    uses_ctx = any("setup_context" in vars(c) for c in inspect.getmro(cls) if not c.__module__.startswith("torch"))
    count = len(names) - (0 if uses_ctx else 1)  # forward(ctx, ...) unless setup_context takes the ctx
    return {7: "two_layer_function", 4: "softmax_function"}.get(count)


def detect(name, obj, override=None):
    """(kind, None) for a PyTorch kind, (None, "unsupported: ...") for a kit name with the wrong shape, or
    (None, None) when obj is none of these (the NumPy kinds decide)."""
    if override is not None and override not in SPECS:
        return None, None
    if is_autograd_function(obj):
        kind = override or function_kind(obj)
        if kind in ("two_layer_function", "softmax_function"):
            return kind, None
        return None, (f"unsupported: autograd.Function {name}.forward{_signature(obj.forward)}; expected "
                      f"{SPECS['two_layer_function'][0]} or {SPECS['softmax_function'][0]}")
    if is_lightning_module(obj):
        if not callable(getattr(obj, "training_step", None)):
            return None, f"unsupported: LightningModule {name} has no training_step; expected {_api('lightning_step')}"
        return "lightning_step", None
    if override in ("two_layer_loss", "torch_train") or name in ("two_layer_loss", "train"):
        kind = override or ("torch_train" if name == "train" else "two_layer_loss")
        expected = TRAIN_ARGS if kind == "torch_train" else ["X", "y", "W1", "b1", "W2", "b2", "reg"]
        if not inspect.isfunction(obj) or len(_names(obj)) < len(expected):
            return None, f"unsupported: {name}{_signature(obj)}; expected {_api(kind)}"
        return kind, None
    return None, None


def _api(kind):
    return SPECS[kind][0]


def _signature(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
