"""The parent's verdict on the PyTorch kinds (verify/torch_kinds.py), from what the child recorded
(verify/torch_child.py, verify/torch_loops.py), in float64:

- two_layer_loss and autograd Functions: the outputs against the course's definition (torch.autograd,
  verify/references.py); the gradients against the target's own loss (finite differences) or, for a Function,
  against autograd of its own forward; a Function's backward must scale by the upstream gradient grad_loss.
- train: every step's update is p - lr * grad of the course's loss at the recorded parameters and batch; the
  optimizer is torch.optim.SGD with the given lr and steps once per batch; the loss history is returned.
- a LightningModule: one training_step under a Trainer changes the parameters by one SGD step of the course's
  loss, and configure_optimizers returns an SGD with the module's learning rate.

    fields = judge("two_layer_function", meta, arrays, seed)   # TargetResult's fields (rows: compare.Row)

Named mistakes come from verify/hints.py's mistake models (a wrong sign, a missing /N, a missing ReLU mask, ...)
and from the update models below (never steps, steps uphill, gradients accumulate).
"""
import numpy as np

from verify.cases import Case, cases_for
from verify.compare import NAN, Row, relative_error
from verify.hints import diagnose
from verify.references import reference
from verify.torch_child import UPSTREAM
from verify.torch_kinds import CASES, GRAD_NAMES, PARAMS, SPECS
from verify.torch_loops import TRAIN_CASES, TRAIN_LR, train_batches

COURSE_RTOL, OWN_RTOL = 1e-6, 1e-5  # as verify/checks.py: float64 code agrees to ~1e-14; centred differences ~1e-8
FULL = "full: reg*sum(W*W), gradient 2*reg*W (the kit's and cs231n 2017-2019's)"


def _rel(got, want):
    """The relative error of got against want (verify/compare.py); inf when their sizes differ."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return relative_error(got.reshape(want.shape), want) if got.size == want.size else float("inf")


def _row(case, quantity, check, err, tol, note=""):
    return Row(case, quantity, check, err, tol, bool(err <= tol), note)


def _result(rows, hints=None, notes=(), message="", status=None):
    passed = bool(rows) and all(r.passed for r in rows) and not message  # a PASS needs a computed row
    return {"status": status or ("PASS" if passed else "FAIL"), "message": message, "rows": rows,
            "hints": {q: h for q, h in (hints or {}).items() if h}, "notes": list(notes), "convention": "full",
            "convention_note": FULL}


def _one_line(metas, unfinished):
    """A result for a target that cannot be judged case by case: unfinished, or the same failure everywhere."""
    if unfinished:
        return _result([Row("every case", "call", "course", NAN, COURSE_RTOL, False, unfinished)],
                       message=f"looks unfinished: {unfinished} (fill in the TODO blocks)")
    errors = [m for m in metas if m.get("status") == "ERROR"]
    if errors:
        return _result([], message=errors[0]["note"], status="ERROR")
    notes = [m.get("note") for m in metas]
    if all(notes) and len(set(notes)) == 1:
        return _result([Row("every case", "call", "course", NAN, COURSE_RTOL, False, notes[0])],
                       message=f"{notes[0]} (in every case)")
    return None


def judge(kind, meta, arrays, seed=None):
    """TargetResult's fields for one target of a PyTorch kind, on the cases of the seed the child ran (None: the
    fixed cases)."""
    if kind == "torch_train":
        return _judge_train(meta, arrays, _cases("two_layer", seed, TRAIN_CASES))
    if kind == "lightning_step":
        return _judge_lightning(meta, arrays, _cases("two_layer", seed, TRAIN_CASES))
    return _judge_loss(kind, meta, arrays, _cases(CASES[kind], seed))


def _cases(case_kind, seed, names=None):
    """The cases of a NumPy kind the child ran a PyTorch kind on (those named in names, when given)."""
    cases = cases_for(case_kind) if seed is None else cases_for(case_kind, seed)
    return [c for c in cases if names is None or c.name in names]


def _outputs(kind, cases, arrays):
    grads = [GRAD_NAMES[p] for p in PARAMS[CASES[kind]]]
    names = [q for q in SPECS[kind][1] if q != "grad_loss"]
    return [{q: arrays.get(f"{i}/out/{q}") for q in names} for i in range(len(cases))], names, grads


def _unfinished_loss(kind, metas, outputs, grads):
    """'loss is None', 'backward returns None for ...' when every case that ran says so, else ''."""
    ran = [out for m, out in zip(metas, outputs) if not m.get("note")]
    if not ran:
        return ""
    missing = [q for q in grads if all(out[q] is None or not np.any(out[q]) for out in ran)]
    if all(out["loss"] is None for out in ran):
        if kind != "two_layer_loss":
            return "forward returns None"
        return "loss is None" + (f", grads has no {', '.join(missing)}" if len(missing) == len(grads) else "")
    if kind == "two_layer_loss" and all(not np.any(out["loss"]) for out in ran) and len(missing) == len(grads):
        return "loss is 0 and grads are empty"
    if len(missing) == len(grads):
        return f"{'grads has no' if kind == 'two_layer_loss' else 'backward returns None for'} {', '.join(missing)}"
    return ""


def _own_rows(case, i, out, params, arrays):
    rows = []
    for p in params:
        q = GRAD_NAMES[p]
        g, own = out.get(q), arrays.get(f"{i}/own/{q}")
        if g is None:
            continue
        if own is not None:
            rows.append(_row(case.name, q, "own", _rel(g, own), OWN_RTOL))
            continue
        fd, dirs = arrays.get(f"{i}/fd/{p}"), arrays.get(f"{i}/dir/{p}")
        if fd is None or g.size != case.arrays[p].size:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            gv = dirs.reshape(len(dirs), -1) @ g.reshape(-1)  # (k,)  <g, v> per direction
            scale = max(float(np.linalg.norm(g)), float(np.max(np.abs(fd))))
            err = float(np.max(np.abs(fd - gv))) / scale if scale > 0 else 0.0
        rows.append(_row(case.name, q, "own", err if np.isfinite(err) else NAN, OWN_RTOL))
    return rows


def _judge_loss(kind, meta, arrays, cases):
    case_kind = CASES[kind]
    metas = meta["cases"]
    outputs, names, grads = _outputs(kind, cases, arrays)
    early = _one_line(metas, _unfinished_loss(kind, metas, outputs, grads))
    if early:
        return early
    rows, notes = [], []
    for i, (case, m, out) in enumerate(zip(cases, metas, outputs)):
        if m.get("note"):
            rows.append(Row(case.name, "call", "course", NAN, COURSE_RTOL, False, m["note"]))
            continue
        want = reference(case_kind, case, "full")
        for q in names:
            if q == "scores" and out[q] is None and m.get("scores_note"):
                notes.append(m["scores_note"])
                continue
            if out[q] is None:
                rows.append(Row(case.name, q, "course", NAN, COURSE_RTOL, False, f"{q} is None"))
                continue
            shape = "" if out[q].size == np.size(want[q]) else f"{q} has shape {out[q].shape}, expected " \
                                                               f"{np.shape(want[q])}"
            rows.append(_row(case.name, q, "course", _rel(out[q], want[q]), COURSE_RTOL, shape))
        rows += _own_rows(case, i, out, PARAMS[case_kind], arrays)
        rows += _upstream_rows(kind, case, i, out, grads, arrays)
        if m.get("own_note"):
            notes.append(m["own_note"])
    failed = {r.quantity for r in rows if not r.passed and r.check == "course"}
    fitted = [{q: (v.reshape(np.shape(w)) if v is not None and v.size == np.size(w) else None)
               for q, v, w in ((q, out[q], reference(case_kind, c, "full")[q]) for q in names)}
              for c, out in zip(cases, outputs)]
    hints = diagnose(case_kind, cases, fitted, failed & set(names), "full")
    for q in {r.quantity for r in rows if not r.passed and r.check == "own"} - set(hints):
        hints[q] = [f"{q} is not the derivative of your own {'forward' if kind != 'two_layer_loss' else 'loss'}"
                    " (autograd of it, or finite differences, disagree)"]
    if any(not r.passed and r.quantity == "grad_loss" for r in rows):
        hints["grad_loss"] = ["backward ignores its argument grad_loss (the upstream gradient d(final)/d(loss)): "
                              "multiply every gradient by it, as the chain rule says"]
    return _result(rows, hints, sorted(set(notes)))


def _upstream_rows(kind, case, i, out, grads, arrays):
    """A Function's backward, called with grad_loss = UPSTREAM, returns UPSTREAM times its gradients."""
    if kind == "two_layer_loss":
        return []
    pairs = [(arrays.get(f"{i}/up/{q}"), out.get(q)) for q in grads]
    pairs = [(up, g) for up, g in pairs if up is not None and g is not None and up.size == g.size]
    if not pairs:
        return []
    err = max(_rel(up, UPSTREAM * g) for up, g in pairs)
    return [_row(case.name, "grad_loss", "own", err, OWN_RTOL)]


def course_step(case_name, xb, yb, reg, params):
    """{param: gradient of the course's loss} at the recorded batch and parameters."""
    case = Case(case_name, {"X": xb, "y": yb.astype(np.int64), **params}, reg)
    want = reference("two_layer", case, "full")
    return {p: want[p] for p in PARAMS["two_layer"]}


# ---- train and a LightningModule's step: every update against one SGD step of the course's loss ----

UPDATE_MISTAKES = {  # the update a common mistake makes, from the gradients of the steps so far and lr
    "never": lambda gs, lr: 0.0 * gs[-1],
    "uphill": lambda gs, lr: lr * gs[-1],
    "accumulates": lambda gs, lr: -lr * sum(gs),
}
UPDATE_HINTS = {
    "never": "{p} never changes: the optimizer never steps (optimizer.step() is not called, the loss is not "
             "returned, or {p} is not among the optimizer's parameters)",
    "uphill": "{p} moves up the gradient: the update is p - lr * grad (minimize the loss)",
    "accumulates": "the gradients accumulate across steps: call optimizer.zero_grad() before loss.backward()",
}


def _update_rows(case_name, steps, lr):
    """Rows and hints for each parameter over steps [(before, after, gradient)], each {param: array}."""
    rows, hints = [], {}
    for p in PARAMS["two_layer"]:
        deltas = [after[p] - before[p] for before, after, _ in steps]
        gs = [g[p] for _, _, g in steps]
        err = max(_rel(d, -lr * g) for d, g in zip(deltas, gs))
        rows.append(_row(case_name, p, "course", err, COURSE_RTOL))
        if err <= COURSE_RTOL:
            continue
        for name, model in UPDATE_MISTAKES.items():
            if all(_rel(d, model(gs[:t + 1], lr)) <= 1e-6 for t, d in enumerate(deltas)):
                hints[p] = [UPDATE_HINTS[name].format(p=p)]
                break
        else:
            flat_d, flat_g = (np.concatenate([a.ravel() for a in x]) for x in (deltas, gs))
            used = -float(flat_d @ flat_g) / float(flat_g @ flat_g) if np.any(flat_g) else 0.0
            if used and _rel(flat_d, -used * flat_g) <= 1e-6:
                hints[p] = [f"the step uses the learning rate {used:.6g}; expected learning_rate = {lr:g}"]
    return rows, hints


def _optimizer_note(settings, lr):
    """'' when one SGD holds the four parameters with lr and no momentum or weight decay, else what is off."""
    if not settings:
        return "no torch.optim.SGD was made"
    best = max(settings, key=lambda s: s["covers"])
    if best["covers"] < 4:
        return f"the SGD holds {best['covers']} of the 4 parameters W1, b1, W2, b2"
    if best["lr"] is None or abs(best["lr"] - lr) > 1e-12 * lr:
        return f"the SGD's lr is {best['lr']}; expected the learning rate given, {lr:g}"
    if best["momentum"] or best["weight_decay"]:
        return "the SGD has momentum or weight_decay: the course's update is plain p - lr * grad (reg is in the loss)"
    return ""


def _loop_case(case, m, arrays, i):
    """(rows, hints) of one case of train()."""
    batches, T = train_batches(case.N), len(train_batches(case.N))
    X, y = case.arrays["X"], case.arrays["y"]
    note = _optimizer_note(m.get("optimizers", []), TRAIN_LR) or (
        "" if m.get("steps") == T else f"optimizer.step() was called {m.get('steps', 0)} times for {T} batches")
    rows = [Row(case.name, "optimizer", "course", NAN if note else 0.0, 0.0, not note, note)]
    calls = m.get("calls", 0)
    batch_note = "" if calls == T else (f"the loss was computed {calls} times for {T} batches (once per batch, "
                                        "with TwoLayerLoss.apply)")
    for t in range(min(calls, T)):
        if batch_note:
            break
        xb, yb = arrays.get(f"{i}/xb/{t}"), arrays.get(f"{i}/yb/{t}")
        if xb is None or xb.shape != X[batches[t]].shape or not np.array_equal(xb, X[batches[t]]):
            batch_note = f"step {t}: the loss got other rows than X[indices] (X_batch)"
        elif not np.array_equal(yb, y[batches[t]]):
            batch_note = f"step {t}: the labels are not y[indices] (y_batch)"
        elif m["regs"][t] != case.reg:
            batch_note = f"step {t}: the loss got reg = {m['regs'][t]:g}; expected the reg given, {case.reg:g}"
    rows.append(Row(case.name, "batch", "course", NAN if batch_note else 0.0, 0.0, not batch_note, batch_note))
    if calls != T:
        return rows, {}
    snaps = [{p: arrays[f"{i}/snap/{t}/{p}"] for p in PARAMS["two_layer"]} for t in range(T)]
    snaps.append({p: arrays[f"{i}/final/{p}"] for p in PARAMS["two_layer"]})
    steps = [(snaps[t], snaps[t + 1], course_step(case.name, arrays[f"{i}/xb/{t}"], arrays[f"{i}/yb/{t}"],
                                                  m["regs"][t], snaps[t])) for t in range(T)]
    update_rows, hints = _update_rows(case.name, steps, TRAIN_LR)
    rows += update_rows
    if m.get("rebound"):
        for p in m["rebound"]:
            hints.setdefault(p, []).insert(0, f"params['{p}'] was rebound to a new tensor: update the caller's "
                                              "tensors in place (optimizer.step() does)")
    history, spy = arrays.get(f"{i}/history"), np.array([arrays[f"{i}/spyloss/{t}"] for t in range(T)])
    history_note = m.get("history_note", "") or ("" if history is not None and history.size == T else
                                                 f"loss_history has {0 if history is None else history.size} "
                                                 f"entries for {T} batches")
    err = NAN if history_note else _rel(history, spy)
    rows.append(_row(case.name, "loss_history", "course", err, COURSE_RTOL, history_note))
    return rows, hints


def _judge_train(meta, arrays, cases):
    metas = meta["cases"]
    idle = all(m.get("calls", 0) == 0 and m.get("steps", 0) == 0 and "NoneType" in (m.get("note") or "NoneType")
               for m in metas)  # the template's loss = None, never set
    early = _one_line(metas, "train neither computes the loss nor steps the optimizer" if idle else "")
    if early:
        return early
    rows, hints = [], {}
    for i, (case, m) in enumerate(zip(cases, metas)):
        if m.get("note"):
            rows.append(Row(case.name, "call", "course", NAN, COURSE_RTOL, False, m["note"]))
            continue
        case_rows, case_hints = _loop_case(case, m, arrays, i)
        rows += case_rows
        for q, h in case_hints.items():
            hints.setdefault(q, [x for x in h if x not in hints.get(q, [])] + hints.get(q, []))
    return _result(rows, hints)


STEP_NOTES = {"None": "training_step returned None: Lightning then skips the step; return the loss",
              "Tensor without grad": "training_step returned a loss without a graph (.item(), .detach() or no_grad): "
                                     "return the tensor TwoLayerLoss.apply gives"}


def _lightning_rows(case, m, arrays, i):
    given = [g["lr"] for g in m.get("optimizers", []) if g.get("lr")]
    lr = TRAIN_LR if m.get("lr_given") or not given else given[0]  # a module without a learning_rate argument
    note = ("configure_optimizers returned None: return torch.optim.SGD(self.parameters(), lr=self.learning_rate)"
            if m.get("optimizer") == "NoneType" else
            f"configure_optimizers returned a {m.get('optimizer')}; expected torch.optim.SGD"
            if m.get("optimizer") != "SGD" else _optimizer_note(m.get("optimizers", []), lr) if m.get("lr_given")
            else "")
    rows = [Row(case.name, "optimizer", "course", NAN if note else 0.0, 0.0, not note, note)]
    returned = m.get("returned", [])
    step_note = ("training_step was never called" if not returned else
                 STEP_NOTES.get(returned[0], "") if returned[0] not in ("Tensor with grad", "dict") else "")
    rows.append(Row(case.name, "training_step", "course", NAN if step_note else 0.0, 0.0, not step_note, step_note))
    before = {p: arrays[f"{i}/before/{p}"] for p in PARAMS["two_layer"]}
    after = {p: arrays[f"{i}/after/{p}"] for p in PARAMS["two_layer"]}
    reg = case.reg if m.get("reg_given") else 0.0
    g = course_step(case.name, case.arrays["X"], case.arrays["y"], reg, before)
    update_rows, hints = _update_rows(case.name, [(before, after, g)], lr)
    return rows + update_rows, hints


def _judge_lightning(meta, arrays, cases):
    metas = meta["cases"]
    idle = all(m.get("optimizer") == "NoneType" and set(m.get("returned", [])) <= {"None"} for m in metas)
    early = _one_line(metas, "training_step returns None and configure_optimizers returns None" if idle else "")
    if early:
        return early
    rows, hints = [], {}
    for i, (case, m) in enumerate(zip(cases, metas)):
        if m.get("note"):
            rows.append(Row(case.name, "call", "course", NAN, COURSE_RTOL, False, m["note"]))
            continue
        case_rows, case_hints = _lightning_rows(case, m, arrays, i)
        rows += case_rows
        for q, h in case_hints.items():
            hints.setdefault(q, h)
    return _result(rows, hints)
