"""The one comparison helper every test uses (on failure it names the quantity, the worst index and both values), and
the one builder of random two-layer cases.

Usage::

    assert_close_report("dW1", actual, expected, rtol=1e-10, atol=1e-12)
    X, y, params, buffers = two_layer_case(seed=0, N=8, D=5, H=4, C=3, dtype=torch.float64)

Tolerances: float64 comparisons pass rtol/atol near 1e-10/1e-12 (exact up to rounding); float32 comparisons use
FLOAT32_TOL, torch.testing.assert_close's defaults for float32 (rtol 1.3e-6, atol 1e-5).
"""
import numpy as np
import pytest
import torch

FLOAT32_TOL = {"rtol": 1.3e-6, "atol": 1e-5}
FLOAT64_TOL = {"rtol": 1e-10, "atol": 1e-12}

PARAM_SHAPES = {"W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",)}

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]


def as_float64(x):
    """A tensor, array or number as a float64 NumPy array (on the host)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def assert_close_report(name, actual, expected, *, rtol, atol):
    """Assert |actual - expected| <= atol + rtol * |expected| elementwise (NaN equals nothing).

    name: the quantity compared (e.g. "dW1"); actual, expected: tensors/arrays/numbers of the same shape.
    """
    a, e = as_float64(actual), as_float64(expected)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != expected shape {e.shape}"
    if a.size == 0:
        return
    diff = np.abs(a - e)
    allowed = atol + rtol * np.abs(e)
    excess = np.where(np.isnan(diff), np.inf, diff - allowed)
    bad = excess > 0
    if bad.any():
        worst = np.unravel_index(np.argmax(excess), a.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ (rtol={rtol:g}, atol={atol:g}); worst at index "
            f"{tuple(int(i) for i in worst)}: actual={float(a[worst])!r}, expected={float(e[worst])!r}, "
            f"|diff|={float(diff[worst]):.3e}, allowed={float(allowed[worst]):.3e}"
        )


def two_layer_case(seed, N, D, H, C, dtype=torch.float64, device="cpu", std=0.5):
    """A random two-layer problem: X (N, D) standard normal, y (N,) int64 in [0, C), params {W1 (D, H), b1 (H,),
    W2 (H, C), b2 (C,)} = std * randn (biases nonzero, so their gradients matter), and momentum buffers shaped like
    them, 0.1 * randn (nonzero, so a momentum step differs from a plain one)."""
    g = torch.Generator().manual_seed(seed)
    sizes = {"N": N, "D": D, "H": H, "C": C}
    X = torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (N,), generator=g)
    shape = lambda k: tuple(sizes[n] for n in PARAM_SHAPES[k])
    params = {k: std * torch.randn(*shape(k), generator=g, dtype=dtype) for k in PARAM_SHAPES}
    buffers = {k: 0.1 * torch.randn(*shape(k), generator=g, dtype=dtype) for k in PARAM_SHAPES}
    on = lambda d: {k: v.to(device) for k, v in d.items()}
    return X.to(device), y.to(device), on(params), on(buffers)
