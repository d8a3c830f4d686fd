"""Judges a student's predict() from what it returned on random weights (run in the child by verify/spy.py).

    items = judge_predict("two_layer_predict", meta, arrays)    # [(case, "y_pred", (passed, figure, note, hint))]

The course's prediction is the argmax class of the scores (X W, or H1 W2 + b2 with H1 = max(0, X W1 + b1)). A
wrong answer is matched against the common mistakes: the scores or probabilities returned instead of labels, the
argmax over the wrong axis, argmin, a forward pass without b1, b2 or the ReLU, the template's zeros.
"""
import numpy as np

from verify.spy import course_scores, method_cases, softmax_rows


def judge_predict(kind, meta, arrays):
    """[(case, "y_pred", (passed, figure, note, hint))] of a predict target."""
    items = []
    for i, (case, m) in enumerate(zip(method_cases(kind), meta["cases"])):
        if m.get("note"):
            items.append((case.name, "call", (False, np.nan, m["note"], None)))
            continue
        items.append((case.name, "y_pred", _labels(case, arrays.get(f"{i}/y_pred"), m.get("returned"))))
    return items


def _variants(params, X):
    """{mistake: labels} for the forward passes of common mistakes (the two-layer net only)."""
    if "W" in params:
        return {}
    p = params
    relu = lambda S: np.maximum(S, 0)
    return {"b1 missing from the forward pass": relu(X @ p["W1"]) @ p["W2"] + p["b2"],
            "b2 missing from the forward pass": relu(X @ p["W1"] + p["b1"]) @ p["W2"],
            "no ReLU in the forward pass": (X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]}


def _labels(case, got, returned):
    """(passed, figure, note, hint) of predict's output on one case."""
    a = case.arrays
    params = {k: v for k, v in a.items() if k != "X"}
    scores = course_scores(params, a["X"])  # (N, C)
    want = np.argmax(scores, axis=1)  # (N,)
    N, C = scores.shape
    if got is None:
        if returned == "NoneType":
            return False, np.nan, "predict returned None", "looks unfinished: return y_pred, the (N,) class labels"
        return False, np.nan, f"predict returned a {returned}; expected (N,) class labels", None
    if got.shape == (N, C):
        for what, table in (("the scores", scores), ("the softmax probabilities", softmax_rows(scores))):
            if np.allclose(got, table, rtol=1e-9, atol=1e-12):
                return False, np.nan, f"predict returned {what} (shape {got.shape})", \
                    f"predict returns {what}, not labels: y_pred = np.argmax(scores, axis=1)"
        return False, np.nan, f"y_pred has shape {got.shape}; expected ({N},)", "return the class labels, shape (N,)"
    if got.shape == (C,) and np.array_equal(got, np.argmax(scores, axis=0)):
        return False, np.nan, f"y_pred has shape {got.shape}; expected ({N},)", \
            "argmax over the wrong axis: the class of each row is np.argmax(scores, axis=1)"
    if got.size != N:
        return False, np.nan, f"y_pred has shape {got.shape}; expected ({N},)", \
            "predict returns a single number: np.argmax without axis=1, or of the wrong array?" if got.size == 1 else \
            "return one class label per row of X, shape (N,)"
    wrong = float(np.mean(got.ravel() != want))
    if wrong == 0 and got.shape != (N,):
        return False, 0.0, f"y_pred has shape {got.shape}; expected ({N},)", \
            "return a flat (N,) array: (y_pred == y).mean() with another shape broadcasts to a wrong accuracy"
    if wrong == 0:
        return True, 0.0, "", None
    note = f"{wrong:.0%} of the labels differ from the argmax of the scores"
    if not np.any(got):
        return False, wrong, note, "looks unfinished: predict returns only zeros"
    if np.array_equal(got.ravel(), np.argmin(scores, axis=1)):
        return False, wrong, note, "argmin instead of argmax: predict the class with the largest score"
    for mistake, S in _variants(params, a["X"]).items():
        if np.array_equal(got.ravel(), np.argmax(S, axis=1)):
            return False, wrong, note, f"{mistake} in predict"
    return False, wrong, note, "predict the class with the largest score: np.argmax(scores, axis=1)"
