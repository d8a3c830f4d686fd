"""The CPU replay harness: the graph step path without a GPU.

GraphedSGDSteps (torch_impl/cuda_graph.py) captures its body once and replays it; here "capture" keeps the body and
"replay" runs it eagerly, so everything of the graph path but the CUDA capture itself (index and lr tables, the
device-side position counter, momentum, Lightning's step counting) runs on a CPU.

Usage::

    steps = CPUReplayedSGDSteps(loss_fn, params, X, y)    # a GraphedSGDSteps that accepts CPU tensors
    monkeypatch.setattr(GraphedSGDSteps, "device_type", "cpu")          # or fit's graph path on the CPU
    monkeypatch.setattr(GraphedSGDSteps, "_capture", eager_capture)
"""
import torch

from torch_impl.cuda_graph import GraphedSGDSteps


class EagerReplay:
    """Stands in for torch.cuda.CUDAGraph on the CPU: replay() runs the captured body eagerly."""

    def __init__(self, body):
        self.replay = body


def eager_capture(self, count):
    """GraphedSGDSteps._capture without CUDA: (an EagerReplay of ``count`` steps, their losses buffer (count,))."""
    losses = torch.empty(count, dtype=self.params[0].dtype, device=self.X.device)  # (count,)
    return EagerReplay(lambda: self._steps(count, losses)), losses


class CPUReplayedSGDSteps(GraphedSGDSteps):
    """GraphedSGDSteps whose graphs are EagerReplays: the graph body on CPU tensors."""

    device_type = "cpu"
    _capture = eager_capture
