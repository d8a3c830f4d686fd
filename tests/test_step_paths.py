"""Every SGD step implementation equals the readable one: one test body, parametrized over the implementations.

The reference is the mirror by hand: two_layer_loss's gradients (torch_impl/neural_net.py), then SGD's update
written out (torch.optim.SGD's momentum form, v = momentum v + dW, W -= lr v). The implementations:

    front door   TwoLayerLoss.apply, backward through the engine, torch.optim.SGD (fit's sgd_step)
    fused        torch_impl/fused_step.py's fused_sgd_step (no autograd, the update inside the GEMMs)
    graph body   torch_impl/cuda_graph.py's captured body: replayed eagerly on the CPU (tests/cpu_replay.py),
                 captured for real on a GPU
    batched      torch_impl/batched.py's BatchedTwoLayerNets.step: the net as net 0 of two (the sweep's step)

Each is a "stepper": made from the params and momentum buffers (dicts of tensors, updated in place) and the
settings, then called once per batch, returning the loss before the update. One step over random shapes and values
(hypothesis), and 60-step trajectories with and without momentum.

Run: ``python -m pytest tests/test_step_paths.py -q`` (or ``-m two_layer``).
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.cpu_replay import CPUReplayedSGDSteps
from tests.helpers import DEVICES, FLOAT32_TOL, FLOAT64_TOL, assert_close_report, two_layer_case
from torch_impl.batched import BatchedTwoLayerNets
from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step
from torch_impl.neural_net import PARAM_NAMES, TwoLayerLoss, two_layer_loss

pytestmark = [pytest.mark.two_layer, pytest.mark.equivalence]


def mirror_stepper(params, buffers, reg, lr, momentum):
    """The reference: the hand-written gradients of the readable mirror, then SGD's update by hand."""
    def step(X, y):
        loss, grads = two_layer_loss(X, y, *params.values(), reg)
        for k in PARAM_NAMES:
            update = buffers[k].mul_(momentum).add_(grads[k]) if momentum else grads[k]  # v = momentum v + dW
            params[k].sub_(lr * update)  # W -= lr v
        return loss

    return step


def front_door_stepper(params, buffers, reg, lr, momentum):
    """TwoLayerLoss.apply, backward, torch.optim.SGD whose momentum buffers are ``buffers`` (updated in place)."""
    leaves = [torch.nn.Parameter(params[k]) for k in PARAM_NAMES]  # share the params' storage
    opt = torch.optim.SGD(leaves, lr=lr, momentum=momentum)
    if momentum:
        for p, k in zip(leaves, PARAM_NAMES):
            opt.state[p]["momentum_buffer"] = buffers[k]

    def step(X, y):
        loss = TwoLayerLoss.apply(X, y, *leaves, reg)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.detach()

    return step


def fused_stepper(params, buffers, reg, lr, momentum):
    ps, bs = [params[k] for k in PARAM_NAMES], [buffers[k] for k in PARAM_NAMES]
    return lambda X, y: fused_sgd_step(X, y, *ps, reg, lr, momentum, bs)


def graph_body_stepper(params, buffers, reg, lr, momentum):
    """One replay of a one-step graph per batch: the batch is the whole split and its index table is 0 .. N-1."""
    leaves = [torch.nn.Parameter(params[k]) for k in PARAM_NAMES]  # autograd.grad in the body needs leaves

    def step(X, y):
        steps_class = GraphedSGDSteps if X.is_cuda else CPUReplayedSGDSteps
        steps = steps_class(lambda X_b, y_b: TwoLayerLoss.apply(X_b, y_b, *leaves, reg), leaves, X, y, momentum,
                            [buffers[k] for k in PARAM_NAMES])
        steps.load_epoch(torch.arange(X.shape[0], device=X.device).view(1, -1),  # (1, N)
                         torch.full((1,), lr, dtype=X.dtype))
        return steps.run(0, 1)[0].clone()

    return step


def batched_stepper(params, buffers, reg, lr, momentum):
    """Net 0 of a BatchedTwoLayerNets (torch_impl/batched.py) beside a wider net with other settings, so the
    padding and the per-net factors are in play; net 0's params and buffers are copied back after each step."""
    g = torch.Generator().manual_seed(0)
    (D, H), C = params["W1"].shape, params["W2"].shape[1]
    shapes = {"W1": (D, H + 3), "b1": (H + 3,), "W2": (H + 3, C), "b2": (C,)}
    other = {k: torch.randn(*s, generator=g, dtype=params[k].dtype).to(params[k].device) for k, s in shapes.items()}
    nets = BatchedTwoLayerNets.stack([params, other], reg=[reg, 0.5 * reg], momentum=[momentum, 0.5],
                                     buffers=[buffers, {k: torch.zeros_like(v) for k, v in other.items()}])

    def step(X, y):
        loss = nets.step(X, y, torch.tensor([lr, 0.1], dtype=X.dtype, device=X.device))[0]
        for state, net0 in ((params, nets.unstack()[0]), (buffers, nets.unstack(buffers=True)[0])):
            for k in PARAM_NAMES:
                state[k].copy_(net0[k])
        return loss

    return step


STEPPERS = {"front door": front_door_stepper, "fused": fused_stepper, "graph body": graph_body_stepper,
            "batched": batched_stepper}


def assert_same_state(what, got, want, tol):
    """Params or buffers: float32 tolerances scaled by |W| (an update cancels about that many digits)."""
    for k in PARAM_NAMES:
        scale = max(float(want[k].abs().max()), 1.0) if want[k].numel() else 1.0
        assert_close_report(f"{what} {k}", got[k], want[k], rtol=tol["rtol"], atol=tol["atol"] * scale)


def copies(case):
    X, y, params, buffers = case
    return X, y, {k: v.clone() for k, v in params.items()}, {k: v.clone() for k, v in buffers.items()}


@pytest.mark.parametrize("stepper", STEPPERS.values(), ids=STEPPERS.keys())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(N=st.integers(1, 48), D=st.integers(1, 40), H=st.integers(1, 24), C=st.integers(2, 10),
       reg=st.floats(0, 1), lr=st.floats(1e-4, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       seed=st.integers(0, 2**31 - 1))
def test_one_step_equals_the_mirror(stepper, dtype, N, D, H, C, reg, lr, momentum, seed):
    case = two_layer_case(seed, N, D, H, C, dtype)
    X, y, want_params, want_buffers = copies(case)
    want_loss = mirror_stepper(want_params, want_buffers, reg, lr, momentum)(X, y)
    X, y, params, buffers = copies(case)
    loss = stepper(params, buffers, reg, lr, momentum)(X, y)
    tol = FLOAT64_TOL if dtype == torch.float64 else FLOAT32_TOL
    assert_close_report("loss", loss, want_loss, **tol)
    assert_same_state("param", params, want_params, tol)
    if momentum:
        assert_same_state("momentum buffer", buffers, want_buffers, tol)


def trajectory(make_stepper, X, y, steps, momentum, reg=1e-3, lr=0.1, batch=32):
    """Losses (steps,) and final params of ``steps`` SGD steps from one init on one batch sequence."""
    _, _, params, buffers = two_layer_case(0, 1, X.shape[1], 16, 5, X.dtype, X.device, std=0.1)
    buffers = {k: torch.zeros_like(v) for k, v in buffers.items()}  # SGD's first step: v = dW
    step = make_stepper(params, buffers, reg, lr, momentum)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (batch,), generator=gen).to(X.device)  # (B,) with replacement
        losses.append(step(X.index_select(0, idx), y.index_select(0, idx)))
    return torch.stack(losses), params


@pytest.mark.parametrize("stepper", STEPPERS.values(), ids=STEPPERS.keys())
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,momentum", [(torch.float64, 0.0), (torch.float64, 0.9), (torch.float32, 0.0),
                                            (torch.float32, 0.9)])
def test_trajectory_equals_the_mirror(stepper, device, dtype, momentum):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(300, 20, generator=g, dtype=dtype).to(device)
    y = X[:, :5].argmax(1).to(torch.int64)  # learnable labels, 5 classes
    losses, params = trajectory(stepper, X, y, 60, momentum)
    ref_losses, ref_params = trajectory(mirror_stepper, X, y, 60, momentum)
    # float32: 60 steps compound the rounding of a differently ordered update (one rounding each step)
    tol = FLOAT64_TOL if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    assert_close_report("loss history", losses, ref_losses, **tol)
    for k in PARAM_NAMES:
        assert_close_report(k, params[k], ref_params[k], **tol)
    assert float(losses[-10:].mean()) < 0.9 * float(losses[:10].mean())  # it trains
