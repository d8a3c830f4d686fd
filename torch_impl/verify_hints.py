"""Names the common mistake behind a wrong loss or gradient by fitting "mistake models" (used by
torch_impl/verify_targets.py; ``python -m train verify --target FILE.py:NAME`` prints the hints).

Usage::

    hints = diagnose("softmax", cases, outputs)   # {"dW": ["gradient not divided by N ..."], ...}

How: every quantity is split into exactly computed pieces, a data part and a regularization part (for W1/b1 the
data part is computed under several ReLU masks). A mistake model is a choice of coefficients, e.g. the gradient
``a * data + b * reg`` with a in {1, N, 1/N, -1, -N, 0} and b in {1, 0, 1/2, 2, -1}. A model explains a case when
it reproduces the user's array to 1e-5 relative; the hint is the simplest model that explains every case with a
finite output (reg = 0 cases constrain only a, N = 1 cases only b). No thresholds on error sizes, no guessing from
signs: a model either reproduces the numbers or it does not.
"""
import itertools

import numpy as np

from torch_impl.verify import errors

MATCH_RTOL = 1e-5  # the models differ from each other by >= 5e-2 on the verify cases
A = {"1": lambda n: 1.0, "N": lambda n: float(n), "1/N": lambda n: 1.0 / n, "-1": lambda n: -1.0,
     "-N": lambda n: -float(n), "0": lambda n: 0.0}  # coefficient of the data part
B_WEIGHT = (1.0, 0.0, 0.5, 2.0, -1.0)  # coefficient of the weight regularization part (2 reg W, reg sum W^2)
B_BIAS = (0.0, 1.0, 0.5)  # coefficient of a bias regularization part (2 reg b): cs231n has none
LOSS_A = {"1": lambda n: 1.0, "N": lambda n: float(n), "-1": lambda n: -1.0}
MASKS = ("S1 > 0", "none", "X W1 > 0", "dH1 > 0", "H1 values", "S1 <= 0")

A_PHRASES = {
    "N": "gradient not divided by N: its data part is N times too large (divide dscores by the batch size N)",
    "1/N": "data part divided by N twice (dscores already carries the 1/N)",
    "-1": "data part has the wrong sign: dscores must be P - Y (softmax minus one-hot), not Y - P",
    "-N": "data part has the wrong sign (use P - Y) and is not divided by N",
    "0": "data part of the gradient missing",
}
MASK_PHRASES = {
    "none": "ReLU mask missing: zero dH1 where S1 = X W1 + b1 <= 0 (dH1 *= S1 > 0)",
    "X W1 > 0": "ReLU mask taken on X W1 without the bias b1: mask by S1 = X W1 + b1 > 0 (or H1 > 0)",
    "dH1 > 0": "ReLU mask taken on the upstream gradient (dH1 > 0): mask by the forward input, S1 > 0",
    "H1 values": "dH1 multiplied by the activation H1 instead of the 0/1 mask (S1 > 0)",
    "S1 <= 0": "ReLU mask inverted: keep dH1 where S1 > 0, zero it elsewhere",
}
BIAS_PHRASES = {1.0: "bias regularized (2*reg*b): cs231n regularizes the weights only",
                0.5: "bias regularized (reg*b): cs231n regularizes the weights only"}
NOT_FINITE = ("NaN/Inf at large logits (scores ~1e3): no max subtraction? subtract each row's max score "
              "before exp, softmax is unchanged by it")


def _softmax_probs(S):
    """S: (N, C) -> P: (N, C), the stable softmax, and the per-example loss (N,)."""
    shifted = S - S.max(axis=1, keepdims=True)  # (N, C)
    lse = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    return np.exp(shifted - lse[:, None]), lse


def pieces(kind, case):
    """{quantity: {"data": {mask: array}, "reg": array, "bias_reg": array}} plus "loss" scalars, float64."""
    y, reg = case.y, case.reg
    if kind == "softmax":
        X, W = case.X, case.W
        N = X.shape[0]
        P, lse = _softmax_probs(X @ W)  # (N, C)
        L_data = float(np.mean(lse - (X @ W - (X @ W).max(axis=1, keepdims=True))[np.arange(N), y]))
        dS = P.copy()  # (N, C)  formula (4): (P - Y) / N
        dS[np.arange(N), y] -= 1
        dS /= N
        return {"loss": {"data": L_data, "reg": reg * np.sum(W * W), "bias_reg": 0.0},
                "dW": {"data": {"S1 > 0": X.T @ dS}, "reg": 2 * reg * W}}
    X, p = case.X, case.params
    N = X.shape[0]
    S1 = X @ p["W1"] + p["b1"]  # (N, H)
    H1 = np.maximum(S1, 0)  # (N, H)
    S2 = H1 @ p["W2"] + p["b2"]  # (N, C)
    P, lse = _softmax_probs(S2)
    L_data = float(np.mean(lse - (S2 - S2.max(axis=1, keepdims=True))[np.arange(N), y]))
    dS2 = P.copy()  # (N, C)  (P - Y) / N
    dS2[np.arange(N), y] -= 1
    dS2 /= N
    dH = dS2 @ p["W2"].T  # (N, H)  before the ReLU mask
    masks = {"S1 > 0": S1 > 0, "none": np.ones_like(S1), "X W1 > 0": X @ p["W1"] > 0, "dH1 > 0": dH > 0,
             "H1 values": H1, "S1 <= 0": S1 <= 0}
    return {
        "loss": {"data": L_data, "reg": reg * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)),
                 "bias_reg": reg * (np.sum(p["b1"] ** 2) + np.sum(p["b2"] ** 2))},
        "W1": {"data": {m: X.T @ (dH * k) for m, k in masks.items()}, "reg": 2 * reg * p["W1"]},
        "b1": {"data": {m: np.sum(dH * k, axis=0) for m, k in masks.items()}, "bias_reg": 2 * reg * p["b1"]},
        "W2": {"data": {"S1 > 0": H1.T @ dS2}, "reg": 2 * reg * p["W2"]},
        "b2": {"data": {"S1 > 0": np.sum(dS2, axis=0)}, "bias_reg": 2 * reg * p["b2"]},
    }


def _models(quantity, piece):
    """Yield (model, deviations, predict(N)) for one quantity; model = (mask, a, b) or (a, b, c) for the loss."""
    if quantity == "loss":
        for (a, fa), b, c in itertools.product(LOSS_A.items(), B_WEIGHT, B_BIAS):
            dev = (a != "1") + (b != 1.0) + (c != 0.0)
            yield (a, b, c), dev, lambda n, fa=fa, b=b, c=c: fa(n) * piece["data"] + b * piece["reg"] + c * piece[
                "bias_reg"]
        return
    bias = "bias_reg" in piece
    extra, bs = (piece["bias_reg"], B_BIAS) if bias else (piece["reg"], B_WEIGHT)
    correct_b = 0.0 if bias else 1.0
    for (m, data), (a, fa), b in itertools.product(piece["data"].items(), A.items(), bs):
        dev = (m != "S1 > 0") + (a != "1") + (b != correct_b)
        yield (m, a, b), dev, lambda n, data=data, fa=fa, b=b, extra=extra: fa(n) * data + b * extra


def _fit(quantity, piece_list, arrays, Ns):
    """The simplest model reproducing arrays[i] in every case i (None entries skipped), or None."""
    per_case = [list(_models(quantity, p)) for p in piece_list]
    best = None
    for i, (model, dev, _) in enumerate(per_case[0]):
        if best is not None and dev >= best[1]:
            continue
        if all(arr is None or errors(arr, models[i][2](n))[1] <= MATCH_RTOL
               for models, arr, n in zip(per_case, arrays, Ns)):
            best = (model, dev)
    return None if best is None else best[0]


def _phrases(quantity, model):
    if quantity == "loss":
        a, b, c = model
        out = []
        if a == "N":
            out.append("loss not averaged: it is the sum over the N examples (divide by N)")
        if a == "-1":
            out.append("loss has the wrong sign (it is -log of the true class probability, >= 0)")
        if b == 0.0:
            out.append("regularization term missing from the loss (add reg*sum(W*W))")
        elif b != 1.0:
            out.append(f"loss uses {b:g}*reg*sum(W*W); cs231n uses reg*sum(W*W)")
        if c:
            out.append("biases regularized in the loss: cs231n regularizes the weights only")
        return out
    m, a, b = model
    out = [MASK_PHRASES[m]] if m in MASK_PHRASES else []
    if quantity.startswith("b"):
        if a == "1/N":
            out.append("bias gradient averaged over the batch (mean): dscores already carries 1/N, use a sum")
        elif a == "-1":
            out.append("gradient of the wrong sign: db is the column sum of (P - Y) / N, not its negative")
        elif a != "1":
            out.append(A_PHRASES[a])
        if b:
            out.append(BIAS_PHRASES[b])
        return out
    if a == "-1" and b == -1.0:
        return out + ["gradient of the wrong sign: return dL/dW itself, not the descent direction -dL/dW"]
    if a != "1":
        out.append(A_PHRASES[a])
    if b == 0.0:
        out.append("regularization gradient missing (add 2*reg*W, the gradient of reg*sum(W*W))")
    elif b == 0.5:
        out.append("regularization gradient is reg*W, but the loss reg*sum(W*W) has gradient 2*reg*W")
    elif b == 2.0:
        out.append("regularization gradient is 4*reg*W, twice the gradient 2*reg*W of reg*sum(W*W)")
    elif b == -1.0:
        out.append("regularization gradient has the wrong sign (add +2*reg*W)")
    return out


def _reg_consistency(models, hints):
    """Rewrite the 0.5 factor hints when loss and gradient agree with each other but not with cs231n."""
    loss = models.get("loss")
    weights = [models[q] for q in ("dW", "W1", "W2") if models.get(q)]
    if loss is None or loss[1] != 0.5 or not weights:
        return
    if all(w[2] == 0.5 for w in weights):
        hints["loss"] = [h for h in hints.get("loss", []) if "0.5*reg" not in h] + [
            "your loss uses 0.5*reg*sum(W*W) and your gradient reg*W: consistent with each other, but cs231n "
            "uses reg*sum(W*W), whose gradient is 2*reg*W"]
        for q in ("dW", "W1", "W2"):
            if q in hints:
                hints[q] = [h for h in hints[q] if "reg*W, but" not in h] + [
                    "reg*W is the gradient of your 0.5*reg*sum(W*W); cs231n's reg*sum(W*W) needs 2*reg*W"]
    elif all(w[2] == 1.0 for w in weights):
        hints["loss"] = [h for h in hints.get("loss", []) if "0.5*reg" not in h] + [
            "your loss uses 0.5*reg*sum(W*W) but your gradient 2*reg*W is that of reg*sum(W*W) (cs231n's "
            "convention): make the loss reg*sum(W*W)"]


def diagnose(kind, cases, outputs, failed):
    """Hints for the failed quantities.

    cases: the verify cases; outputs: per case {quantity: float64 array of the expected shape, or None};
    failed: the set of failed quantities. Returns {quantity: [hint, ...]}.
    """
    piece_list = [pieces(kind, c) for c in cases]
    Ns = [c.X.shape[0] for c in cases]
    hints, models = {}, {}
    for q in sorted(failed):
        if q not in piece_list[0]:
            continue
        arrays = [o.get(q) for o in outputs]
        finite = [a if a is not None and np.all(np.isfinite(a)) else None for a in arrays]
        bad = [c.name for c, a in zip(cases, arrays) if a is not None and not np.all(np.isfinite(a))]
        found = []
        if bad:
            found.append(NOT_FINITE if bad == ["large logits"] else f"NaN/Inf in cases {', '.join(bad)}")
        model = _fit(q, [p[q] for p in piece_list], finite, Ns)
        if model is not None:
            models[q] = model
            found += _phrases(q, model)
        if (model is None or not _phrases(q, model)) and not bad and any(a is not None for a in finite):
            correct = [p[q]["data"]["S1 > 0"] + p[q].get("reg", 0.0) if q != "loss" else
                       p[q]["data"] + p[q]["reg"] for p in piece_list]
            worst = max(errors(a, c)[1] for a, c in zip(finite, correct) if a is not None)
            if worst > 1e-7:  # else the values are right and the failure is their shape
                found.append(f"off by a small relative error ({worst:.1e}): rounding, e.g. float32 arithmetic "
                             "somewhere? (this check runs in float64)" if worst < 1e-3 else
                             "does not match any of the common mistakes this tool knows")
        hints[q] = found
    for q in ("dW", "W1", "W2"):
        if q in piece_list[0] and q not in failed:
            models[q] = ("S1 > 0", "1", 1.0)  # it passed: the correct model
    _reg_consistency(models, hints)
    return {q: h for q, h in hints.items() if h}
