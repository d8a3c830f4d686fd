"""K SGD steps per training_step (steps_per_call) and the CUDA-graph fast path (cuda_graph) equal the eager loop:
the same loss of every SGD step, final parameters, lr schedule, momentum state and step count.

Run: ``python -m pytest tests/test_cuda_graph.py -q`` (the graph tests need a GPU: ``-m cuda``; they skip without).
"""
import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch

import train.step_blocks as step_blocks
from tests.blobs import BlobsDataModule, one_thread  # noqa: F401 (fixture)
from tests.helpers import CUDA, FLOAT32_TOL, FLOAT64_TOL, assert_close_report
from torch_impl.cuda_graph import GraphedSGDSteps
from torch_impl.fused_step import fused_sgd_step
from train.divergence import DivergenceGuard, TrainingDiverged
from train.module import TwoLayerNetModule
from train.step_blocks import StepBlockRunner

pytestmark = [pytest.mark.lightning, pytest.mark.usefixtures("one_thread")]
# graph vs eager on the GPU: the same kernels but the update as addcmul_ by a device lr instead of foreach add_ with
# alpha (one rounding may differ per step), over 15 steps of lr 0.2: float32 tolerance a little above one step's
GRAPH_TOL = {"rtol": 1e-5, "atol": 1e-5}


class LossHistory(L.Callback):
    """The loss of every replayed SGD step, from the runner's loss buffer (eager steps: RecordingModule)."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        runner = pl_module.block_runner
        if runner is not None and runner.use_graph:
            self.losses += runner.losses[:runner.last_count].tolist()


class RecordingModule(TwoLayerNetModule):
    """Records the loss of every eager step from training_step's return (a block returns its ``step_losses``)."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.block_runner is None or not self.block_runner.use_graph:
            self.history += (out["step_losses"] if isinstance(out, dict) else out.reshape(1)).tolist()
        return out


def fit(device="cpu", precision="64-true", max_epochs=3, max_steps=-1, callbacks=(), **model_kw):
    """Train RecordingModule on BlobsDataModule; returns (module, trainer, per-step losses)."""
    dm = BlobsDataModule()
    kw = dict(hidden_size=7, std=0.5, learning_rate=0.2, learning_rate_decay=0.5, reg=1e-3) | model_kw
    model = RecordingModule(dm.input_size, dm.num_classes, **kw)
    model.history = []
    history = LossHistory()
    trainer = L.Trainer(accelerator=device, devices=1, precision=precision, max_epochs=max_epochs,
                        max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[history, *callbacks])
    trainer.fit(model, datamodule=dm)
    return model, trainer, model.history + history.losses


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
    fused = []  # the steps fused_sgd_step ran: all but each block's last
    monkeypatch.setattr(step_blocks, "fused_sgd_step", lambda *a, **k: fused.append(1) or fused_sgd_step(*a, **k))
    eager = fit(momentum=momentum, lr_schedule=lr_schedule)
    assert not fused
    blocks = fit(momentum=momentum, lr_schedule=lr_schedule, steps_per_call=steps_per_call)
    assert eager[1].global_step == 15  # 3 epochs of 5 batches; the blocks were 2+2+1 or 3+2 per epoch
    assert len(fused) == 15 - 1  # every step but the run's first
    assert_same_run(blocks, eager, FLOAT64_TOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_steps_per_call_with_autograd_grad_mode_equals_one_step_per_call(momentum):
    eager = fit(momentum=momentum, grad_mode="autograd")
    blocks = fit(momentum=momentum, grad_mode="autograd", steps_per_call=3)
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


def test_cuda_graph_on_cpu_runs_the_steps_eagerly(caplog):
    eager = fit(precision="32-true")
    with caplog.at_level(logging.INFO, logger="train.step_blocks"):
        graph = fit(precision="32-true", cuda_graph=True, steps_per_call=4)
    assert "no CUDA device" in caplog.text
    assert not graph[0].block_runner.use_graph
    assert_same_run(graph, eager, FLOAT32_TOL)


class EagerReplay:
    """Stands in for torch.cuda.CUDAGraph on the CPU: replay() runs the captured body eagerly."""

    def __init__(self, body):
        self.replay = body


def eager_capture(self, count):
    losses = torch.empty(count, dtype=self.params[0].dtype)  # (count,)
    return EagerReplay(lambda: self._steps(count, losses)), losses


@pytest.mark.parametrize("lr_schedule", ["epoch", "cs231n"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_graph_body_replayed_eagerly_on_cpu_equals_the_eager_loop(monkeypatch, steps_per_call, momentum, lr_schedule):
    """Everything of the graph path but the capture: index and lr tables, position counter, momentum, counting."""
    monkeypatch.setattr(GraphedSGDSteps, "device_type", "cpu")
    monkeypatch.setattr(GraphedSGDSteps, "_capture", eager_capture)
    eager = fit(precision="32-true", momentum=momentum, lr_schedule=lr_schedule)
    graph = fit(precision="32-true", momentum=momentum, lr_schedule=lr_schedule, cuda_graph=True,
                steps_per_call=steps_per_call)
    assert graph[0].block_runner.use_graph and not graph[0].history  # every step went through the replay
    assert_same_run(graph, eager, GRAPH_TOL)


@pytest.mark.parametrize("world_size,precision,needle", [(2, "32-true", "2 processes"),
                                                          (1, "64-true", "precision '64-true'"),
                                                          (1, "bf16-mixed", "precision 'bf16-mixed'")])
def test_cuda_graph_refuses_ddp_and_other_precisions(world_size, precision, needle):
    module = SimpleNamespace(hparams=SimpleNamespace(cuda_graph=True),
                             trainer=SimpleNamespace(world_size=world_size, precision=precision))
    with pytest.raises(ValueError, match="cuda_graph") as err:
        StepBlockRunner(module)
    assert needle in str(err.value)


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
    assert graph[0].block_runner.use_graph
    assert_same_run(graph, eager, GRAPH_TOL)


@pytest.mark.cuda
@CUDA
def test_cuda_graph_stops_at_max_steps_and_keeps_data_on_the_gpu():
    eager = fit("cuda", "32-true", max_steps=7)
    graph = fit("cuda", "32-true", max_steps=7, cuda_graph=True, steps_per_call=3)
    assert graph[0].block_runner.graphed.X.is_cuda and graph[0].block_runner.graphed.indices.is_cuda
    assert_same_run(graph, eager, GRAPH_TOL)
