"""Gradient verification of the project itself: NumPy reference vs torch manual vs torch.autograd vs centred
finite differences, on the softmax and two-layer cases of verify/cases.py. ``python -m verify`` without a target
runs it; checking someone else's code lives in verify/checks.py.

Usage::

    rows = run_self_check(devices=["cpu"])
    print(format_table(rows)); ok = all(r.passed for r in rows)

Every comparison is against torch.autograd in float64 on the CPU (torch_impl/autograd_twin.py) and reports
max |got - want| and the max relative error ``max |got - want| / max |want|`` (normwise: a gradient entry that is
exactly 0, e.g. behind an inactive ReLU, cannot blow it up). Tolerances (relative):

    float64 manual / NumPy vs autograd   1e-10   same formulas, different rounding order: errors ~1e-15..1e-13
    finite differences (h = 1e-5)        1e-7    truncation h^2 |f'''| ~ 1e-10 plus rounding eps |f| / h ~ 1e-11;
                                                 cs231n's own "1e-7 or less is good"
    float32 vs float64 autograd          FLOAT32_RTOL * max(1, max|S| / 10): torch.testing's float32 rtol 1.3e-6
                                         x4, since ours is a max over up to ~50 entries (seen: <= 3.3e-7), scaled
                                         up when the logits S are large: rounding the inputs alone moves S by
                                         eps32 |S| (6e-5 at |S| = 1e3; seen: 2e-5 relative)
    measured, CPU: float64 <= 2.3e-14, finite differences <= 4.6e-9 (large logits), <= 6e-10 otherwise,
    float32 <= 3.3e-7 (2.1e-5 at large logits); CUDA (H200): float64 <= 2.8e-16, float32 <= 2.1e-5
"""
from dataclasses import asdict

import numpy as np
import torch

from reference_numpy import neural_net as ref_net
from reference_numpy import softmax as ref_softmax
from reference_numpy.gradient_check import eval_numerical_gradient
from reference_numpy.neural_net import PARAM_NAMES
from torch_impl import autograd_twin, neural_net, softmax
from verify.cases import softmax_cases, two_layer_cases
from verify.compare import compare

FLOAT64_RTOL = 1e-10  # manual / NumPy vs autograd, float64
FINITE_DIFF_RTOL = 1e-7  # centred differences with h = 1e-5, float64
FLOAT32_RTOL = 5e-6  # torch.testing's float32 rtol (1.3e-6) x 4 for a max over many entries


def format_table(rows):
    """The rows as a fixed-width text table with a summary line."""
    head = f"{'case':<36} {'check':<25} {'quantity':<8} {'max abs err':>11} {'max rel err':>11} {'tol':>8}  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r.case:<36} {r.check:<25} {r.quantity:<8} {r.max_abs:>11.2e} {r.max_rel:>11.2e} {r.tol:>8.0e}  "
                f"{r.status}")
        lines.append(line + (f"  {r.note}" if r.note else ""))
    failed = sum(not r.passed for r in rows)
    lines.append(f"{len(rows)} checks: {len(rows) - failed} PASS, {failed} FAIL")
    return "\n".join(lines)


def rows_to_json(rows):
    """The rows as a list of dicts (JSON-ready: nan/inf become the strings 'nan'/'inf')."""
    out = []
    for r in rows:
        d = asdict(r)
        d["status"] = r.status
        for key in ("max_abs", "max_rel"):
            if not np.isfinite(d[key]):
                d[key] = str(d[key])
        out.append(d)
    return out


# ---- the self-check ----

def _float32_tol(max_logit):
    return FLOAT32_RTOL * max(1.0, max_logit / 10.0)


def _softmax_rows(case, device, dtype, want_loss, want_dW):
    cW, cX, cy = (case.arrays[k] for k in ("W", "X", "y"))
    W, X = (torch.as_tensor(a, dtype=dtype, device=device) for a in (cW, cX))
    y = torch.as_tensor(cy, device=device)
    f64 = dtype == torch.float64
    tol = FLOAT64_RTOL if f64 else _float32_tol(np.abs(cX @ cW).max())
    label = f"softmax/{case.name} {str(dtype)[6:]} {device}"
    results = {}
    if f64 and device == "cpu":
        results["numpy naive"] = ref_softmax.softmax_loss_naive(cW, cX, cy, case.reg)
        results["numpy vectorized"] = ref_softmax.softmax_loss_vectorized(cW, cX, cy, case.reg)
    results["torch naive"] = softmax.softmax_loss_naive(W, X, y, case.reg)
    results["torch vectorized"] = softmax.softmax_loss_vectorized(W, X, y, case.reg)
    Wleaf = W.clone().requires_grad_(True)
    loss = softmax.SoftmaxLoss.apply(Wleaf, X, y, case.reg)
    loss.backward()  # the hand-written dW, delivered through the autograd engine
    results["torch SoftmaxLoss.apply"] = (loss, Wleaf.grad)
    rows = []
    for check, (loss, dW) in results.items():
        rows.append(compare(label, check, "loss", loss, want_loss, tol))
        rows.append(compare(label, check, "dW", dW, want_dW, tol))
    if f64 and device == "cpu":
        f = lambda W_: ref_softmax.softmax_loss_vectorized(W_, cX, cy, case.reg)[0]
        num = eval_numerical_gradient(f, cW.copy(), verbose=False, h=1e-5)  # (D, C)
        rows.append(compare(label, "finite differences", "dW", num, want_dW, FINITE_DIFF_RTOL))
    return rows


def _params(case):
    return {k: case.arrays[k] for k in PARAM_NAMES}


def _two_layer_rows(case, device, dtype, want_loss, want_grads):
    cX, cy, cP = case.arrays["X"], case.arrays["y"], _params(case)
    X = torch.as_tensor(cX, dtype=dtype, device=device)
    y = torch.as_tensor(cy, device=device)
    P = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in cP.items()}
    f64 = dtype == torch.float64
    scores = ref_net.two_layer_loss(cX, None, *cP.values(), case.reg)  # (N, C)
    tol = FLOAT64_RTOL if f64 else _float32_tol(np.abs(scores).max())
    label = f"two_layer/{case.name} {str(dtype)[6:]} {device}"
    results = {}
    if f64 and device == "cpu":
        results["numpy"] = ref_net.two_layer_loss(cX, cy, *cP.values(), case.reg)
    results["torch two_layer_loss"] = neural_net.two_layer_loss(X, y, *P.values(), case.reg)
    leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    loss = neural_net.TwoLayerLoss.apply(X, y, *leaves.values(), case.reg)
    loss.backward()  # the hand-written gradients, delivered through the autograd engine
    results["torch TwoLayerLoss.apply"] = (loss, {k: v.grad for k, v in leaves.items()})
    rows = []
    for check, (loss, grads) in results.items():
        rows.append(compare(label, check, "loss", loss, want_loss, tol))
        rows += [compare(label, check, k, grads[k], want_grads[k], tol) for k in PARAM_NAMES]
    if f64 and device == "cpu":
        for k in PARAM_NAMES:
            params = {n: v.copy() for n, v in cP.items()}
            f = lambda _, params=params: ref_net.two_layer_loss(cX, cy, *params.values(), case.reg)[0]
            num = eval_numerical_gradient(f, params[k], verbose=False, h=1e-5)  # shape of params[k]
            rows.append(compare(label, "finite differences", k, num, want_grads[k], FINITE_DIFF_RTOL))
    return rows


def run_self_check(devices=("cpu",), dtypes=(torch.float64, torch.float32)):
    """All rows of the self-check for the given devices and dtypes (reference: float64 autograd on the CPU)."""
    rows = []
    for case in softmax_cases():
        want_loss, want_dW = autograd_twin.softmax_loss_and_grad_autograd(
            *(torch.as_tensor(case.arrays[k]) for k in ("W", "X", "y")), case.reg)
        for device in devices:
            for dtype in dtypes:
                rows += _softmax_rows(case, device, dtype, want_loss, want_dW)
    for case in two_layer_cases():
        want_loss, want_grads = autograd_twin.two_layer_loss_and_grads_autograd(
            torch.as_tensor(case.arrays["X"]), torch.as_tensor(case.arrays["y"]),
            *(torch.as_tensor(v) for v in _params(case).values()), case.reg)
        for device in devices:
            for dtype in dtypes:
                rows += _two_layer_rows(case, device, dtype, want_loss, want_grads)
    return rows
