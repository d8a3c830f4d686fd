"""train() and a LightningModule's step, run with spies (the child's side); run_target dispatches every PyTorch kind.

The module's ``TwoLayerLoss`` (and ``two_layer_loss``) is replaced by the course's loss, which records the
parameters before each step and the batch of every call, and torch.optim.SGD by a subclass that counts its steps
and zero_grads. So the update is judged exactly (verify/torch_checks.py), whatever the student's loss does.

    result = run_target("train", "torch_train", module, cases_by_kind, root)   # {"arrays", "meta"}

A LightningModule is fitted for one step (max_steps=1) on one batch, by the Lightning its file imports.
"""
import inspect
import logging
import sys
import tempfile

import numpy as np

from verify.loading import explain
from verify.torch_child import Fail, _call, _function_case, _leaves, _loss_case, _np, _tensors, _torch
from verify.torch_kinds import CASES, PARAMS, is_autograd_function

TRAIN_LR = 0.5  # the learning rate train and the LightningModule get
TRAIN_CASES = ("random", "reg")  # the two-layer cases the loops run on (reg = 0 and reg > 0)
TRAIN_BATCHES = (3, 5)  # num_iters, batch_size
BATCH_SEED = 11


def train_batches(N):
    """The (num_iters, batch_size) row indices train() gets for a case of N rows."""
    return np.random.default_rng(BATCH_SEED).integers(0, N, size=TRAIN_BATCHES)


# ---- the spy: the course's loss in place of the student's, recording every call ----

def course_loss(X, y, W1, b1, W2, b2, reg):
    """The course's two-layer loss, differentiable: mean cross-entropy + reg * (sum W1^2 + sum W2^2)."""
    torch = _torch()
    scores = torch.clamp_min(X @ W1 + b1, 0) @ W2 + b2  # (N, C)
    return torch.nn.functional.cross_entropy(scores, y.long()) + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2))


class Spy:
    """Stands in for TwoLayerLoss (``Spy.apply``) and two_layer_loss (``spy.by_hand``); records each call."""

    def __init__(self):
        self.calls = []  # [(X_batch, y_batch, reg, {param: value before the step}, loss)]

    def apply(self, X, y, W1, b1, W2, b2, reg):
        loss = course_loss(X, y, W1, b1, W2, b2, reg)
        params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
        self.calls.append((_np(X), _np(y), float(reg), {p: _np(v).copy() for p, v in params.items()}, _np(loss)))
        return loss

    def by_hand(self, X, y, W1, b1, W2, b2, reg):
        torch = _torch()
        leaves = [t.detach().clone().requires_grad_(True) for t in (W1, b1, W2, b2)]
        loss = self.apply(X, y, *leaves, reg)
        grads = torch.autograd.grad(loss, leaves)
        return loss.detach(), dict(zip(("W1", "b1", "W2", "b2"), grads))


class OptimizerSpy:
    """torch.optim.SGD replaced by a subclass that counts steps and zero_grads and records its settings."""

    def __init__(self):
        torch = _torch()
        self.real, self.made, self.steps, self.zero_grads = torch.optim.SGD, [], 0, 0
        spy = self

        class SGD(self.real):
            def __init__(self, params, *args, **kwargs):
                super().__init__(params, *args, **kwargs)
                spy.made.append(self)

            def step(self, *args, **kwargs):
                spy.steps += 1
                return super().step(*args, **kwargs)

            def zero_grad(self, *args, **kwargs):
                spy.zero_grads += 1
                return super().zero_grad(*args, **kwargs)
        self.cls = SGD

    def install(self, module):
        _torch().optim.SGD = self.cls
        for k, v in vars(module).items():
            if v is self.real:
                setattr(module, k, self.cls)

    def remove(self, module):
        _torch().optim.SGD = self.real
        for k, v in vars(module).items():
            if v is self.cls:
                setattr(module, k, self.real)

    def settings(self, params):
        """[{"lr", "covers", "momentum", "weight_decay"}] of every SGD made; covers: how many of params it holds."""
        ids = {id(p) for p in params}
        return [{"lr": g["lr"], "momentum": g.get("momentum", 0.0), "weight_decay": g.get("weight_decay", 0.0),
                 "covers": sum(id(p) in ids for p in g["params"])} for opt in self.made for g in opt.param_groups]


def _install_loss_spy(module, spy):
    """Replace the module's TwoLayerLoss and two_layer_loss by the spy; returns what to restore."""
    saved = {k: getattr(module, k) for k in ("TwoLayerLoss", "two_layer_loss") if hasattr(module, k)}
    if is_autograd_function(saved.get("TwoLayerLoss")):
        module.TwoLayerLoss = spy
    if callable(saved.get("two_layer_loss")):
        module.two_layer_loss = spy.by_hand
    return saved


def _record_calls(spy, out, entry):
    entry["calls"] = len(spy.calls)
    entry["regs"] = [reg for _, _, reg, _, _ in spy.calls]
    for t, (xb, yb, _, params, loss) in enumerate(spy.calls):
        out[f"xb/{t}"], out[f"yb/{t}"], out[f"spyloss/{t}"] = xb, yb, loss
        out.update({f"snap/{t}/{p}": v for p, v in params.items()})




def _train_case(fn, module, case, root, out, entry):
    torch = _torch()
    X, y = _tensors(case, ("X", "y"))
    leaves = _leaves(case, PARAMS["two_layer"])
    params = dict(zip(PARAMS["two_layer"], leaves))
    spy, opt = Spy(), OptimizerSpy()
    saved = _install_loss_spy(module, spy)
    opt.install(module)
    try:
        history = _call(root, fn, X, y, params, torch.from_numpy(train_batches(case.N)), TRAIN_LR, case.reg)
    finally:
        opt.remove(module)
        vars(module).update(saved)
        _record_calls(spy, out, entry)
        entry.update(steps=opt.steps, zero_grads=opt.zero_grads, optimizers=opt.settings(leaves))
        entry["rebound"] = [p for p, leaf in zip(PARAMS["two_layer"], leaves) if params.get(p) is not leaf]
        out.update({f"final/{p}": _np(leaf) for p, leaf in zip(PARAMS["two_layer"], leaves)})
    try:
        out["history"] = np.array([float(v) for v in history], dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        entry["history_note"] = f"train returned a {type(history).__name__}; expected the list of the losses"


def _module_params(model):
    """{W1, b1, W2, b2: the model's tensors}, as attributes or in ``model.params``."""
    torch = _torch()
    found = {p: getattr(model, p, None) for p in PARAMS["two_layer"]}
    if not all(isinstance(v, torch.Tensor) for v in found.values()):
        params = getattr(model, "params", None)
        found = {p: params[p] for p in PARAMS["two_layer"]} if hasattr(params, "keys") and set(
            PARAMS["two_layer"]) <= set(params.keys()) else {}
    if not all(isinstance(v, torch.nn.Parameter) for v in found.values()) or not found:
        raise Fail("FAIL", "the module has no nn.Parameters W1, b1, W2, b2 (attributes, or a params dict)")
    return found


def _first_optimizer(returned):
    """The optimizer configure_optimizers returned (an optimizer, a list, a dict, ([optimizers], [schedulers]))."""
    while isinstance(returned, (list, tuple)) and returned:
        returned = returned[0]
    return returned.get("optimizer") if isinstance(returned, dict) else returned


def _make_module(cls, case, root, entry):
    names = [p.name for p in inspect.signature(cls).parameters.values()]
    D, H, C = case.arrays["W1"].shape[0], case.arrays["W1"].shape[1], case.arrays["W2"].shape[1]
    kwargs = {k: v for k, v in (("learning_rate", TRAIN_LR), ("lr", TRAIN_LR), ("reg", case.reg)) if k in names}
    entry["lr_given"], entry["reg_given"] = "learning_rate" in kwargs or "lr" in kwargs, "reg" in kwargs
    model = _call(root, cls, D, H, C, **kwargs)
    model.to(_torch().float64)  # verification runs in float64
    with _torch().no_grad():
        for p, param in _module_params(model).items():
            param.copy_(_torch().from_numpy(case.arrays[p]))
    return model


def _lightning_case(cls, module, case, root, out, entry):
    torch = _torch()
    lightning = sys.modules[cls.__mro__[[c.__name__ for c in cls.__mro__].index("LightningModule")].__module__
                            .split(".")[0]]
    model = _make_module(cls, case, root, entry)
    params = _module_params(model)
    out.update({f"before/{p}": _np(v).copy() for p, v in params.items()})
    optimizer = _first_optimizer(_call(root, model.configure_optimizers))
    entry["optimizer"] = type(optimizer).__name__
    groups = getattr(optimizer, "param_groups", [])
    entry["optimizers"] = [{"lr": g.get("lr"), "momentum": g.get("momentum", 0.0),
                            "weight_decay": g.get("weight_decay", 0.0),
                            "covers": sum(any(q is p for p in params.values()) for q in g["params"])} for g in groups]
    returned, step = [], model.training_step

    def training_step(*args, **kwargs):  # records what the student's step returns
        value = step(*args, **kwargs)
        returned.append("None" if value is None else type(value).__name__ if not isinstance(value, torch.Tensor)
                        else "Tensor with grad" if value.requires_grad else "Tensor without grad")
        return value
    model.training_step = training_step
    spy = Spy()
    saved = _install_loss_spy(module, spy)
    X, y = _tensors(case, ("X", "y"))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=case.N)
    for logger in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(logger).setLevel(logging.WARNING)  # the Trainer's banners are verify's, not the student's
    try:
        with tempfile.TemporaryDirectory(prefix="verify_lightning_") as tmp:
            trainer = lightning.Trainer(max_steps=1, max_epochs=1, accelerator="cpu", devices=1, logger=False,
                                        enable_checkpointing=False, enable_progress_bar=False,
                                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                                        default_root_dir=tmp)
            _call(root, trainer.fit, model, loader)
    finally:
        vars(module).update(saved)
        entry["returned"], entry["calls"] = returned, len(spy.calls)
        out.update({f"after/{p}": _np(v) for p, v in params.items()})


def run_target(name, kind, module, cases_by_kind, root):
    """{"arrays": {...}, "meta": {"cases": [...]}} for one target of a PyTorch kind."""
    cases = cases_by_kind[CASES[kind]]
    obj = getattr(module, name)
    run = {"two_layer_loss": _loss_case, "two_layer_function": _function_case, "softmax_function": _function_case,
           "torch_train": _train_case, "lightning_step": _lightning_case}[kind]
    if kind in ("torch_train", "lightning_step"):
        cases = [c for c in cases if c.name in TRAIN_CASES]
    arrays, meta = {}, {"cases": []}
    for i, case in enumerate(cases):
        entry = {"name": case.name, "note": None, "status": None}
        meta["cases"].append(entry)
        out = {}
        try:
            run(obj, module, case, root, out, entry)
        except Fail as e:
            entry["note"], entry["status"] = e.line, e.status
        except BaseException as e:  # an odd return this module did not foresee: still one line
            entry["status"], entry["note"] = explain(e, root)
        arrays.update({f"{i}/{k}": v for k, v in out.items() if v is not None})
    return {"arrays": arrays, "meta": meta}


