"""fused_sgd_step (torch_impl/fused_step.py) beyond its equality with the mirror (tests/test_step_paths.py): the NaN
guard (finite_only), no autograd and no ``.grad``, bad inputs as one clear error.

Run: ``python -m pytest tests/test_fused_step.py -q`` (or ``-m two_layer``).
"""
import math

import pytest
import torch

from tests.helpers import two_layer_case
from torch_impl.fused_step import fused_sgd_step
from torch_impl.neural_net import PARAM_NAMES

pytestmark = [pytest.mark.two_layer, pytest.mark.equivalence]


def test_finite_only_leaves_the_parameters_alone_on_a_nan_loss():
    X, y, params, _ = two_layer_case(0, 8, 5, 4, 3, torch.float64)
    X[3, 1] = float("nan")
    before = {k: v.clone() for k, v in params.items()}
    loss = fused_sgd_step(X, y, *params.values(), 0.1, 0.5, finite_only=True)
    assert math.isnan(float(loss))
    for k in PARAM_NAMES:
        assert torch.equal(params[k], before[k]), k
    fused_sgd_step(X, y, *params.values(), 0.1, 0.5)  # without the check the NaN update happens
    assert torch.isnan(params["W1"]).any()


def test_the_step_needs_no_gradients_and_leaves_grad_empty():
    X, y, params, _ = two_layer_case(1, 6, 4, 3, 2, torch.float32)
    leaves = [torch.nn.Parameter(params[k]) for k in PARAM_NAMES]
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
    X, y, params, _ = two_layer_case(2, 6, 4, 3, 2, torch.float64)
    case = {"X": X, "y": y, **params, "reg": 0.1, "momentum": 0.0}
    change(case)
    with pytest.raises(ValueError, match=needle):
        fused_sgd_step(case["X"], case["y"], case["W1"], case["b1"], case["W2"], case["b2"], case["reg"], 0.1,
                       case["momentum"])
