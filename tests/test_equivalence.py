"""NumPy reference == torch manual == torch autograd, for the loss and every gradient.

float64: agreement to ~1e-12 relative to each tensor's scale (FLOAT64 below). float32: torch manual vs torch
autograd at torch.testing.assert_close's float32 defaults, on the same float32 inputs (both round the same
products; only the softmax/log-sum-exp arithmetic differs). Shapes and score scales are drawn by hypothesis.
"""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference_numpy.neural_net import two_layer_loss as np_two_layer_loss
from reference_numpy.softmax import softmax_loss_vectorized as np_softmax_vectorized
from tests.helpers import DEVICES, FLOAT32_TOL, assert_close_report
from torch_impl.autograd_twin import softmax_loss_and_grad_autograd, two_layer_loss_and_grads_autograd
from torch_impl.neural_net import PARAM_NAMES, TwoLayerLoss, TwoLayerNet, two_layer_loss
from torch_impl.softmax import SoftmaxLoss, softmax_loss_naive, softmax_loss_vectorized

pytestmark = pytest.mark.equivalence



def close64(name, actual, expected):
    """float64 agreement: elementwise within 1e-10 relative plus 1e-12 of the tensor's largest magnitude."""
    scale = max(1.0, float(np.max(np.abs(np.asarray(torch.as_tensor(expected).cpu())))))
    assert_close_report(name, actual, expected, rtol=1e-10, atol=1e-12 * scale)


def close32(name, actual, expected):
    """float32 agreement at torch.testing's defaults, scaled to the tensor's magnitude (the atol 1e-5 is meant
    for O(1) values; gradients here scale with X and the score scale)."""
    scale = max(1.0, float(torch.as_tensor(expected).abs().max()))
    assert_close_report(name, actual, expected, rtol=FLOAT32_TOL["rtol"], atol=FLOAT32_TOL["atol"] * scale)


@st.composite
def problems(draw):
    """Random shapes N in [1, 64], D in [1, 40], H in [1, 32], C in [2, 12], reg in [0, 1], scores up to 1e3."""
    N = draw(st.integers(1, 64))
    D = draw(st.integers(1, 40))
    H = draw(st.integers(1, 32))
    C = draw(st.integers(2, 12))
    reg = draw(st.sampled_from([0.0, 1e-3, 0.25, 1.0]) | st.floats(0, 1))
    score_scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3]) | st.floats(1e-3, 1e3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, size=N)
    # scale the weights so that the scores (N, C) reach about score_scale
    W = rng.standard_normal((D, C)) * score_scale / np.sqrt(D)
    W1 = rng.standard_normal((D, H)) / np.sqrt(D)
    b1 = 0.1 * rng.standard_normal(H)
    W2 = rng.standard_normal((H, C)) * score_scale / np.sqrt(H)
    b2 = 0.1 * rng.standard_normal(C)
    return {"X": X, "y": y, "W": W, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "reg": reg}


def to_torch(p, dtype, device):
    out = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in p.items() if k not in ("y", "reg")}
    out["y"] = torch.as_tensor(p["y"], dtype=torch.int64, device=device)
    return out


@pytest.mark.softmax
@pytest.mark.parametrize("device", DEVICES)
@given(p=problems())
def test_softmax_float64_numpy_manual_autograd(device, p):
    t = to_torch(p, torch.float64, device)
    loss_m, dW_m = softmax_loss_vectorized(t["W"], t["X"], t["y"], p["reg"])
    loss_n, dW_n = softmax_loss_naive(t["W"], t["X"], t["y"], p["reg"])
    loss_a, dW_a = softmax_loss_and_grad_autograd(t["W"], t["X"], t["y"], p["reg"])
    assert loss_m.device.type == device and loss_m.dtype == torch.float64
    close64("loss manual vs autograd", loss_m, loss_a)
    close64("dW manual vs autograd", dW_m, dW_a)
    close64("loss naive vs vectorized", loss_n, loss_m)
    close64("dW naive vs vectorized", dW_n, dW_m)
    with np.errstate(divide="ignore"):
        loss_r, dW_r = np_softmax_vectorized(p["W"], p["X"], p["y"], p["reg"])
    close64("dW reference vs manual", dW_m, dW_r)
    if np.isfinite(loss_r):  # the reference's -log(P[y]) overflows past a spread of ~745 (documented)
        close64("loss reference vs manual", loss_m, loss_r)


@pytest.mark.two_layer
@pytest.mark.parametrize("device", DEVICES)
@given(p=problems())
def test_two_layer_float64_numpy_manual_autograd(device, p):
    t = to_torch(p, torch.float64, device)
    params = [t[k] for k in PARAM_NAMES]
    loss_m, grads_m = two_layer_loss(t["X"], t["y"], *params, p["reg"])
    loss_a, grads_a = two_layer_loss_and_grads_autograd(t["X"], t["y"], *params, p["reg"])
    close64("loss manual vs autograd", loss_m, loss_a)
    for k in PARAM_NAMES:
        assert grads_m[k].shape == t[k].shape
        close64(f"d{k} manual vs autograd", grads_m[k], grads_a[k])
    with np.errstate(divide="ignore"):
        loss_r, grads_r = np_two_layer_loss(p["X"], p["y"], *(p[k] for k in PARAM_NAMES), p["reg"])
    for k in PARAM_NAMES:
        close64(f"d{k} reference vs manual", grads_m[k], grads_r[k])
    if np.isfinite(loss_r):
        close64("loss reference vs manual", loss_m, loss_r)
    # the autograd Function delivers exactly these gradients through backward()
    leaves = [x.clone().requires_grad_(True) for x in params]
    TwoLayerLoss.apply(t["X"], t["y"], *leaves, p["reg"]).backward()
    for k, leaf in zip(PARAM_NAMES, leaves):
        close64(f"d{k} Function.backward vs manual", leaf.grad, grads_m[k])


@pytest.mark.softmax
@pytest.mark.parametrize("device", DEVICES)
@given(p=problems())
def test_softmax_float32_manual_vs_autograd(device, p):
    t = to_torch(p, torch.float32, device)
    loss_m, dW_m = softmax_loss_vectorized(t["W"], t["X"], t["y"], p["reg"])
    loss_a, dW_a = softmax_loss_and_grad_autograd(t["W"], t["X"], t["y"], p["reg"])
    assert dW_m.dtype == torch.float32 and torch.isfinite(loss_m)
    close32("loss", loss_m, loss_a)
    close32("dW", dW_m, dW_a)


@pytest.mark.two_layer
@pytest.mark.parametrize("device", DEVICES)
@given(p=problems())
def test_two_layer_float32_manual_vs_autograd(device, p):
    t = to_torch(p, torch.float32, device)
    params = [t[k] for k in PARAM_NAMES]
    loss_m, grads_m = two_layer_loss(t["X"], t["y"], *params, p["reg"])
    loss_a, grads_a = two_layer_loss_and_grads_autograd(t["X"], t["y"], *params, p["reg"])
    assert torch.isfinite(loss_m)
    close32("loss", loss_m, loss_a)
    for k in PARAM_NAMES:
        assert grads_m[k].dtype == torch.float32
        close32(f"d{k}", grads_m[k], grads_a[k])


@pytest.mark.two_layer
@pytest.mark.parametrize("device", DEVICES)
def test_toy_model_through_torch_matches_cs231n(device):
    """cs231n's toy model, built exactly as the notebook does, through the torch net: scores, loss, gradients."""
    from tests.test_reference_numpy import CS231N_LOSS, CS231N_SCORES, toy_data, toy_model

    ref = toy_model()
    X, y = toy_data()
    net = TwoLayerNet.from_numpy(ref.params, dtype=torch.float64, device=device)
    Xt = torch.as_tensor(X, device=device)
    yt = torch.as_tensor(y, device=device)
    assert np.sum(np.abs(net.loss(Xt).cpu().numpy() - CS231N_SCORES)) < 1e-7
    loss, grads = net.loss(Xt, yt, reg=0.05)
    assert abs(loss.item() - CS231N_LOSS) < 1e-10
    _, grads_r = ref.loss(X, y, reg=0.05)
    for k in PARAM_NAMES:
        close64(f"d{k}", grads[k], grads_r[k])
    assert net.predict(Xt).cpu().tolist() == np.argmax(CS231N_SCORES, axis=1).tolist()
    back = net.to_numpy()
    for k in PARAM_NAMES:
        assert np.array_equal(back[k], ref.params[k])


@pytest.mark.two_layer
def test_torch_net_init_layout_and_seed():
    g = torch.Generator().manual_seed(0)
    net = TwoLayerNet(6, 5, 3, std=0.1, dtype=torch.float64, generator=g)
    assert [tuple(p.shape) for p in net.params.values()] == [(6, 5), (5,), (5, 3), (3,)]
    assert net.b1.abs().sum() == 0 and net.b2.abs().sum() == 0
    assert 0.02 < net.W1.std().item() < 0.3
    g2 = torch.Generator().manual_seed(0)
    again = TwoLayerNet(6, 5, 3, std=0.1, dtype=torch.float64, generator=g2)
    assert torch.equal(net.W1, again.W1) and torch.equal(net.W2, again.W2)
    scores = net(torch.ones(2, 6, dtype=torch.float64))
    assert scores.shape == (2, 3) and scores.requires_grad


# --- numerical stability: the torch loss is log-sum-exp, the reference keeps -log(softmax[y]) -------------------

def wide_logits(spread, offset, dtype):
    """X (4, 2) with a ones column and W (2, 3) giving scores offset + (0, -spread/2, -spread) per row."""
    X = torch.tensor([[1.0, 1.0], [1.0, 0.5], [1.0, -0.5], [1.0, 0.0]], dtype=torch.float64)
    W = torch.tensor([[offset, offset, offset], [0.0, -spread / 2, -spread]], dtype=torch.float64)
    y = torch.tensor([2, 1, 0, 2])
    return X.to(dtype), W.to(dtype), y


@pytest.mark.softmax
@pytest.mark.parametrize("spread,offset", [(200.0, 0.0), (500.0, 0.0), (2000.0, 0.0), (3.0, 1e4), (300.0, 1e4)])
def test_torch_loss_stays_finite_and_correct_in_float32(spread, offset):
    X32, W32, y = wide_logits(spread, offset, torch.float32)
    loss, dW = softmax_loss_vectorized(W32, X32, y, 0.0)
    assert torch.isfinite(loss) and torch.isfinite(dW).all()
    # truth: the same float32 inputs in float64 through autograd's cross-entropy
    loss64, dW64 = softmax_loss_and_grad_autograd(W32.double(), X32.double(), y, 0.0)
    # float32 spacing at |score| = 1e4 is ~1e-3: allow that much absolute error in the loss
    assert_close_report("loss", loss, loss64, rtol=1e-6, atol=2e-3 if offset else 1e-4)
    assert_close_report("dW", dW, dW64, rtol=1e-5, atol=1e-5)
    # the two-layer loss uses the same stable form
    W1 = torch.eye(2, dtype=torch.float32)
    tl, grads = two_layer_loss(X32.abs(), y, W1, torch.zeros(2), W32, torch.zeros(3), 0.0)
    assert torch.isfinite(tl) and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.softmax
def test_reference_breaks_where_torch_does_not():
    X, W, y = wide_logits(1000.0, 0.0, torch.float64)
    with np.errstate(divide="ignore"):
        loss_ref, _ = np_softmax_vectorized(W.numpy(), X.numpy(), y.numpy(), 0.0)
    loss_t, _ = softmax_loss_vectorized(W, X, y, 0.0)
    assert np.isinf(loss_ref) and torch.isfinite(loss_t)


# --- gradcheck on every autograd Function (float64) ----------------------------------------------------------

@pytest.mark.softmax
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_gradcheck_softmax_function(reg):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    X = torch.randn(6, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    assert torch.autograd.gradcheck(lambda w: SoftmaxLoss.apply(w, X, y, reg), (W,))


@pytest.mark.two_layer
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_gradcheck_two_layer_function(reg):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(7, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    shapes = [(5, 4), (4,), (4, 3), (3,)]
    params = [torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(lambda *ps: TwoLayerLoss.apply(X, y, *ps, reg), tuple(params))


@pytest.mark.two_layer
def test_function_scales_by_the_upstream_gradient():
    """backward multiplies by dL_total/dloss (chain rule): what AMP's scaler and loss weights rely on."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(4, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 1, 1, 0])
    shapes = [(3, 2), (2,), (2, 2), (2,)]
    params = [torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True) for s in shapes]
    (3.5 * TwoLayerLoss.apply(X, y, *params, 0.1)).backward()
    _, grads = two_layer_loss(X, y, *[p.detach() for p in params], 0.1)
    for k, p in zip(PARAM_NAMES, params):
        close64(f"d{k}", p.grad, 3.5 * grads[k])
