"""Judges a student's train() and predict() from what the loss spy recorded in the child (verify/spy.py).

    judge_method(result, meta, arrays)    # fills a fresh TargetResult of kind two_layer_train: rows and hints

train, per case: how often self.loss was called (num_iters), the batch size, every row of X_batch a row of X,
y_batch those rows' labels, reg passed on, drawn with replacement (without: a note), the update p - lr_t * grad of
every parameter on the object, the learning-rate schedule (TwoLayerNet: times learning_rate_decay once per epoch,
whenever it % iterations_per_epoch == 0 with iterations_per_epoch = max(N / batch_size, 1); LinearClassifier:
constant), loss_history, the accuracy histories once per epoch (TwoLayerNet), and LinearClassifier's lazy
W = 0.001 * randn(D, C). predict: the argmax class of the course's scores on random weights. Every figure is
exact in float64 (the spy returns the course's gradients), so the tolerance is rounding, 1e-8.
"""
import numpy as np

from verify.compare import Row
from verify.kinds import KINDS
from verify.predict_checks import judge_predict
from verify.spy import TRAIN_SEED, course_scores, method_cases

TOL = 1e-8  # float64 rounding of p - lr * grad and of lr *= decay is ~1e-15 relative; every mistake is >= 1e-2
PARAMS = {"two_layer_train": ("W1", "b1", "W2", "b2"), "linear_train": ("W",)}
HINTS = {
    "full batch": "full batch instead of a minibatch: draw batch_size row indices each iteration, "
                  "idx = np.random.choice(num_train, batch_size), and use X[idx], y[idx]",
    "batch size": "the minibatch must hold batch_size rows: np.random.choice(num_train, batch_size)",
    "rows": "X_batch must be rows of X: X[idx] for an index array idx",
    "labels": "X and y drawn with different index arrays: y_batch must hold the labels of X_batch's rows; draw one "
              "idx = np.random.choice(num_train, batch_size) and use it for both, X[idx] and y[idx]",
    "reg": "pass train's reg on to the loss: self.loss(X_batch, y=y_batch, reg=reg)",
    "iterations": "call self.loss once per iteration, num_iters times",
    "sign": "update sign wrong: gradient descent steps against the gradient, p -= learning_rate * grad",
    "unchanged": "never updated on the object: write the SGD update, self.params[name] -= learning_rate * grads[name]",
    "every iteration": "learning rate decayed every iteration: decay it once per epoch, "
                       "when it % iterations_per_epoch == 0",
    "never decayed": "learning rate never decayed: multiply it by learning_rate_decay once per epoch "
                     "(it % iterations_per_epoch == 0)",
    "constant": "the learning rate changes between iterations: LinearClassifier.train keeps it constant",
    "momentum": "the update carries the previous step (momentum): the course's train is plain SGD, "
                "p -= learning_rate * grad (momentum comes with the optimizers of assignment 2)",
    "not a step": "the update is not p - learning_rate * grad with this parameter's own gradient",
    "raised": "train calls self.predict for the accuracy histories: if TwoLayerNet.predict FAILs, fix it first",
    "dict": "return {'loss_history': ..., 'train_acc_history': ..., 'val_acc_history': ...}, as the template does",
    "loss_history": "loss_history must hold the loss self.loss returned at each iteration, in order",
    "acc": "expected (self.predict(X_batch) == y_batch).mean() and (self.predict(X_val) == y_val).mean() after "
           "the iteration's update, once per epoch (it % iterations_per_epoch == 0); if predict FAILs, fix it first",
    "before update": "record the accuracies after the iteration's update, as the template does",
    "init": "W must start as 0.001 * np.random.randn(dim, num_classes) when self.W is None, with "
            "num_classes = np.max(y) + 1",
    "reinit": "W reinitialised though it was set: initialise only when self.W is None (a second call of train "
              "continues from the trained W)",
}


def _rows_of(X):
    return {row.tobytes(): i for i, row in enumerate(X)}


def _calls(arrays, i, n, names):
    """Per spy call j: {"before": {p}, "grad": {p}, "X_batch", "y_batch", "local": {name: array}}."""
    calls = []
    for j in range(n):
        pre = f"{i}/{j}/"
        calls.append({"before": {p: arrays.get(f"{pre}before/{p}") for p in names},
                      "grad": {p: arrays.get(f"{pre}grad/{p}") for p in names},
                      "X_batch": arrays[f"{pre}X_batch"], "y_batch": arrays[f"{pre}y_batch"],
                      "local": {k[len(pre) + 6:]: v for k, v in arrays.items() if k.startswith(f"{pre}local/")}})
    return calls


def _batches(case, calls, reg):
    """{quantity: (passed, figure, note, hint key)} for batch_size, batch_rows, batch_labels and reg; plus a note."""
    a, s = case.arrays, case.settings
    N, bs = a["X"].shape[0], s["batch_size"]
    out, index, repeats = {}, _rows_of(a["X"]), False
    sizes = [c["X_batch"].shape[0] if c["X_batch"].ndim == 2 else -1 for c in calls]
    bad = next((j for j, n in enumerate(sizes) if n != bs), None)
    if bad is None:
        out["batch_size"] = (True, 0.0, "", None)
    else:
        full = sizes[bad] == N
        note = (f"X_batch is the whole X ({N} rows) in iteration {bad}" if full else
                f"X_batch has shape {calls[bad]['X_batch'].shape} in iteration {bad}; expected ({bs}, "
                f"{a['X'].shape[1]})")
        out["batch_size"] = (False, np.nan, note, "full batch" if full else "batch size")
    row_bad = label_bad = None
    for j, c in enumerate(calls):
        idx = [index.get(np.ascontiguousarray(r).tobytes()) for r in c["X_batch"]] if c["X_batch"].ndim == 2 else [None]
        if any(k is None for k in idx):
            row_bad = j if row_bad is None else row_bad
            continue
        repeats |= len(set(idx)) < len(idx)
        if label_bad is None and (c["y_batch"].shape != (len(idx),) or np.any(c["y_batch"] != a["y"][idx])):
            label_bad = j
    out["batch_rows"] = ((True, 0.0, "", None) if row_bad is None else
                         (False, np.nan, f"X_batch holds rows that are not rows of X (iteration {row_bad})", "rows"))
    if row_bad is None:
        out["batch_labels"] = ((True, 0.0, "", None) if label_bad is None else
                               (False, np.nan, f"y_batch is not the labels of X_batch's rows (iteration {label_bad})",
                                "labels"))
    regs = [c["reg"] for c in calls]
    wrong_reg = next((r for r in regs if not np.isclose(r, reg, rtol=1e-12, atol=0)), None)
    out["reg"] = ((True, 0.0, "", None) if wrong_reg is None else
                  (False, np.nan, f"self.loss got reg = {wrong_reg:g}; train was given reg = {reg:g}", "reg"))
    note = None
    if row_bad is None and bad is None and not repeats:
        note = (f"no minibatch of case '{case.name}' repeats a row: drawn without replacement? The course draws "
                "with replacement, np.random.choice(num_train, batch_size); both train well")
    return out, note


def expected_lrs(kind, case, n):
    """The course's learning rate at each of n iterations."""
    s = case.settings
    lr = s["learning_rate"]
    if kind == "linear_train":
        return np.full(n, lr)
    per_epoch = max(case.arrays["X"].shape[0] / s["batch_size"], 1)
    out = []
    for it in range(n):
        out.append(lr)
        if it % per_epoch == 0:
            lr *= s["learning_rate_decay"]
    return np.array(out)


def _step(before, after, grad):
    """(c, residual): after = before - c * grad + r, c by least squares, residual |r| / |c * grad|."""
    delta = (before - after).ravel()
    g = grad.ravel()
    gg = float(g @ g)
    if gg == 0 or not np.all(np.isfinite(delta)):
        return np.nan, np.inf
    c = float(delta @ g) / gg
    r = float(np.linalg.norm(delta - c * g))
    scale = float(np.linalg.norm(c * g))
    return c, (r / scale if scale > 0 else (0.0 if r <= 1e-300 else np.inf))


def _rebound_local(calls, j, p, lr):
    """The name of a local array of train's frame at call j + 1 that holds p's update of call j, if any."""
    if j + 1 >= len(calls):
        return None
    want = calls[j]["before"][p] - lr * calls[j]["grad"][p]
    for name, v in calls[j + 1]["local"].items():
        if v.shape == want.shape and np.allclose(v, want, rtol=1e-9, atol=1e-12):
            return name
    return None


def _updates(kind, case, calls, after):
    """{quantity: (passed, figure, note, hint key)} for every parameter and the learning rate."""
    names = PARAMS[kind]
    n = len(calls)
    want_lr = expected_lrs(kind, case, n)
    steps = {p: [] for p in names}  # per parameter, per iteration: (c, residual)
    for j, c in enumerate(calls):
        nxt = calls[j + 1]["before"] if j + 1 < n else after
        for p in names:
            b, a, g = c["before"][p], nxt.get(p), c["grad"][p]
            ok = a is not None and b is not None and a.shape == b.shape
            steps[p].append(_step(b, a, g) if ok else (np.nan, np.inf))
    fits = np.array([[c for c, r in steps[p]] for p in names])  # (P, n)
    good = np.array([[r <= TOL for c, r in steps[p]] for p in names])
    moved = good & (np.abs(fits) > TOL * want_lr)  # the parameters that took a step
    used = np.array([np.median(fits[moved[:, j], j]) if moved[:, j].any() else 0.0 if good[:, j].any() else np.nan
                     for j in range(n)])  # (n,)  the learning rate the moving parameters agree on
    out = {}
    for k, p in enumerate(names):
        out[p] = _judge_param(p, k, fits, good, used, want_lr, calls)
    lr_ok = np.isfinite(used) & (used > 0)
    if lr_ok.all():
        out["learning_rate"] = _judge_lr(kind, used, want_lr)
    return out


def _judge_param(p, k, fits, good, used, want_lr, calls):
    c, ok = fits[k], good[k]
    close = lambda x, y: np.isfinite(x) & np.isfinite(y) & (np.abs(x - y) <= TOL * np.maximum(np.abs(y), 1e-300))
    if np.all(ok & close(c, used) & (used > 0)):
        return True, 0.0, "", None
    err = float(np.nanmax(np.where(ok, np.abs(c - want_lr) / want_lr, np.inf)))
    if np.all(ok & (np.abs(c) <= TOL * want_lr)):
        j = next((j for j in range(len(c) - 1) if _rebound_local(calls, j, p, want_lr[j])), None)
        if j is not None:
            local = _rebound_local(calls, j, p, want_lr[j])
            return False, err, f"{p} never changes on the object, but train's local {local!r} holds its update", \
                f"rebound:{local}"
        return False, err, f"{p} never changes on the object", "unchanged"
    if np.all(ok & close(-c, want_lr)) or np.all(ok & (c < 0)):
        return False, err, f"{p} moves along +grad (p + lr * grad)", "sign"
    j = int(np.argmax(~(ok & close(c, used))))
    if not ok[j]:
        momentum = j > 0 and _is_momentum(calls, j, p)
        return False, err, f"{p}'s change in iteration {j} is not a multiple of its gradient", \
            "momentum" if momentum else "not a step"
    return False, err, (f"{p}'s step in iteration {j} is learning rate {c[j]:.3g}; expected {want_lr[j]:.3g}"), None


def _is_momentum(calls, j, p):
    """Whether p's change at iteration j is a combination of its gradient and its previous change."""
    if j + 1 >= len(calls):
        return False
    step = (calls[j + 1]["before"][p] - calls[j]["before"][p]).ravel()
    prev = (calls[j]["before"][p] - calls[j - 1]["before"][p]).ravel()
    A = np.stack([calls[j]["grad"][p].ravel(), prev], axis=1)  # (size, 2)
    coef, *_ = np.linalg.lstsq(A, step, rcond=None)
    return bool(np.linalg.norm(A @ coef - step) <= 1e-8 * np.linalg.norm(step) and coef[1] != 0)


def _judge_lr(kind, used, want):
    err = float(np.max(np.abs(used - want) / want))
    if err <= TOL:
        return True, err, "", None
    lr0 = want[0]
    j = int(np.argmax(np.abs(used - want) / want))
    note = f"learning rate {used[j]:.6g} in iteration {j}; expected {want[j]:.6g}"
    if kind == "linear_train":
        return False, err, note, "constant" if np.allclose(used[0], lr0, rtol=TOL) else None
    if np.allclose(used, lr0, rtol=TOL, atol=0):
        return False, err, note, "never decayed"
    decay = want[1] / want[0] if len(want) > 1 and want[1] != want[0] else None
    if decay and np.allclose(used, lr0 * decay ** np.arange(len(used)), rtol=1e-9, atol=0):
        return False, err, note, "every iteration"
    return False, err, note, None


def _histories(kind, case, calls, after, got, meta):
    """{quantity: (passed, figure, note, hint key)} for loss_history and (TwoLayerNet) the accuracy histories."""
    out = {}
    bad = meta.get("bad_history", {})
    if kind == "two_layer_train" and meta.get("returned") != "dict":
        note = f"train returned a {meta.get('returned')}; expected a dict with loss_history, train_acc_history, " \
               "val_acc_history"
        return {q: (False, np.nan, note, "dict") for q in ("loss_history", "train_acc_history", "val_acc_history")}
    want = {"loss_history": np.array(meta.get("loss", []), dtype=np.float64)}
    whole = early = {}
    if kind == "two_layer_train":
        accuracies, whole, early = _accuracies(case, calls, after)
        want.update(accuracies)
    for q, w in want.items():
        g = got.get(q)
        key = "loss_history" if q == "loss_history" else "acc"
        if g is None:
            if bad.get(q) == "NoneType":
                note = f"{q} is missing (train's dict has {', '.join(meta['history_keys']) or 'no keys'})"
            else:
                note = f"{q} is a {bad.get(q)} whose entries are not all numbers"
            out[q] = (False, np.nan, note, key)
        elif g.shape != w.shape:
            often = " (every iteration, not once per epoch)" if q != "loss_history" and len(g) == len(calls) else ""
            out[q] = (False, np.nan, f"{q} has {len(g)} entries, expected {len(w)}{often}", key)
        elif np.allclose(g, w, rtol=1e-12, atol=1e-12):
            out[q] = (True, 0.0, "", None)
        elif q == "train_acc_history" and np.allclose(g, whole[q], rtol=1e-12, atol=1e-12):
            out[q] = (True, 0.0, "train accuracy on the whole X, not on the current minibatch as in the course", None)
        elif q != "loss_history" and np.allclose(g, early[q], rtol=1e-12, atol=1e-12):
            out[q] = (False, np.nan, f"{q} holds the accuracies before the iteration's update", "before update")
        else:
            err = float(np.max(np.abs(g - w)) / max(float(np.max(np.abs(w))), 1e-300))
            j = int(np.argmax(np.abs(g - w)))
            out[q] = (False, err, f"{q}[{j}] is {g[j]:.6g}, expected {w[j]:.6g}", key)
    return out


def _accuracies(case, calls, after):
    """The course's accuracy histories of a two-layer train, plus two variants: ({q: (epochs,)}, train accuracy on
    the whole X, the accuracies before the iteration's update)."""
    acc = lambda p, X, y: np.mean(np.argmax(course_scores(p, X), axis=1) == y)
    a = case.arrays
    per_epoch = max(a["X"].shape[0] / case.settings["batch_size"], 1)
    epochs = [it for it in range(len(calls)) if it % per_epoch == 0]
    trained = [calls[it + 1]["before"] if it + 1 < len(calls) else after for it in epochs]  # after the update
    batches = [(calls[it]["X_batch"], calls[it]["y_batch"]) for it in epochs]
    want = {"train_acc_history": np.array([acc(p, X, y) for p, (X, y) in zip(trained, batches)]),
            "val_acc_history": np.array([acc(p, a["X_val"], a["y_val"]) for p in trained])}
    whole = {"train_acc_history": np.array([acc(p, a["X"], a["y"]) for p in trained])}
    before = [calls[it]["before"] for it in epochs]
    early = {"train_acc_history": np.array([acc(p, X, y) for p, (X, y) in zip(before, batches)]),
             "val_acc_history": np.array([acc(p, a["X_val"], a["y_val"]) for p in before])}
    return want, whole, early


def _init(i, case, calls):
    """{"init": ...} for LinearClassifier: lazy 0.001 * randn(D, C) when W is None, else W kept."""
    W = calls[0]["before"]["W"]
    D, C = case.arrays["X"].shape[1], int(case.arrays["y"].max()) + 1
    if "W" in case.arrays:
        same = W.shape == case.arrays["W"].shape and np.array_equal(W, case.arrays["W"])
        return {"init": (True, 0.0, "", None) if same else (False, np.nan, "W changed before the first loss call",
                                                            "reinit")}
    want = 0.001 * np.random.RandomState(TRAIN_SEED + i).randn(D, C)
    if W.shape != want.shape:
        return {"init": (False, np.nan, f"W has shape {W.shape}; expected (D, C) = {want.shape}", "init")}
    if np.allclose(W, want, rtol=1e-12, atol=0):
        return {"init": (True, 0.0, "", None)}
    if 5e-4 <= W.std() <= 2e-3 and abs(W.mean()) < 5e-4:  # the same scale from another draw
        return {"init": (True, 0.0, f"W starts at std {W.std():.2g}, not the course's 0.001 * np.random.randn"
                                    "(D, C) from the same random state", None)}
    return {"init": (False, np.nan, f"W starts with std {W.std():.3g}, mean {W.mean():.3g}; expected 0.001 * "
                                    "np.random.randn(D, C)", "init")}


def judge_train(kind, meta, arrays):
    """[(case, quantity, (passed, figure, note, hint key))] and notes of a train target."""
    items, notes = [], []
    for i, (case, m) in enumerate(zip(method_cases(kind), meta["cases"])):
        if m.get("note"):
            raised = "raised" if kind == "two_layer_train" else None
            items.append((case.name, "call", (False, np.nan, m["note"], raised)))
            continue
        n, want = m["calls"], case.settings["num_iters"]
        calls = _calls(arrays, i, n, PARAMS[kind])
        for c, reg in zip(calls, m["reg"]):
            c["reg"] = reg
        items.append((case.name, "iterations", (n == want, 0.0 if n == want else np.nan, "" if n == want else
                                                f"self.loss was called {n} times with labels; expected num_iters "
                                                f"= {want}" + (" (twice per iteration?)" if n == 2 * want else ""),
                                                "iterations")))
        if n == 0:
            continue
        if n != want:  # the updates and histories assume one call per iteration
            items += [(case.name, q, v) for q, v in _batches(case, calls, case.settings["reg"])[0].items()]
            continue
        after = {p: arrays.get(f"{i}/after/{p}") for p in PARAMS[kind]}
        got = {q: arrays.get(f"{i}/history/{q}") for q in ("loss_history", "train_acc_history", "val_acc_history")}
        parts, note = _batches(case, calls, case.settings["reg"])
        if kind == "linear_train":
            parts.update(_init(i, case, calls))
        parts.update(_updates(kind, case, calls, after))
        parts.update(_histories(kind, case, calls, after, got, m))
        notes += [note] if note else []
        items += [(case.name, q, parts[q]) for q in parts]
    return items, notes


def _hint_text(kind, key):
    if key and key.startswith("rebound:"):
        local = key.split(":", 1)[1]
        store = "self.W" if kind == "linear_train" else "self.params[...]"
        return (f"parameters rebound locally: `{local} = {local} - learning_rate * grad` changes a local name, not "
                f"the object; update in place ({local} -= ...) or store it back ({store} = {local})")
    if key == "unchanged" and kind == "linear_train":
        return "never updated on the object: write the SGD update, self.W -= learning_rate * grad"
    return HINTS.get(key, key)


def judge_method(result, meta, arrays):
    """Fill result (a fresh TargetResult of a train or predict kind: verify/checks.py) from the child's record, and
    return it."""
    kind = result.kind
    metas = meta["cases"]
    errors = [m for m in metas if m.get("status") == "ERROR"]
    if errors:  # Python 2 inside the method, a name NumPy removed: not the algorithm
        result.status, result.message = "ERROR", errors[0]["note"]
        return result
    notes = [m.get("note") for m in metas]
    if all(notes) and len(set(notes)) == 1:  # the same failure in every case: one line
        result.status, result.message = "FAIL", f"{notes[0]} (in every case)"
        result.rows.append(Row("every case", "call", "course", np.nan, TOL, False, notes[0]))
        return result
    items, result.notes = judge_train(kind, meta, arrays) if kind.endswith("_train") else \
        (judge_predict(kind, meta, arrays), [])
    for case, q, (passed, figure, note, hint) in items:
        result.rows.append(Row(case, q, "course", figure, TOL, bool(passed), note))
        text = _hint_text(kind, hint) if not passed else None
        if text and text not in result.hints.get(q, []):
            result.hints.setdefault(q, []).append(text)
    result.status = "PASS" if all(r.passed for r in result.rows) else "FAIL"
    return result


def format_method(result, output_block):
    """The text report of a train or predict target (what ``python -m verify --target`` prints for it)."""
    lines = [f"== {result.where}:{result.name}  ({result.kind}: {KINDS[result.kind].api}; float64, a spy in "
             "place of self.loss)", *output_block]
    if result.message:
        return "\n".join(lines + [f"{result.status} {result.message}"])
    lines.append(f"{'case':<24} {'quantity':<17} {'rel err':>8}  result")
    for r in result.rows:
        figure = "-" if r.passed and not r.max_rel else "nan" if r.max_rel != r.max_rel else f"{r.max_rel:.1e}"
        lines.append(f"{r.case[:24]:<24} {r.quantity:<17} {figure:>8}  {r.status}" + (f"  {r.note}" if r.note else ""))
    for q in result.failed_quantities:
        first = next(r for r in result.rows if r.quantity == q and not r.passed)
        lines.append(f"FAIL {q}: {first.note or 'wrong'} (case '{first.case}')")
        lines += [f"  hint: {h}" for h in result.hints.get(q, [])]
    lines += [f"note: {n}" for n in result.notes]
    failed = f" ({', '.join(result.failed_quantities)})" if result.status != "PASS" else ""
    return "\n".join(lines + [f"result: {result.status}{failed}"])
