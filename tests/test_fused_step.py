"""fused_sgd_step (torch_impl/fused_step.py) equals the front door: TwoLayerLoss.apply, backward, torch.optim.SGD.

One step over random shapes and values (hypothesis), 60-step trajectories with and without momentum, the NaN
guard (finite_only), bad inputs, and the same on CUDA when there is a GPU.

Run: ``python -m pytest tests/test_fused_step.py -q`` (or ``-m two_layer``).
"""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import DEVICES, FLOAT32_TOL, FLOAT64_TOL, assert_close_report
from torch_impl.fused_step import fused_sgd_step
from torch_impl.neural_net import TwoLayerLoss

NAMES = ("W1", "b1", "W2", "b2")
pytestmark = [pytest.mark.two_layer, pytest.mark.equivalence]


def make_case(seed, N, D, H, C, dtype, device="cpu"):
    """X (N, D), y (N,), params {W1, b1, W2, b2} (nonzero biases), momentum buffers like them (nonzero)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (N,), generator=g)
    shapes = {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
    params = {k: 0.5 * torch.randn(*s, generator=g, dtype=dtype) for k, s in shapes.items()}
    buffers = {k: 0.1 * torch.randn(*s, generator=g, dtype=dtype) for k, s in shapes.items()}
    to = lambda d: {k: v.to(device) for k, v in d.items()}
    return X.to(device), y.to(device), to(params), to(buffers)


def front_door_step(X, y, params, buffers, reg, lr, momentum):
    """The autograd path fit takes with steps_per_call 1: TwoLayerLoss, backward, torch.optim.SGD (its momentum
    buffers preset to ``buffers``). Returns (loss, new params, new buffers)."""
    leaves = [torch.nn.Parameter(params[k].clone()) for k in NAMES]
    opt = torch.optim.SGD(leaves, lr=lr, momentum=momentum)
    if momentum:
        for p, k in zip(leaves, NAMES):
            opt.state[p]["momentum_buffer"] = buffers[k].clone()
    loss = TwoLayerLoss.apply(X, y, *leaves, reg)
    loss.backward()
    opt.step()
    new_buffers = {k: opt.state[p]["momentum_buffer"] for p, k in zip(leaves, NAMES)} if momentum else buffers
    return loss.detach(), {k: p.detach() for p, k in zip(leaves, NAMES)}, new_buffers


def fused_step(X, y, params, buffers, reg, lr, momentum):
    p = {k: v.clone() for k, v in params.items()}
    b = {k: v.clone() for k, v in buffers.items()}
    loss = fused_sgd_step(X, y, *p.values(), reg, lr, momentum, list(b.values()))
    return loss, p, b


def assert_same_step(got, want, tol):
    for what, g, w in zip(("loss", "param", "buffer"), got, want):
        if what == "loss":
            assert_close_report("loss", g, w, **tol)
            continue
        for k in NAMES:
            scale = float(w[k].abs().max()) if w[k].numel() else 0.0  # float32: an update cancels ~|W| digits
            assert_close_report(f"{what} {k}", g[k], w[k], rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(N=st.integers(1, 48), D=st.integers(1, 40), H=st.integers(1, 24), C=st.integers(2, 10),
       reg=st.floats(0, 1), lr=st.floats(1e-4, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       seed=st.integers(0, 2**31 - 1))
def test_one_fused_step_equals_function_backward_and_sgd(dtype, N, D, H, C, reg, lr, momentum, seed):
    X, y, params, buffers = make_case(seed, N, D, H, C, dtype)
    want = front_door_step(X, y, params, buffers, reg, lr, momentum)
    got = fused_step(X, y, params, buffers, reg, lr, momentum)
    assert_same_step(got, want, FLOAT64_TOL if dtype == torch.float64 else FLOAT32_TOL)


def trajectory(fused, X, y, steps, momentum, dtype, reg=1e-3, lr=0.1, batch=32):
    """Losses (steps,) and final params of ``steps`` SGD steps from one init on one batch sequence."""
    g = torch.Generator().manual_seed(0)
    params = {"W1": 0.1 * torch.randn(X.shape[1], 16, generator=g, dtype=dtype), "b1": torch.zeros(16, dtype=dtype),
              "W2": 0.1 * torch.randn(16, 5, generator=g, dtype=dtype), "b2": torch.zeros(5, dtype=dtype)}
    params = {k: v.to(X.device) for k, v in params.items()}
    leaves = [torch.nn.Parameter(params[k]) for k in NAMES]
    opt = torch.optim.SGD(leaves, lr=lr, momentum=momentum)
    buffers = [torch.zeros_like(p) for p in leaves]
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (batch,), generator=gen).to(X.device)  # (B,) with replacement
        X_b, y_b = X.index_select(0, idx), y.index_select(0, idx)
        if fused:
            loss = fused_sgd_step(X_b, y_b, *leaves, reg, lr, momentum, buffers)
        else:
            loss = TwoLayerLoss.apply(X_b, y_b, *leaves, reg)
            loss.backward()
            opt.step()
            opt.zero_grad()
        losses.append(loss.detach())
    return torch.stack(losses), {k: p.detach() for k, p in zip(NAMES, leaves)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,momentum", [(torch.float64, 0.0), (torch.float64, 0.9), (torch.float32, 0.0),
                                            (torch.float32, 0.9)])
def test_fused_trajectory_equals_the_front_door(device, dtype, momentum):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(300, 20, generator=g, dtype=dtype).to(device)
    y = X[:, :5].argmax(1).to(torch.int64)  # learnable labels, 5 classes
    fused_losses, fused_params = trajectory(True, X, y, 60, momentum, dtype)
    ref_losses, ref_params = trajectory(False, X, y, 60, momentum, dtype)
    # float32: 60 steps compound the rounding of a differently ordered update (one rounding each step)
    tol = FLOAT64_TOL if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    assert_close_report("loss history", fused_losses, ref_losses, **tol)
    for k in NAMES:
        assert_close_report(k, fused_params[k], ref_params[k], **tol)
    assert float(fused_losses[-10:].mean()) < 0.9 * float(fused_losses[:10].mean())  # it trains


def test_finite_only_leaves_the_parameters_alone_on_a_nan_loss():
    X, y, params, _ = make_case(0, 8, 5, 4, 3, torch.float64)
    X[3, 1] = float("nan")
    before = {k: v.clone() for k, v in params.items()}
    loss = fused_sgd_step(X, y, *params.values(), 0.1, 0.5, finite_only=True)
    assert math.isnan(float(loss))
    for k in NAMES:
        assert torch.equal(params[k], before[k]), k
    fused_sgd_step(X, y, *params.values(), 0.1, 0.5)  # without the check the NaN update happens
    assert torch.isnan(params["W1"]).any()


def test_the_step_needs_no_gradients_and_leaves_grad_empty():
    X, y, params, _ = make_case(1, 6, 4, 3, 2, torch.float32)
    leaves = [torch.nn.Parameter(params[k]) for k in NAMES]
    loss = fused_sgd_step(X, y, *leaves, 0.1, 0.1)
    assert not loss.requires_grad and all(p.grad is None for p in leaves)


@pytest.mark.parametrize("change,needle", [
    (lambda c: c.update(X=c["X"][:, :-1]), "X"),
    (lambda c: c.update(y=c["y"][:-1]), "y"),
    (lambda c: c.update(W2=c["W2"][:-1]), "W2"),
    (lambda c: c.update(reg=-1.0), "reg"),
    (lambda c: c.update(momentum=0.9), "buffers"),
])
def test_bad_inputs_are_clear_value_errors(change, needle):
    X, y, params, _ = make_case(2, 6, 4, 3, 2, torch.float64)
    case = {"X": X, "y": y, **params, "reg": 0.1, "momentum": 0.0}
    change(case)
    with pytest.raises(ValueError, match=needle):
        fused_sgd_step(case["X"], case["y"], case["W1"], case["b1"], case["W2"], case["b2"], case["reg"], 0.1,
                       case["momentum"])
