"""The float64 cases every check runs on (NumPy only: the child process reads them without torch).

Each kind of target has its cases, listed simplest first (small, reg = 0), so the first failing case is the one to
show. Every case keeps clear of kinks: |S1| > 1e-3 for the ReLU, every SVM margin |s_j - s_y + 1| > 1e-3, so a
centred difference with h = 1e-5 never straddles one. "large logits" cases put every score near 1e3 with a small
spread: exp overflows without max subtraction while the true loss stays O(1).

    cases_for("softmax")             -> [Case(name, arrays={"W", "X", "y"}, reg), ...]   the fixed cases
    cases_for("softmax", seed=7)     -> the same case names, shapes and values drawn afresh from the seed

Without a seed the cases are fixed (self-study: the same numbers every run). With an int seed every case draws
its shapes and values from its own numpy Generator (the seed and the case's number), so a student cannot fit
the numbers; the names, the N = 1 and C = 2 shapes, reg = 0 or reg > 0, the kink margins and the large logits
stay.
"""
from dataclasses import dataclass, field

import numpy as np

LARGE = "large logits"
MAX_SEED = 2**63 - 1  # a seed is stored in the job file as an int64
KINK = 1e-3  # every ReLU input and hinge margin at least this far from its kink


@dataclass
class Case:
    """arrays: the target's inputs by cs231n's names (float64, labels int64); reg: L2 strength (0 when unused)."""

    name: str
    arrays: dict = field(default_factory=dict)
    reg: float = 0.0

    @property
    def N(self):
        return next(iter(self.arrays.values())).shape[0] if "X" not in self.arrays else self.arrays["X"].shape[0]


def _generator(seed, stream):
    """The fixed cases' generator (seed None: default_rng(stream)), or one drawn from (seed, stream)."""
    return np.random.default_rng(stream if seed is None else [int(seed), stream])


def _size(rng, seed, fixed, low, high):
    """The fixed size, or one drawn in [low, high]; a size of 1 or 2 is its case's point (N = 1, C = 2) and stays."""
    if seed is None or fixed in (1, 2):
        return fixed
    return int(rng.integers(low, high + 1))


def _reg(rng, seed, fixed):
    """The fixed reg, or one drawn in [0.1, 0.5] where the fixed case has reg > 0 (reg = 0 stays 0)."""
    return fixed if seed is None or fixed == 0 else float(rng.uniform(0.1, 0.5))


def _labels(rng, N, C):
    y = rng.integers(0, C, size=N)  # (N,)
    y[0] = 0  # with y[1] below: N > 1 cases have at least two labels
    if N > 1:
        y[1] = C - 1
    return y.astype(np.int64)


def softmax_cases(seed=None):
    """W: (D, C), X: (N, D), y: (N,); random, reg > 0, N = 1, C = 2, large logits (bias column: scores ~1e3)."""
    cases = []
    for i, (name, N, D, C, reg) in enumerate([("random", 9, 7, 5, 0.0), ("reg", 9, 7, 5, 0.4),
                                              ("N=1", 1, 6, 4, 0.2), ("C=2", 8, 5, 2, 0.2),
                                              (LARGE, 8, 6, 5, 0.0)]):
        rng = _generator(seed, 100 + i)
        N, D, C = _size(rng, seed, N, 3, 12), _size(rng, seed, D, 3, 9), _size(rng, seed, C, 3, 7)
        reg = _reg(rng, seed, reg)
        W = 0.5 * rng.standard_normal((D, C))  # (D, C)
        X = rng.standard_normal((N, D))  # (N, D)
        if name == LARGE:
            X[:, 0] = 1.0  # the bias trick: W[0] is added to every score
            W[0] = 1000.0 + 0.5 * rng.standard_normal(C)  # common offset 1e3, small spread
        cases.append(Case(name, {"W": W, "X": X, "y": _labels(rng, N, C)}, reg))
    return cases


def _margins_clear(S, y):
    """Every hinge margin s_j - s_y + 1 (j != y) at least KINK away from 0."""
    margins = S - S[np.arange(len(y)), y][:, None] + 1.0  # (N, C)
    margins[np.arange(len(y)), y] = 1.0
    return np.abs(margins).min() > KINK


def svm_cases(seed=None):
    """As softmax_cases for the multiclass SVM loss (W, X, y, reg) of linear_svm.py, margins off their kink."""
    cases = []
    for i, case in enumerate(softmax_cases(seed)):
        W, X, y = (case.arrays[k] for k in ("W", "X", "y"))
        rng = _generator(seed, 150 + i)
        while not _margins_clear(X @ W, y):
            W = W + 1e-2 * rng.standard_normal(W.shape)  # a small random step moves the margins off 0
        cases.append(Case(case.name, {"W": W, "X": X, "y": y}, case.reg))
    return cases


def _hidden_clear(X, W1, b1):
    """The ReLU's input S1 = X W1 + b1 off its kink, active and inactive, and (N > 1) its mask moved by b1."""
    S1 = X @ W1 + b1  # (N, H)
    moved = len(X) == 1 or ((X @ W1 > 0) != (S1 > 0)).any()
    return np.abs(S1).min() > KINK and (S1 > 0).any() and (S1 <= 0).any() and moved


def two_layer_cases(seed=None):
    """X: (N, D), y: (N,), W1 (D, H), b1 (H,), W2 (H, C), b2 (C,). The ReLU is active and inactive, and b1 moves
    S1 = X W1 + b1 across 0 for some units, so a mask taken without the bias differs; every |S1| > 1e-3."""
    cases = []
    for i, (name, N, D, H, C, reg) in enumerate([("random", 9, 6, 8, 5, 0.0), ("reg", 9, 6, 8, 5, 0.3),
                                                 ("N=1", 1, 5, 7, 4, 0.2), ("C=2", 8, 5, 6, 2, 0.2),
                                                 (LARGE, 8, 6, 8, 5, 0.1)]):
        rng = _generator(seed, 200 + i)
        N, D, C = _size(rng, seed, N, 3, 10), _size(rng, seed, D, 3, 8), _size(rng, seed, C, 3, 6)
        H, reg = _size(rng, seed, H, 4, 10), _reg(rng, seed, reg)
        X = rng.standard_normal((N, D))  # (N, D)
        p = {"W1": 0.5 * rng.standard_normal((D, H)), "b1": rng.standard_normal(H),
             "W2": 0.5 * rng.standard_normal((H, C)), "b2": 0.3 * rng.standard_normal(C)}
        if name == LARGE:
            p["b2"] = 1000.0 + 0.5 * rng.standard_normal(C)  # common offset 1e3, small spread
        S1 = X @ p["W1"] + p["b1"]  # (N, H)
        p["b1"] = p["b1"] + np.where(np.abs(S1).min(axis=0) < KINK, 1e-2, 0.0)  # keep off the ReLU kink
        while seed is not None and not _hidden_clear(X, p["W1"], p["b1"]):
            p["b1"] = rng.standard_normal(H)  # a fresh bias until the margins hold
        cases.append(Case(name, {"X": X, "y": _labels(rng, N, C), **p}, reg))
    return cases


def _off_kink(a):
    """a with every entry at least 0.05 away from 0 (signs kept)."""
    return np.where(a >= 0, 1.0, -1.0) * (0.05 + np.abs(a))


def affine_cases(seed=None):
    """x: (N, 2, 3) (cs231n's affine layers flatten every axis after the first), w: (6, M), b: (M,), dout: (N, M);
    seeded: x (N, d1, d2) and w (d1 d2, M) of drawn sizes."""
    cases = []
    for i, (name, N, M) in enumerate([("random", 5, 4), ("N=1", 1, 3)]):
        rng = _generator(seed, 300 + i)
        N, M = _size(rng, seed, N, 3, 8), _size(rng, seed, M, 3, 6)
        d1, d2 = (2, 3) if seed is None else (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
        x = rng.standard_normal((N, d1, d2))  # (N, d1, d2)
        w = 0.5 * rng.standard_normal((d1 * d2, M))  # (D, M)
        b = rng.standard_normal(M)  # (M,)
        b = b + np.where(np.abs(x.reshape(N, -1) @ w + b).min(axis=0) < KINK, 1e-2, 0.0)  # off the ReLU kink
        while seed is not None and np.abs(x.reshape(N, -1) @ w + b).min() <= KINK:
            b = rng.standard_normal(M)
        cases.append(Case(name, {"x": x, "w": w, "b": b, "dout": rng.standard_normal((N, M))}))
    return cases


def relu_cases(seed=None):
    """x: (N, 7) with every |x| >= 0.05, both signs; dout: (N, 7) (seeded: (N, M) of drawn sizes)."""
    cases = []
    for i, (name, N) in enumerate([("random", 6), ("N=1", 1)]):
        rng = _generator(seed, 400 + i)
        N, M = _size(rng, seed, N, 3, 9), _size(rng, seed, 7, 3, 9)
        x = _off_kink(rng.standard_normal((N, M)))
        x[0, :2] = (0.5, -0.5)  # both signs in every case
        cases.append(Case(name, {"x": x, "dout": rng.standard_normal((N, M))}))
    return cases


def scores_loss_cases(seed=None, hinge=False):
    """x: scores (N, C), y: (N,) for layers.softmax_loss / svm_loss: random, N = 1, C = 2, large logits."""
    cases = []
    for i, (name, N, C) in enumerate([("random", 9, 5), ("N=1", 1, 4), ("C=2", 8, 2), (LARGE, 8, 5)]):
        rng = _generator(seed, 500 + i)
        N, C = _size(rng, seed, N, 3, 12), _size(rng, seed, C, 3, 7)
        x, y = rng.standard_normal((N, C)), _labels(rng, N, C)  # (N, C), (N,)
        while hinge and not _margins_clear(x, y):
            x = rng.standard_normal((N, C))
        if name == LARGE:
            x = x + 1000.0
        cases.append(Case(name, {"x": x, "y": y}))
    return cases


CASE_BUILDERS = {
    "softmax": softmax_cases, "svm": svm_cases, "two_layer": two_layer_cases, "fc_net": two_layer_cases,
    "affine_forward": affine_cases, "affine_backward": affine_cases, "affine_relu_forward": affine_cases,
    "affine_relu_backward": affine_cases, "relu_forward": relu_cases, "relu_backward": relu_cases,
    "softmax_loss": scores_loss_cases, "svm_loss": lambda seed=None: scores_loss_cases(seed, hinge=True),
}


def cases_for(kind, seed=None):
    """The cases of one kind of target (a fresh list: callers may not change them); seed None: the fixed cases,
    an int (>= 0): cases drawn from it."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed: expected None or a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return CASE_BUILDERS[kind](seed)
