"""Names the common mistake behind a wrong loss, score or gradient by fitting "mistake models".

    hints = diagnose("softmax", cases, outputs, failed={"dW"}, convention="full")
    # {"dW": ["gradient not divided by N ..."], "stability": ["inf/NaN at logits ~1e3 ..."]}

How: every quantity is split into exactly computed pieces: a data part (for W1/b1 under several ReLU masks, for
the loss and the scores under several forward passes: the right one, without b1, without b2, without the ReLU)
and a regularization part under the convention in use (REG_FACTOR * reg * sum(W*W), gradient 2 * REG_FACTOR *
reg * W). A mistake model is a choice of coefficients, e.g. the gradient ``a * data + b * reg`` with a in {1, N,
1/N, -1, -N, 0} and b in {1, 0, 1/2, 2, -1}. A model explains a case when it reproduces the target's array to 1e-5
relative; the hint is the simplest model that explains every case with a finite output. The "large logits" case
is left out of the fit and judged on its own (stability), so an overflow there hides no other hint. No
thresholds on error sizes, no guessing from signs: a model either reproduces the numbers or it does not.
"""
import itertools

import numpy as np

from verify.cases import LARGE
from verify.compare import relative_error
from verify.kinds import REG_FACTOR

MATCH_RTOL = 1e-5  # the models differ from each other by >= 5e-2 on the verify cases
A = {"1": lambda n: 1.0, "N": lambda n: float(n), "1/N": lambda n: 1.0 / n, "-1": lambda n: -1.0,
     "-N": lambda n: -float(n), "0": lambda n: 0.0}  # coefficient of the data part
B_WEIGHT = (1.0, 0.0, 0.5, 2.0, -1.0)  # coefficient of the weight regularization part
B_BIAS = (0.0, 1.0, 0.5)  # coefficient of a bias regularization part: cs231n has none
B_LOSS = (1.0, 0.0, "no reg factor", 0.5, 2.0, -1.0)  # "no reg factor": sum(W*W) added without reg
LOSS_A = {"1": lambda n: 1.0, "N": lambda n: float(n), "-1": lambda n: -1.0}
MASKS = ("S1 > 0", "none", "X W1 > 0", "dH1 > 0", "H1 values", "S1 <= 0")
FORWARDS = ("right", "no b1", "no b2", "no ReLU")

A_PHRASES = {
    "N": "gradient not divided by N: its data part is N times too large (divide dscores by the batch size N)",
    "1/N": "data part divided by N twice (dscores already carries the 1/N)",
    "-1": "data part has the wrong sign: dscores must be P - Y (softmax minus one-hot), not Y - P",
    "-N": "data part has the wrong sign (use P - Y) and is not divided by N",
    "0": "data part of the gradient missing",
}
MASK_PHRASES = {  # the course's words: the hidden layer's input X W1 + b1, its output after the ReLU
    "none": "ReLU mask missing: zero the gradient flowing into the hidden layer where its input X W1 + b1 <= 0",
    "X W1 > 0": "ReLU mask taken on X W1 without the bias b1: mask where the hidden layer's input X W1 + b1 > 0 "
                "(or where the hidden layer's output is > 0)",
    "dH1 > 0": "ReLU mask taken on the upstream gradient (the gradient of the hidden layer > 0): mask by the "
               "forward input, X W1 + b1 > 0",
    "H1 values": "the gradient of the hidden layer multiplied by the hidden layer's values instead of the 0/1 "
                 "ReLU mask (X W1 + b1 > 0)",
    "S1 <= 0": "ReLU mask inverted: keep the gradient where the hidden layer's input X W1 + b1 > 0, zero it "
               "elsewhere",
}
FORWARD_PHRASES = {
    "no b1": "b1 missing from the forward pass: the hidden layer is max(0, X W1 + b1)",
    "no b2": "b2 missing from the forward pass: the scores are hidden_layer W2 + b2",
    "no ReLU": "no ReLU in the forward pass, so the net is linear: the hidden layer is max(0, X W1 + b1)",
}
BIAS_LOSS = "biases regularized in the loss: cs231n regularizes the weights only"
NOT_FINITE = ("inf/NaN at logits ~1e3: no max subtraction? subtract each row's max score before exp (softmax "
              "is unchanged by it)")
UNIMPLEMENTED = "looks unimplemented: it returns 0, zeros or None in every case (fill in the TODO)"


def _reg_text(f):
    return f"{'' if f == 1 else f'{f:g}*'}reg*sum(W*W)"


def _grad_text(c):
    return f"{'' if c == 1 else f'{c:g}*'}reg*W"


def _softmax_probs(S):
    """S: (N, C) -> P: (N, C), the stable softmax, and the per-example loss lse - s (N, C)."""
    shifted = S - S.max(axis=1, keepdims=True)  # (N, C)
    lse = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    return np.exp(shifted - lse[:, None]), lse[:, None] - shifted


def _data_loss(S, y):
    return float(np.mean(_softmax_probs(S)[1][np.arange(len(y)), y]))


def pieces(kind, case, convention):
    """{quantity: {"data": {variant: array}, "reg": array, ...}} for the mistake models, float64."""
    if kind not in ("softmax", "two_layer", "fc_net"):
        return None
    a, reg, f = case.arrays, case.reg, REG_FACTOR[convention]
    y = a["y"]
    if kind == "softmax":
        X, W = a["X"], a["W"]
        N = X.shape[0]
        P, _ = _softmax_probs(X @ W)  # (N, C)
        dS = P.copy()  # (N, C)  formula (4): (P - Y) / N
        dS[np.arange(N), y] -= 1
        dS /= N
        return {"loss": {"data": {"right": _data_loss(X @ W, y)}, "reg": f * reg * np.sum(W * W),
                         "wsq": f * np.sum(W * W), "bias_reg": 0.0},
                "dW": {"data": {"S1 > 0": X.T @ dS}, "reg": 2 * f * reg * W}}
    X, p = a["X"], a
    N = X.shape[0]
    S1 = X @ p["W1"] + p["b1"]  # (N, H)
    H1 = np.maximum(S1, 0)  # (N, H)
    S2 = H1 @ p["W2"] + p["b2"]  # (N, C)
    scores = {"right": S2, "no b1": np.maximum(X @ p["W1"], 0) @ p["W2"] + p["b2"], "no b2": H1 @ p["W2"],
              "no ReLU": S1 @ p["W2"] + p["b2"]}
    P, _ = _softmax_probs(S2)
    dS2 = P.copy()  # (N, C)  (P - Y) / N
    dS2[np.arange(N), y] -= 1
    dS2 /= N
    dH = dS2 @ p["W2"].T  # (N, H)  before the ReLU mask
    masks = {"S1 > 0": S1 > 0, "none": np.ones_like(S1), "X W1 > 0": X @ p["W1"] > 0, "dH1 > 0": dH > 0,
             "H1 values": H1, "S1 <= 0": S1 <= 0}
    wsq = np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)
    return {
        "scores": {"data": scores},
        "loss": {"data": {v: _data_loss(s, y) for v, s in scores.items()}, "reg": f * reg * wsq, "wsq": f * wsq,
                 "bias_reg": f * reg * (np.sum(p["b1"] ** 2) + np.sum(p["b2"] ** 2))},
        "W1": {"data": {m: X.T @ (dH * k) for m, k in masks.items()}, "reg": 2 * f * reg * p["W1"]},
        "b1": {"data": {m: np.sum(dH * k, axis=0) for m, k in masks.items()}, "bias_reg": 2 * f * reg * p["b1"]},
        "W2": {"data": {"S1 > 0": H1.T @ dS2}, "reg": 2 * f * reg * p["W2"]},
        "b2": {"data": {"S1 > 0": np.sum(dS2, axis=0)}, "bias_reg": 2 * f * reg * p["b2"]},
    }


def _models(quantity, piece):
    """Yield (model, deviations, predict(N)) for one quantity."""
    if quantity == "scores":
        for v, data in piece["data"].items():
            yield (v,), (v != "right"), lambda n, data=data: data
        return
    if quantity == "loss":
        for (v, data), (a, fa), b, c in itertools.product(piece["data"].items(), LOSS_A.items(), B_LOSS, B_BIAS):
            dev = (v != "right") + (a != "1") + (b != 1.0) + (c != 0.0)
            reg_part = piece["wsq"] if b == "no reg factor" else b * piece["reg"]
            yield (v, a, b, c), dev, lambda n, fa=fa, d=data, r=reg_part, c=c: fa(n) * d + r + c * piece["bias_reg"]
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
        if all(arr is None or relative_error(arr, models[i][2](n)) <= MATCH_RTOL
               for models, arr, n in zip(per_case, arrays, Ns)):
            best = (model, dev)
    return None if best is None else best[0]


def _phrases(quantity, model, convention):
    f = REG_FACTOR[convention]
    if quantity == "scores":
        return [FORWARD_PHRASES[model[0]]] if model[0] in FORWARD_PHRASES else []
    if quantity == "loss":
        v, a, b, c = model
        out = [FORWARD_PHRASES[v]] if v in FORWARD_PHRASES else []
        if a == "N":
            out.append("loss not averaged: it is the sum over the N examples (divide by N)")
        if a == "-1":
            out.append("loss has the wrong sign (it is -log of the true class probability, >= 0)")
        if b == 0.0:
            out.append(f"regularization term missing from the loss (add {_reg_text(f)})")
        elif b == "no reg factor":
            out.append(f"the loss adds {_reg_text(f).replace('reg*', '')} without the factor reg: "
                       f"use {_reg_text(f)}")
        elif b != 1.0:
            out.append(f"loss uses {_reg_text(f * b)}; expected {_reg_text(f)} (the {convention} convention)")
        if c:
            out.append(BIAS_LOSS)
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
            out.append(f"biases regularized in the gradient ({_grad_text(2 * f * b).replace('W', 'b')}): cs231n "
                       "regularizes the weights only")
        return out
    if a == "-1" and b == -1.0:
        return out + ["gradient of the wrong sign: return dL/dW itself, not the descent direction -dL/dW"]
    if a != "1":
        out.append(A_PHRASES[a])
    if b == 0.0:
        out.append(f"regularization gradient missing (add {_grad_text(2 * f)}, the gradient of {_reg_text(f)})")
    elif b == -1.0:
        out.append(f"regularization gradient has the wrong sign (add +{_grad_text(2 * f)})")
    elif b != 1.0:
        out.append(f"regularization gradient is {_grad_text(2 * f * b)}, but the loss {_reg_text(f)} has "
                   f"gradient {_grad_text(2 * f)}")
    return out


# layer mistakes: (quantity, wrong value at the case's arrays a, hint); the right values are references.py's
LAYER_MISTAKES = {
    "relu_backward": [
        ("dx", lambda a: a["dout"] * (a["dout"] > 0), "ReLU mask taken on dout, the upstream gradient: mask by "
                                                      "the forward input, dx = dout * (x > 0)"),
        ("dx", lambda a: a["dout"] * (a["x"] <= 0), "ReLU mask inverted: dx = dout * (x > 0)"),
        ("dx", lambda a: a["dout"], "ReLU mask missing: dx = dout * (x > 0)"),
    ],
    "affine_backward": [
        ("db", lambda a: a["dout"].mean(axis=0), "db averaged over the batch: it is the sum over axis 0"),
        ("dw", lambda a: a["x"].reshape(len(a["x"]), -1).T @ a["dout"] / len(a["x"]),
         "dw divided by N: the 1/N belongs to the loss, not to the affine layer"),
        ("dx", lambda a: (a["dout"] @ a["w"].T / len(a["x"])).reshape(a["x"].shape),
         "dx divided by N: the 1/N belongs to the loss, not to the affine layer"),
    ],
}


def _layer_hints(kind, cases, outputs, failed):
    """Hints for the layer kinds: the first listed mistake that reproduces every finite case."""
    hints = {}
    for q, wrong, text in LAYER_MISTAKES.get(kind, []):
        if q not in failed or q in hints:
            continue
        pairs = [(outputs[i].get(q), wrong(c.arrays)) for i, c in enumerate(cases) if c.name != LARGE]
        pairs = [(got, want) for got, want in pairs if got is not None and np.all(np.isfinite(got))]
        if pairs and all(got.shape == want.shape and relative_error(got, want) <= MATCH_RTOL for got, want in pairs):
            hints[q] = [text]
    return hints


def _other_convention_note(models, convention, hints):
    """When loss and gradients agree with each other under the other convention (only with --reg-convention)."""
    other = "half" if convention == "full" else "full"
    ratio = REG_FACTOR[other] / REG_FACTOR[convention]
    loss = models.get("loss")
    weights = [models[q] for q in ("dW", "W1", "W2") if q in models]
    if loss is None or loss[2] != ratio or not weights or any(w[2] != ratio for w in weights):
        return
    hints.setdefault("loss", []).append(
        f"your loss and gradient are consistent with each other under the {other} convention "
        f"({_reg_text(REG_FACTOR[other])}); --reg-convention auto accepts it")


def diagnose(kind, cases, outputs, failed, convention):
    """Hints for the failed quantities.

    cases: the verify cases; outputs: per case {quantity: float64 array of the expected shape, or None};
    failed: the set of failed quantities; convention: "full" or "half". Returns {quantity: [hint, ...]}, with
    a "stability" entry when only the large-logit case explains the failure.
    """
    hints, models = {}, {}
    fit_cases = [i for i, c in enumerate(cases) if c.name != LARGE]
    large = [i for i, c in enumerate(cases) if c.name == LARGE]
    for i in large:
        bad = [q for q, v in outputs[i].items() if v is not None and not np.all(np.isfinite(v))]
        if bad:
            hints["stability"] = [NOT_FINITE]
    piece_list = [pieces(kind, cases[i], convention) for i in fit_cases]
    Ns = [cases[i].N for i in fit_cases]
    for q in sorted(failed):
        arrays = [outputs[i].get(q) for i in fit_cases]
        finite = [a if a is not None and np.all(np.isfinite(a)) else None for a in arrays]
        if all(a is None for a in finite):
            continue
        found = []
        model = None
        if piece_list[0] is not None and q in piece_list[0]:
            model = _fit(q, [p[q] for p in piece_list], finite, Ns)
        if model is not None:
            models[q] = model
            found += _phrases(q, model, convention)
        hints[q] = found
    _other_convention_note(models, convention, hints)
    hints.update(_layer_hints(kind, cases, outputs, failed))
    return {q: h for q, h in hints.items() if h}


def shared_causes(kind, hints, failing):
    """Names a mistake found on one quantity on every other failing quantity it explains (in place): a wrong
    forward pass (found on the scores or the loss) explains every gradient; biases regularized in the loss
    explain wrong bias gradients, and the course's db misses the term the loss has."""
    forward = [h for q in ("scores", "loss") for h in hints.get(q, []) if h in FORWARD_PHRASES.values()]
    bias_in_loss = BIAS_LOSS in hints.get("loss", [])
    for q in sorted(failing):
        if forward and q not in ("scores", "loss") and not any(h in hints.get(q, []) for h in forward):
            hints[q] = hints.get(q, []) + [f"follows from the same mistake: {forward[0]}"]
        if bias_in_loss and kind in ("two_layer", "fc_net") and q in ("b1", "b2") and not any(
                "biases regularized" in h for h in hints.get(q, [])):
            hints[q] = hints.get(q, []) + [f"follows from the loss: {BIAS_LOSS}"]
