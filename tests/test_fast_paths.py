"""The autograd Functions (SoftmaxLoss, TwoLayerLoss) equal the readable ones: the mirrors (softmax_loss_vectorized,
two_layer_loss) and the autograd twins, for any upstream gradient, under gradcheck, on the tensor-upstream (CUDA)
path and under autocast. Whole SGD steps are tests/test_step_paths.py's.

Run: ``python -m pytest tests/test_fast_paths.py -q`` (or ``-m two_layer``).
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import torch_impl.backward_ops as backward_ops
from tests.helpers import CUDA, FLOAT32_TOL, FLOAT64_TOL, assert_close_report, two_layer_case
from torch_impl.autograd_twin import softmax_loss_and_grad_autograd, two_layer_loss_and_grads_autograd
from torch_impl.backward_ops import reg_plus_mm
from torch_impl.neural_net import PARAM_NAMES, TwoLayerLoss, two_layer_loss
from torch_impl.softmax import SoftmaxLoss, softmax_loss_vectorized

TOL = {torch.float64: FLOAT64_TOL, torch.float32: FLOAT32_TOL}


def function_grads(params, X, y, reg, grad_loss=1.0):
    """TwoLayerLoss's loss and the grads that backward(grad_loss) leaves in each leaf's .grad."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = TwoLayerLoss.apply(X, y, *leaves.values(), reg)
    loss.backward(torch.tensor(grad_loss, dtype=loss.dtype, device=loss.device))
    return loss.detach(), {k: v.grad for k, v in leaves.items()}


def assert_same(loss, grads, ref_loss, ref_grads, dtype, scale=1.0):
    tol = TOL[dtype]
    assert_close_report("loss", loss, ref_loss, **tol)
    for k in ref_grads:
        assert_close_report(f"d{k}", grads[k], scale * ref_grads[k], **tol)


shapes = dict(N=st.integers(1, 64), D=st.integers(1, 40), H=st.integers(1, 32), C=st.integers(2, 12),
              reg=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))


@pytest.mark.two_layer
@pytest.mark.equivalence
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(**shapes, grad_loss=st.sampled_from([1.0, 0.5, -3.0]))
def test_two_layer_function_equals_mirror_and_autograd(dtype, N, D, H, C, reg, seed, grad_loss):
    X, y, p, _ = two_layer_case(seed, N, D, H, C, dtype)
    loss, grads = function_grads(p, X, y, reg, grad_loss)
    ref_loss, ref_grads = two_layer_loss(X, y, *p.values(), reg)
    assert_same(loss, grads, ref_loss, ref_grads, dtype, grad_loss)
    auto_loss, auto_grads = two_layer_loss_and_grads_autograd(X, y, *p.values(), reg)
    assert_same(loss, grads, auto_loss, auto_grads, dtype, grad_loss)


@pytest.mark.softmax
@pytest.mark.equivalence
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(N=st.integers(1, 64), D=st.integers(1, 40), C=st.integers(2, 12), reg=st.floats(0, 1),
       seed=st.integers(0, 2**31 - 1), grad_loss=st.sampled_from([1.0, -2.0]))
def test_softmax_function_equals_mirror_and_autograd(dtype, N, D, C, reg, seed, grad_loss):
    g = torch.Generator().manual_seed(seed)
    W, X = torch.randn(D, C, generator=g, dtype=dtype), torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (N,), generator=g)
    leaf = W.clone().requires_grad_(True)
    loss = SoftmaxLoss.apply(leaf, X, y, reg)
    loss.backward(torch.tensor(grad_loss, dtype=dtype))
    for name, (ref_loss, ref_dW) in {"mirror": softmax_loss_vectorized(W, X, y, reg),
                                     "autograd": softmax_loss_and_grad_autograd(W, X, y, reg)}.items():
        assert_close_report(f"loss vs {name}", loss.detach(), ref_loss, **TOL[dtype])
        assert_close_report(f"dW vs {name}", leaf.grad, grad_loss * ref_dW, **TOL[dtype])


@pytest.mark.two_layer
@pytest.mark.equivalence
def test_gradcheck_float64():
    X, y, p, _ = two_layer_case(3, 9, 6, 5, 4, torch.float64)
    leaves = [v.clone().requires_grad_(True) for v in p.values()]
    assert torch.autograd.gradcheck(lambda *w: TwoLayerLoss.apply(X, y, *w, 0.3), leaves)
    W = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: SoftmaxLoss.apply(w, X, y, 0.3), [W])


@pytest.mark.two_layer
def test_only_requested_grads_and_none_for_data():
    X, y, p, _ = two_layer_case(4, 8, 5, 4, 3, torch.float64)
    X.requires_grad_(True)
    W1 = p["W1"].clone().requires_grad_(True)
    TwoLayerLoss.apply(X, y, W1, p["b1"], p["W2"], p["b2"], 0.1).backward()
    _, ref = two_layer_loss(X.detach(), y, *p.values(), 0.1)
    assert_close_report("dW1", W1.grad, ref["W1"], **FLOAT64_TOL)
    assert X.grad is None


@pytest.mark.two_layer
def test_tensor_upstream_path_equals_float_path(monkeypatch):
    """The CUDA path (grad_loss kept a tensor, no host sync), forced on CPU, gives the same gradients."""
    X, y, p, _ = two_layer_case(5, 12, 7, 6, 4, torch.float64)
    expected_loss, expected = function_grads(p, X, y, 0.4, -1.5)
    monkeypatch.setattr(backward_ops, "upstream_scale", lambda g: g)
    monkeypatch.setattr("torch_impl.neural_net.upstream_scale", lambda g: g)
    loss, grads = function_grads(p, X, y, 0.4, -1.5)
    assert_same(loss, grads, expected_loss, expected, torch.float64)
    W, A, B = (torch.randn(*s, dtype=torch.float64) for s in [(3, 4), (3, 5), (5, 4)])
    assert_close_report("reg_plus_mm", reg_plus_mm(W, A, B, 0.6, torch.tensor(-2.0, dtype=torch.float64)),
                        reg_plus_mm(W, A, B, 0.6, -2.0), **FLOAT64_TOL)


@pytest.mark.two_layer
def test_autocast_bfloat16_backward_runs_in_parameter_dtype():
    X, y, p, _ = two_layer_case(6, 32, 16, 8, 5, torch.float32)
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = TwoLayerLoss.apply(X, y, *leaves.values(), 0.1)
    loss.backward()
    _, ref = two_layer_loss(X, y, *p.values(), 0.1)
    for k in PARAM_NAMES:
        assert leaves[k].grad.dtype == torch.float32
        bound = 0.05 * float(ref[k].abs().max()) + 1e-3  # bfloat16 keeps ~3 significant digits
        assert_close_report(f"d{k} (bf16 autocast)", leaves[k].grad, ref[k], rtol=0.0, atol=bound)


@pytest.mark.cuda
@CUDA
@pytest.mark.two_layer
def test_two_layer_function_on_cuda_equals_cpu():
    X, y, p, _ = two_layer_case(8, 50, 30, 20, 10, torch.float64)
    expected_loss, expected = function_grads(p, X, y, 0.25, 2.0)
    Xc, yc, pc = X.cuda(), y.cuda(), {k: v.cuda() for k, v in p.items()}
    loss, grads = function_grads(pc, Xc, yc, 0.25, 2.0)
    assert_same(loss, grads, expected_loss, expected, torch.float64)
