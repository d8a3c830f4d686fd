"""The softmax classifier's torch twin (torch_impl/linear_classifier.py) against the NumPy reference: driven by the
same batches from the same W, both record the same losses and end with the same W. Run:
python -m pytest tests/test_linear_classifier.py -q
"""
import numpy as np
import pytest
import torch

from reference_numpy.linear_classifier import LinearClassifier, Softmax
from reference_numpy.validation import DivergenceWarning
from tests.helpers import FLOAT64_TOL, assert_close_report
from torch_impl.linear_classifier import LinearClassifier as TorchLinearClassifier
from torch_impl.linear_classifier import Softmax as TorchSoftmax

pytestmark = pytest.mark.softmax

N, D, C = 60, 8, 4


def blobs(seed=0):
    """X (N, D) float64 around C centres, y (N,) int64."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=N)
    return 2 * rng.standard_normal((C, D))[y] + rng.standard_normal((N, D)), y


@pytest.mark.parametrize("reg", [0.0, 0.1])
def test_torch_softmax_equals_numpy_on_the_same_batches(reg):
    X, y = blobs()
    batches = np.random.default_rng(1).integers(0, N, size=(40, 16))  # (num_iters, batch_size)
    np.random.seed(0)
    ref = Softmax()
    ref.W = 0.001 * np.random.randn(D, C)  # (D, C)  the same start for both
    twin = TorchSoftmax(dtype=torch.float64)
    twin.W = torch.from_numpy(ref.W.copy())
    kwargs = {"learning_rate": 0.05, "reg": reg, "num_iters": 40, "batch_size": 16,
              "sample_indices": lambda it: batches[it]}
    ref_history = ref.train(X, y, **kwargs)
    twin_history = twin.train(torch.from_numpy(X), torch.from_numpy(y), **kwargs)
    assert all(isinstance(loss, float) for loss in twin_history)
    assert_close_report("loss_history", twin_history, ref_history, **FLOAT64_TOL)
    assert_close_report("W", twin.W, ref.W, **FLOAT64_TOL)
    assert torch.equal(twin.predict(X), torch.from_numpy(ref.predict(X)))  # NumPy X is accepted too


def test_torch_softmax_trains_from_its_own_init_in_float32():
    X, y = blobs(2)
    clf = TorchSoftmax()
    history = clf.train(X, y, learning_rate=0.05, reg=1e-4, num_iters=200, batch_size=20,
                        generator=torch.Generator().manual_seed(0))
    assert clf.W.dtype == torch.float32 and clf.W.shape == (D, C)
    assert len(history) == 200 and history[-1] < history[0]
    assert (clf.predict(X).numpy() == y).mean() > 0.9
    with pytest.raises(NotImplementedError):
        TorchLinearClassifier().train(X, y, num_iters=1)
    with pytest.raises(NotImplementedError):
        LinearClassifier().train(X, y, num_iters=1)


def test_a_diverging_run_records_nan_and_goes_on_in_both():
    """lr 3e-5, reg 5e4: each step multiplies W by 1 - 2 lr reg = -2; float32 overflows within 100 steps."""
    X, y = blobs(3)
    for clf, X_in in ((Softmax(), X), (TorchSoftmax(), torch.from_numpy(X))):
        np.random.seed(0)
        with pytest.warns(DivergenceWarning, match=r"Softmax.train: .*lower learning_rate or reg: .* = -2 ") as record:
            history = clf.train(X_in, y, learning_rate=3e-5, reg=5e4, num_iters=100, batch_size=20)
        assert len(history) == 100 and not np.isfinite(history[-1]), type(clf)
        assert len(record) == 1


@pytest.mark.parametrize("changes,name,phrase", [
    ({"X": [[1.0] * D] * N}, "X", "tensor"),
    ({"y": np.zeros(N)}, "y", "integer"),
    ({"y": np.zeros(N - 1, dtype=np.int64)}, "y", f"expected {N}"),
    ({"X": np.full((N, D), np.nan)}, "train X", "NaN"),
    ({"X": np.ones((0, D)), "y": np.zeros(0, dtype=np.int64)}, "train X", "empty"),
    ({"y": np.full(N, -1)}, "train y", "[0, "),
])
def test_bad_input_to_train_is_named_in_one_line(changes, name, phrase):
    X, y = blobs()
    args = {"X": X, "y": y, **changes}
    with pytest.raises(ValueError) as info:
        TorchSoftmax().train(args["X"], args["y"], num_iters=1)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and phrase in message and "\n" not in message, message
