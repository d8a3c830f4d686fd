"""BatchedTwoLayerNets (torch_impl/batched.py): M nets in one step equal M separate runs of fused_sgd_step.

Trajectories of 120 steps in float64 (different hidden sizes, reg, momentum and lr per net) against M separate
fused_sgd_step runs; the readable gradients against autograd of the stacked loss (hypothesis over shapes); the
fused step against the readable gradients; a NaN net never touching the others; dropping nets; the padding staying
zero; the CUDA-graph body (replayed eagerly on the CPU, and captured on a GPU when there is one); bad inputs.

Run: ``python -m pytest tests/test_batched.py -q`` (or ``-m sweep``).
"""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import CUDA, FLOAT32_TOL, FLOAT64_TOL, assert_close_report
from torch_impl.batched import BatchedTwoLayerNets, GraphedBatchedSteps, stacked_loss
from torch_impl.fused_step import fused_sgd_step
from torch_impl.neural_net import PARAM_NAMES

pytestmark = [pytest.mark.sweep, pytest.mark.two_layer, pytest.mark.equivalence]


def make_nets(seed, D, hidden, C, dtype=torch.float64, device="cpu", std=0.3):
    """One params dict {W1 (D, H), b1, W2 (H, C), b2} per H in ``hidden`` (nonzero biases)."""
    g = torch.Generator().manual_seed(seed)
    nets = []
    for H in hidden:
        shapes = {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
        nets.append({k: (std * torch.randn(*s, generator=g, dtype=dtype)).to(device) for k, s in shapes.items()})
    return nets


def make_data(seed, N, D, C, dtype=torch.float64, device="cpu"):
    """X (N, D) and learnable labels y (N,): the argmax of a random linear map of X."""
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(N, D, generator=g, dtype=dtype)
    y = (X @ torch.randn(D, C, generator=g, dtype=dtype)).argmax(1)
    return X.to(device), y.to(device)


def batch_sequence(seed, steps, N, B):
    """(steps, B) int64 batch indices drawn with replacement: the common random numbers every net sees."""
    return torch.randint(0, N, (steps, B), generator=torch.Generator().manual_seed(seed + 2))


def lr_at(step, lr0, decay, every=10):
    """(M,) learning rates of ``step``: lr0 decay ** (step // every), per net."""
    return lr0 * decay ** (step // every)


def separate_runs(nets, X, y, batches, lr0, decay, reg, momentum):
    """M independent fused_sgd_step runs. Returns (losses (steps, M), final params per net)."""
    losses = []
    for m, p in enumerate(nets):
        p = {k: v.clone() for k, v in p.items()}
        buffers = [torch.zeros_like(p[k]) for k in PARAM_NAMES] if momentum[m] else None
        run = []
        for s, idx in enumerate(batches):
            lr = float(lr_at(s, lr0, decay)[m])
            run.append(fused_sgd_step(X[idx], y[idx], *p.values(), float(reg[m]), lr, float(momentum[m]), buffers))
        losses.append(torch.stack(run))
        nets[m] = p
    return torch.stack(losses, 1), nets


def batched_run(nets, X, y, batches, lr0, decay, reg, momentum):
    batched = BatchedTwoLayerNets.stack(nets, reg, momentum)
    losses = torch.stack([batched.step(X[idx], y[idx], lr_at(s, lr0, decay)) for s, idx in enumerate(batches)])
    return losses, batched


def assert_same_nets(got, want, tol, what=""):
    assert len(got) == len(want)
    for m, (g, w) in enumerate(zip(got, want)):
        for k in PARAM_NAMES:
            assert_close_report(f"{what}net {m} {k}", g[k], w[k], **tol)


CASES = {  # hidden sizes, reg, momentum, lr0, decay per net
    "plain": ([5, 9, 3, 9], [1e-3, 0.0, 0.05, 1e-2], [0.0, 0.0, 0.0, 0.0]),
    "momentum": ([5, 9, 3, 9], [1e-3, 0.0, 0.05, 1e-2], [0.9, 0.0, 0.5, 0.8]),
}


@pytest.mark.parametrize("case", CASES)
def test_120_batched_steps_equal_separate_fused_runs_float64(case):
    hidden, reg, momentum = CASES[case]
    D, C, N, B = 12, 4, 150, 32
    X, y = make_data(0, N, D, C)
    nets = make_nets(0, D, hidden, C)
    batches = batch_sequence(0, 120, N, B)
    lr0 = torch.tensor([0.3, 0.1, 0.5, 0.05], dtype=torch.float64)
    decay = torch.tensor([0.9, 1.0, 0.8, 0.95], dtype=torch.float64)
    want_losses, want = separate_runs([dict(p) for p in nets], X, y, batches, lr0, decay, reg, momentum)
    got_losses, batched = batched_run(nets, X, y, batches, lr0, decay, reg, momentum)
    # the nets moved far from their init (so the comparison is not of near-constant parameters)
    assert float((want_losses[0] - want_losses[-1]).min()) > 0.1
    assert_close_report("losses (step, net)", got_losses, want_losses, **FLOAT64_TOL)
    assert_same_nets(batched.unstack(), want, FLOAT64_TOL)
    assert_padding_zero(batched)


def assert_padding_zero(batched):
    """The padded hidden units of every net hold exact zeros: W1's columns, b1, W2's rows, and their buffers."""
    pad = batched.padding_mask()  # (M, Hmax)
    D, M, Hmax = batched.W1.shape[0], batched.num_nets, batched.hidden_max
    tensors = [batched.W1, batched.b1, batched.W2] + list((batched.buffers or [])[:3])
    for name, t in zip(("W1", "b1", "W2", "v_W1", "v_b1", "v_W2"), tensors):
        per_unit = t.view(D, M, Hmax).abs().amax(0) if t.dim() == 2 else t.reshape(M, Hmax, -1).abs().amax(2)
        assert bool((per_unit[pad] == 0).all()), f"{name}: padding holds nonzero values"


@given(N=st.integers(1, 24), D=st.integers(1, 12), C=st.integers(2, 6),
       hidden=st.lists(st.integers(1, 8), min_size=1, max_size=5), seed=st.integers(0, 2**31 - 1),
       reg_scale=st.floats(0, 1))
def test_readable_gradients_equal_autograd_of_the_stacked_loss(N, D, C, hidden, seed, reg_scale):
    X, y = make_data(seed, N, D, C)
    nets = BatchedTwoLayerNets.stack(make_nets(seed, D, hidden, C), reg=[reg_scale * (m + 1) / len(hidden)
                                                                         for m in range(len(hidden))])
    losses, grads = nets.loss_and_grads(X, y)
    leaves = [t.clone().requires_grad_() for t in (nets.W1, nets.b1, nets.W2, nets.b2)]
    total = stacked_loss(X, y, *leaves, nets.reg)
    total.backward()
    assert_close_report("sum of losses", losses.sum(), total.detach(), **FLOAT64_TOL)
    for k, leaf in zip(PARAM_NAMES, leaves):
        assert_close_report(f"d{k}", grads[k], leaf.grad, **FLOAT64_TOL)


@given(N=st.integers(1, 24), D=st.integers(1, 12), C=st.integers(2, 6),
       hidden=st.lists(st.integers(1, 8), min_size=1, max_size=5), seed=st.integers(0, 2**31 - 1),
       momentum=st.sampled_from([0.0, 0.9]))
def test_fused_step_equals_readable_gradients_and_separate_fused_steps(N, D, C, hidden, seed, momentum):
    X, y = make_data(seed, N, D, C)
    params = make_nets(seed, D, hidden, C)
    M = len(hidden)
    lr = torch.linspace(0.05, 0.5, M, dtype=torch.float64)
    reg = torch.linspace(0.0, 0.1, M, dtype=torch.float64)
    nets = BatchedTwoLayerNets.stack(params, reg, momentum)
    want_losses, grads = nets.loss_and_grads(X, y)
    before = [nets.W1.clone(), nets.b1.clone(), nets.W2.clone(), nets.b2.clone()]
    losses = nets.step(X, y, lr)
    assert_close_report("losses", losses, want_losses, **FLOAT64_TOL)
    # the first step from zero buffers is W -= lr dW with or without momentum
    lr_cols = {"W1": lr.repeat_interleave(nets.hidden_max), "b1": lr.repeat_interleave(nets.hidden_max),
               "W2": lr.view(M, 1, 1), "b2": lr.view(M, 1)}
    for k, old, new in zip(PARAM_NAMES, before, (nets.W1, nets.b1, nets.W2, nets.b2)):
        assert_close_report(k, new, old - lr_cols[k] * grads[k], **FLOAT64_TOL)
    for m, p in enumerate(params):  # and each net equals its own fused step
        p = {k: v.clone() for k, v in p.items()}
        buffers = [torch.zeros_like(p[k]) for k in PARAM_NAMES] if momentum else None
        loss = fused_sgd_step(X, y, *p.values(), float(reg[m]), float(lr[m]), momentum, buffers)
        assert_close_report(f"net {m} loss", losses[m], loss, **FLOAT64_TOL)
        assert_same_nets([nets.unstack()[m]], [p], FLOAT64_TOL, what=f"net {m}: ")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_nan_net_never_touches_the_others(momentum):
    D, C, N, B, hidden = 10, 3, 80, 16, [4, 6, 4]
    X, y = make_data(1, N, D, C)
    nets = make_nets(1, D, hidden, C)
    batches = batch_sequence(1, 30, N, B)
    clean = BatchedTwoLayerNets.stack(nets, reg=1e-3, momentum=momentum)
    sick = BatchedTwoLayerNets.stack(nets, reg=1e-3, momentum=momentum)
    sick.W1.view(D, 3, 6)[2, 1, 3] = float("nan")  # net 1, a real hidden unit
    sick.b2[1, 0] = float("inf")
    for idx in batches:
        clean_losses = clean.step(X[idx], y[idx], 0.2)
        sick_losses = sick.step(X[idx], y[idx], 0.2)
        assert not torch.isfinite(sick_losses[1])
        assert torch.equal(sick_losses[[0, 2]], clean_losses[[0, 2]])  # bit for bit
    for m in (0, 2):
        for k in PARAM_NAMES:
            assert torch.equal(sick.unstack()[m][k], clean.unstack()[m][k]), f"net {m} {k}"
    assert sick.drop(~torch.isfinite(sick_losses)) == [1]
    assert sick.ids == [0, 2] and sick.num_nets == 2


def test_dropped_nets_leave_the_others_on_their_course():
    D, C, N, B, hidden = 10, 3, 80, 16, [4, 9, 6, 2]
    X, y = make_data(2, N, D, C)
    params = make_nets(2, D, hidden, C)
    batches = batch_sequence(2, 40, N, B)
    lr0, decay, reg, momentum = torch.full((4,), 0.2, dtype=torch.float64), torch.ones(4), [1e-3] * 4, [0.5] * 4
    _, full = batched_run(params, X, y, batches, lr0, decay, reg, momentum)
    nets = BatchedTwoLayerNets.stack(params, reg, momentum)
    for s, idx in enumerate(batches):
        if s == 15:
            assert nets.drop(torch.tensor([False, True, False, False])) == [1]  # the widest: padding shrinks to 6
            assert nets.hidden_max == 6
        if s == 25:
            assert nets.drop(torch.tensor([True, False, False])) == [0]
        nets.step(X[idx], y[idx], 0.2)
    assert nets.ids == [2, 3] and nets.hidden_sizes == [6, 2]
    assert_same_nets(nets.unstack(), [full.unstack()[m] for m in (2, 3)], FLOAT64_TOL)
    assert_padding_zero(nets)
    assert nets.drop(torch.tensor([True, True])) == [2, 3] and nets.num_nets == 0


def test_accuracy_is_each_nets_own():
    D, C, hidden = 6, 3, [2, 5, 3]
    X, y = make_data(3, 40, D, C)
    params = make_nets(3, D, hidden, C)
    nets = BatchedTwoLayerNets.stack(params, reg=0.0)
    for m, p in enumerate(params):
        want = ((torch.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]).argmax(1) == y).double().mean()
        assert float(nets.accuracy(X, y, chunk_size=7)[m]) == pytest.approx(float(want), abs=1e-12)


def eager_capture(self, count):
    """Stands in for torch.cuda.CUDAGraph on the CPU: replay() runs the captured body eagerly."""
    losses = torch.empty(count, self.nets.num_nets, dtype=self.nets.W1.dtype)

    class Replay:
        def replay(_):
            self._steps(count, losses)

    return Replay(), losses


def graph_body_equals_step_loop(device, tol):
    D, C, N, B, hidden = 10, 3, 60, 16, [4, 7]
    X, y = make_data(4, N, D, C, torch.float32, device)
    params = make_nets(4, D, hidden, C, torch.float32, device)
    table = batch_sequence(4, 10, N, B).to(device)  # (10, B): one epoch of 10 batches
    lrs = torch.linspace(0.3, 0.1, 10).view(10, 1).repeat(1, 2).to(device)  # (10, 2)
    lrs[:, 1] *= 0.5
    eager = BatchedTwoLayerNets.stack(params, reg=[1e-3, 1e-2], momentum=[0.9, 0.0])
    want = torch.stack([eager.step(X[table[b]], y[table[b]], lrs[b]) for b in range(10)])
    graphed = BatchedTwoLayerNets.stack(params, reg=[1e-3, 1e-2], momentum=[0.9, 0.0])
    steps = GraphedBatchedSteps(graphed, X, y)
    steps.load_epoch(table, lrs)
    got = torch.cat([steps.run(0, 4).clone(), steps.run(4, 4).clone(), steps.run(8, 2).clone()])  # 2 graphs
    assert set(steps.graphs) == {4, 2}
    assert_close_report("losses", got, want, **tol)
    assert_same_nets(graphed.unstack(), eager.unstack(), tol)


def test_graph_body_replayed_eagerly_on_cpu_equals_the_step_loop(monkeypatch):
    monkeypatch.setattr(GraphedBatchedSteps, "device_type", "cpu")
    monkeypatch.setattr(GraphedBatchedSteps, "_capture", eager_capture)
    graph_body_equals_step_loop("cpu", FLOAT32_TOL)


@pytest.mark.cuda
@CUDA
def test_captured_graph_equals_the_step_loop_on_cuda():
    graph_body_equals_step_loop("cuda", FLOAT32_TOL)


def test_graphed_steps_refuse_bad_tables_and_cpu_tensors():
    X, y = make_data(5, 20, 4, 3, torch.float32)
    nets = BatchedTwoLayerNets.stack(make_nets(5, 4, [3, 2], 3, torch.float32), reg=0.0)
    with pytest.raises(ValueError, match="X: got a tensor on cpu; expected a cuda tensor"):
        GraphedBatchedSteps(nets, X, y)


@pytest.mark.parametrize("bad, match", [
    (lambda p: p[1].update(W1=p[1]["W1"][:-1]), r"params\[1\]\['W1'\]: got shape \(3, 2\); expected \(4, 2\)"),
    (lambda p: p[1].update(b2=p[1]["b2"].float()), r"params\[1\]\['b2'\]: got torch.float32"),
    (lambda p: p[0].update(W2=p[0]["W2"][:, :2]), r"params\[0\]\['b2'\]: got shape \(3,\); expected \(2,\)"),
])
def test_stack_names_the_bad_argument(bad, match):
    params = make_nets(6, 4, [3, 2], 3)
    bad(params)
    with pytest.raises(ValueError, match=match):
        BatchedTwoLayerNets.stack(params, reg=0.0)


def test_bad_hyperparameters_and_batches_name_the_argument():
    params = make_nets(6, 4, [3, 2], 3)
    with pytest.raises(ValueError, match=r"reg: got shape \(3,\); expected a number or 2 numbers"):
        BatchedTwoLayerNets.stack(params, reg=[0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"momentum: got \[0.5, 1.0\]; expected numbers in \[0, 1\)"):
        BatchedTwoLayerNets.stack(params, reg=0.0, momentum=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"reg: got \[-1.0, 0.0\]; expected numbers >= 0"):
        BatchedTwoLayerNets.stack(params, reg=[-1.0, 0.0])
    nets = BatchedTwoLayerNets.stack(params, reg=0.0)
    X, y = make_data(6, 5, 4, 3)
    with pytest.raises(ValueError, match=r"X: got shape \(5, 3\)"):
        nets.step(X[:, :3], y, 0.1)
    with pytest.raises(ValueError, match=r"lr: got shape \(3,\); expected a number or 2 numbers"):
        nets.step(X, y, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"mask: got shape \(3,\); expected \(2,\)"):
        nets.drop(torch.zeros(3, dtype=torch.bool))


@pytest.mark.slow
def test_bench_sweep_writes_its_rows(tmp_path):
    """benchmarks/bench_sweep.py runs and writes {meta, rows} with its documented row keys (no timing asserted)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_sweep.py", "--shapes", "digits", "--models", "1", "3",
                           "--steps", "2", "--repeats", "2", "--threads", "1", "--json", str(out)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["meta"]["device"] == "cpu" and got["meta"]["threads"] == 1 and "load_average_before" in got["meta"]
    assert [(r["shape"], r["models"]) for r in got["rows"]] == [("digits", 1), ("digits", 3)]
    for r in got["rows"]:
        assert {"shape", "models", "sequential_ms_per_model_step", "batched_ms_per_model_step", "speedup"} <= set(r)
        assert r["speedup"] == pytest.approx(r["sequential_ms_per_model_step"] / r["batched_ms_per_model_step"],
                                             rel=1e-2, abs=0.006)  # speedup is rounded to 0.01
