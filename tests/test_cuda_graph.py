"""The step paths of fit equal one front-door step per training_step: the fused path (steps_per_call K > 1) and the
graph path (cuda_graph), the latter through its captured body replayed eagerly on the CPU (EagerReplay) and, with a
GPU, for real. The same loss of every SGD step, final parameters, lr schedule, momentum state and step count; the
optimizer hooks fire at the same step numbers with the same losses, so GradientVerification and DivergenceGuard
work on every path.

Run: ``python -m pytest tests/test_cuda_graph.py -q`` (the GPU tests need ``-m cuda``; they skip without a GPU).
"""
import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch

import train.step_blocks as step_blocks
from tests.blobs import BlobsDataModule, one_thread  # noqa: F401 (fixture)
from tests.cpu_replay import eager_capture
from tests.helpers import CUDA, FLOAT32_TOL, FLOAT64_TOL, assert_close_report
from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step
from torch_impl.neural_net import TwoLayerLoss
from train.divergence import DivergenceGuard, TrainingDiverged
from train.module import TwoLayerNetModule
from train.step_blocks import choose_step_path
from train.verification_callback import GradientVerification, GradientVerificationError

pytestmark = [pytest.mark.lightning, pytest.mark.usefixtures("one_thread")]
# graph vs eager on the GPU: the same kernels but the update as addcmul_ by a device lr instead of foreach add_ with
# alpha (one rounding may differ per step), over 15 steps of lr 0.2: float32 tolerance a little above one step's
GRAPH_TOL = {"rtol": 1e-5, "atol": 1e-5}


class RecordingModule(TwoLayerNetModule):
    """Records the loss of every SGD step from training_step's return value."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.history += out["step_losses"].tolist()
        return out


class HookRecorder(L.Callback):
    """(global_step, last_step.loss) at every on_before_optimizer_step: where Lightning's optimizer hooks fire."""

    def __init__(self):
        self.calls = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls.append((trainer.global_step, float(pl_module.last_step.loss)))


def fit(device="cpu", precision="64-true", max_epochs=3, max_steps=-1, callbacks=(), **model_kw):
    """Train RecordingModule on BlobsDataModule; returns (module, trainer, per-step losses)."""
    dm = BlobsDataModule()
    kw = dict(hidden_size=7, std=0.5, learning_rate=0.2, learning_rate_decay=0.5, reg=1e-3) | model_kw
    model = RecordingModule(input_size=dm.input_size, num_classes=dm.num_classes, **kw)
    model.history = []
    trainer = L.Trainer(accelerator=device, devices=1, precision=precision, max_epochs=max_epochs,
                        max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks))
    trainer.fit(model, datamodule=dm)
    return model, trainer, model.history


def assert_same_run(a, b, tol):
    (model_a, trainer_a, losses_a), (model_b, trainer_b, losses_b) = a, b
    assert trainer_a.global_step == trainer_b.global_step == len(losses_a) == len(losses_b)
    assert_close_report("loss history", torch.tensor(losses_a), torch.tensor(losses_b), **tol)
    for name, p in model_a.net.named_parameters():
        assert_close_report(name, p.detach().cpu(), dict(model_b.net.named_parameters())[name].detach().cpu(), **tol)
    opt_a, opt_b = model_a.optimizers().optimizer, model_b.optimizers().optimizer
    assert opt_a.param_groups[0]["lr"] == pytest.approx(opt_b.param_groups[0]["lr"], rel=1e-12)
    for p_a, p_b in zip(model_a.net.parameters(), model_b.net.parameters()):
        buf_a, buf_b = opt_a.state[p_a].get("momentum_buffer"), opt_b.state[p_b].get("momentum_buffer")
        if model_a.hparams.momentum:
            assert_close_report("momentum buffer", buf_a.cpu(), buf_b.cpu(), **tol)


@pytest.mark.parametrize("lr_schedule", ["epoch", "cs231n"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("steps_per_call", [2, 3])
def test_steps_per_call_equals_one_step_per_call(monkeypatch, steps_per_call, momentum, lr_schedule):
    fused = []  # the steps fused_sgd_step ran
    monkeypatch.setattr(step_blocks, "fused_sgd_step", lambda *a, **k: fused.append(1) or fused_sgd_step(*a, **k))
    eager = fit(momentum=momentum, lr_schedule=lr_schedule)
    assert not fused and eager[0].step_path == "front door"
    blocks = fit(momentum=momentum, lr_schedule=lr_schedule, steps_per_call=steps_per_call)
    assert eager[1].global_step == 15  # 3 epochs of 5 batches; the blocks were 2+2+1 or 3+2 per epoch
    assert blocks[0].step_path == "fused" and len(fused) == 15  # every step
    assert_same_run(blocks, eager, FLOAT64_TOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_steps_per_call_with_autograd_grad_mode_equals_one_step_per_call(momentum):
    eager = fit(momentum=momentum, grad_mode="autograd")
    blocks = fit(momentum=momentum, grad_mode="autograd", steps_per_call=3)
    assert blocks[0].step_path == "front door"  # blocks of front-door steps
    assert_same_run(blocks, eager, FLOAT64_TOL)


@pytest.mark.parametrize("steps_per_call", [2, 3])
def test_a_diverging_block_stops_where_one_step_per_call_stops(steps_per_call):
    """lr 1e6 (x 2 reg W each step) overflows float32 within a few steps: the fused steps read each loss, so the
    guard names the same step with the same message as the one-step loop, and the NaN/Inf step's update never runs."""
    messages = []
    for k in (1, steps_per_call):
        with pytest.raises(TrainingDiverged) as info:
            fit(precision="32-true", learning_rate=1e6, steps_per_call=k, callbacks=[DivergenceGuard()])
        messages.append(str(info.value))
    assert messages[0].startswith("training diverged at step "), messages[0]
    assert messages[1] == messages[0]


def test_steps_per_call_stops_at_max_steps_inside_a_block():
    eager = fit(max_steps=7)
    blocks = fit(max_steps=7, steps_per_call=3)  # blocks 3 + 2 (epoch end) + 2 of 3
    assert blocks[1].global_step == 7
    assert_same_run(blocks, eager, FLOAT64_TOL)


def test_cuda_graph_on_cpu_takes_the_fused_path_and_says_so(caplog):
    eager = fit(precision="32-true")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        graph = fit(precision="32-true", cuda_graph=True, steps_per_call=4)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step path:")]
    assert lines == ["step path: fused, 4 SGD steps per training_step (cuda_graph: no CUDA device, training on cpu; "
                     "one device, precision 32-true, hand-written gradients)"]
    assert_same_run(graph, eager, FLOAT32_TOL)


@pytest.fixture
def cpu_replay(monkeypatch):
    """fit's graph path on the CPU (tests/cpu_replay.py): GraphedSGDSteps takes CPU tensors, replays eagerly."""
    monkeypatch.setattr(GraphedSGDSteps, "device_type", "cpu")
    monkeypatch.setattr(GraphedSGDSteps, "_capture", eager_capture)


# BlobsDataModule: 5 batches per epoch, so blocks of 3 are steps 0-2, 3-4 | 5-7, 8-9 | 10-12, 13-14
BLOCK_ENDS = [2, 4, 7, 9, 12, 14]


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["fused", "graph"])
def test_optimizer_hooks_fire_at_each_blocks_last_step_with_its_loss(cpu_replay, cuda_graph):
    hooks = HookRecorder()
    model, trainer, losses = fit(precision="32-true", steps_per_call=3, cuda_graph=cuda_graph, callbacks=[hooks])
    assert model.step_path == ("graph" if cuda_graph else "fused")
    assert [step for step, _ in hooks.calls] == BLOCK_ENDS
    assert_close_report("loss seen by the hooks", [loss for _, loss in hooks.calls], [losses[s] for s in BLOCK_ENDS],
                        rtol=0, atol=0)


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["fused", "graph"])
def test_gradient_verification_checks_real_gradients_on_the_fast_paths(cpu_replay, monkeypatch, cuda_graph):
    """needs_grads sends each block's last step through the front door: every 4th step is due, so the blocks holding
    steps 0, 4, 8, 12 are checked at their last steps, and the run still equals the one-step loop."""
    eager = fit(precision="32-true")
    verification = GradientVerification(every_n_steps=4)
    blocks = fit(precision="32-true", steps_per_call=3, cuda_graph=cuda_graph, callbacks=[verification])
    assert [step for step, _ in verification.history] == [2, 4, 9, 12]
    assert all(err < 1e-5 for _, err in verification.history)
    assert_same_run(blocks, eager, GRAPH_TOL)
    real = TwoLayerLoss.backward
    monkeypatch.setattr(TwoLayerLoss, "backward", staticmethod(lambda ctx, g: (*real(ctx, g)[:2], 1.5 * real(ctx, g)[2],
                                                                                *real(ctx, g)[3:])))
    with pytest.raises(GradientVerificationError, match="at step 2: the manual gradient of "):
        fit(precision="32-true", steps_per_call=3, cuda_graph=cuda_graph, callbacks=[GradientVerification(4)])


def test_divergence_guard_on_the_graph_path_names_the_blocks_last_step(cpu_replay):
    """A replay runs its whole block, so the guard's hook sees the block's last step: it stops there, naming that
    step and its loss, with the first non-finite step of the one-step loop inside that block."""
    with pytest.raises(TrainingDiverged) as one_step:
        fit(precision="32-true", learning_rate=1e6, callbacks=[DivergenceGuard()])
    first_bad = int(str(one_step.value).split("at step ")[1].split()[0])
    hooks = HookRecorder()
    with pytest.raises(TrainingDiverged) as graph:
        fit(precision="32-true", learning_rate=1e6, cuda_graph=True, steps_per_call=3,
            callbacks=[hooks, DivergenceGuard()])
    block_end = min(end for end in BLOCK_ENDS if end >= first_bad)
    assert str(graph.value).startswith(f"training diverged at step {block_end} "), str(graph.value)
    step, loss = hooks.calls[-1]
    assert step == block_end and f"loss {loss:g}" in str(graph.value)


@pytest.mark.parametrize("lr_schedule", ["epoch", "cs231n"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_graph_body_replayed_eagerly_on_cpu_equals_the_eager_loop(cpu_replay, steps_per_call, momentum, lr_schedule):
    """Everything of the graph path but the capture: index and lr tables, position counter, momentum, counting."""
    eager = fit(precision="32-true", momentum=momentum, lr_schedule=lr_schedule)
    graph = fit(precision="32-true", momentum=momentum, lr_schedule=lr_schedule, cuda_graph=True,
                steps_per_call=steps_per_call)
    assert graph[0].step_path == "graph"
    assert_same_run(graph, eager, GRAPH_TOL)


@pytest.mark.parametrize("world_size,precision,needle", [(2, "32-true", "2 processes"),
                                                          (1, "64-true", "precision '64-true'"),
                                                          (1, "bf16-mixed", "precision 'bf16-mixed'")])
def test_cuda_graph_refuses_ddp_and_other_precisions(world_size, precision, needle):
    hparams = SimpleNamespace(cuda_graph=True, steps_per_call=16, grad_mode="manual")
    with pytest.raises(ValueError, match="cuda_graph") as err:
        choose_step_path(hparams, SimpleNamespace(world_size=world_size, precision=precision), torch.device("cuda"))
    assert needle in str(err.value)


@pytest.mark.parametrize("world_size,precision,grad_mode,steps_per_call,cuda_graph,device,path", [
    (1, "32-true", "manual", 16, False, "cpu", "fused"),
    (1, "64-true", "manual", 16, False, "cpu", "fused"),
    (1, "32-true", "manual", 1, False, "cpu", "front door"),
    (2, "32-true", "manual", 16, False, "cpu", "front door"),
    (1, "bf16-mixed", "manual", 16, False, "cpu", "front door"),
    (1, "32-true", "autograd", 16, False, "cpu", "front door"),
    (1, "32-true", "manual", 16, True, "cpu", "fused"),
    (1, "32-true", "manual", 1, True, "cuda", "graph"),
    (1, "32-true", "autograd", 16, True, "cuda", "graph"),
])
def test_choose_step_path(world_size, precision, grad_mode, steps_per_call, cuda_graph, device, path):
    hparams = SimpleNamespace(cuda_graph=cuda_graph, steps_per_call=steps_per_call, grad_mode=grad_mode)
    trainer = SimpleNamespace(world_size=world_size, precision=precision)
    assert choose_step_path(hparams, trainer, torch.device(device))[0] == path


def test_cuda_graph_with_64_true_fails_at_fit_start():
    with pytest.raises(ValueError, match="cuda_graph: got True with precision '64-true'"):
        fit(precision="64-true", cuda_graph=True)


@pytest.mark.parametrize("steps_per_call", [0, -2, 1.5])
def test_bad_steps_per_call_is_a_clear_value_error(steps_per_call):
    with pytest.raises(ValueError, match="steps_per_call"):
        TwoLayerNetModule(input_size=6, num_classes=3, steps_per_call=steps_per_call)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("lr_schedule", ["epoch", "cs231n"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_cuda_graph_equals_the_eager_gpu_loop(steps_per_call, momentum, lr_schedule):
    eager = fit("cuda", "32-true", momentum=momentum, lr_schedule=lr_schedule)
    graph = fit("cuda", "32-true", momentum=momentum, lr_schedule=lr_schedule, cuda_graph=True,
                steps_per_call=steps_per_call)
    assert graph[0].step_path == "graph"
    assert_same_run(graph, eager, GRAPH_TOL)


@pytest.mark.cuda
@CUDA
def test_cuda_graph_stops_at_max_steps_and_keeps_data_on_the_gpu():
    eager = fit("cuda", "32-true", max_steps=7)
    graph = fit("cuda", "32-true", max_steps=7, cuda_graph=True, steps_per_call=3)
    assert graph[0].runner.graphed.X.is_cuda and graph[0].runner.graphed.indices.is_cuda
    assert_same_run(graph, eager, GRAPH_TOL)
