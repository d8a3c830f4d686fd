"""The NumPy reference against itself, centred finite differences, and cs231n's published toy-model numbers."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from reference_numpy.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
    rel_error,
)
from reference_numpy.linear_classifier import LinearClassifier, Softmax
from reference_numpy.neural_net import TwoLayerNet
from reference_numpy.softmax import softmax_loss_naive, softmax_loss_vectorized
from reference_numpy.validation import DivergenceWarning
from tests.helpers import assert_close_report

# cs231n two_layer_net.ipynb: the toy model's expected scores and loss (reg=0.05).
CS231N_SCORES = np.asarray([
    [-0.81233741, -1.27654624, -0.70335995],
    [-0.17129677, -1.18803311, -0.47310444],
    [-0.51590475, -1.01354314, -0.8504215],
    [-0.15419291, -0.48629638, -0.52901952],
    [-0.00618733, -0.12435261, -0.15226949],
])
CS231N_LOSS = 1.30378789133


def toy_model():
    """cs231n's init_toy_model(): seed 0, sizes 4-10-3, std 0.1."""
    np.random.seed(0)
    return TwoLayerNet(4, 10, 3, std=1e-1)


def toy_data():
    """cs231n's init_toy_data(): seed 1, X = 10 * randn(5, 4), y = [0, 1, 2, 2, 1]."""
    np.random.seed(1)
    X = 10 * np.random.randn(5, 4)
    y = np.array([0, 1, 2, 2, 1])
    return X, y


def softmax_problem(seed, N=7, D=5, C=4, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((D, C)), rng.standard_normal((N, D)), rng.integers(0, C, size=N)


@pytest.mark.softmax
@pytest.mark.parametrize("reg", [0.0, 0.1, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_naive_equals_vectorized(seed, reg):
    W, X, y = softmax_problem(seed)
    loss_n, dW_n = softmax_loss_naive(W, X, y, reg)
    loss_v, dW_v = softmax_loss_vectorized(W, X, y, reg)
    assert_close_report("loss", loss_v, loss_n, rtol=1e-10, atol=0)
    assert_close_report("dW", dW_v, dW_n, rtol=1e-10, atol=1e-13)


@pytest.mark.softmax
@pytest.mark.parametrize("loss_fn", [softmax_loss_naive, softmax_loss_vectorized])
@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_softmax_gradient_equals_finite_differences(loss_fn, reg):
    W, X, y = softmax_problem(3)
    _, dW = loss_fn(W, X, y, reg)
    num = eval_numerical_gradient(lambda w: loss_fn(w, X, y, reg)[0], W.copy(), verbose=False)
    assert rel_error(num, dW) < 1e-7, f"dW: rel_error {rel_error(num, dW):.3e}"


@pytest.mark.softmax
def test_softmax_initial_loss_is_log_C():
    """With tiny weights every class is equally likely: loss ~ log(C) (cs231n's sanity check: -log(0.1))."""
    rng = np.random.default_rng(0)
    W = 1e-5 * rng.standard_normal((3073, 10))
    X = rng.uniform(-128, 128, size=(500, 3073))
    y = rng.integers(0, 10, size=500)
    loss, _ = softmax_loss_vectorized(W, X, y, 0.0)
    assert abs(loss - np.log(10)) < 0.01, loss


@pytest.mark.softmax
@pytest.mark.parametrize("dtype,last_finite,first_inf", [(np.float64, 745.13, 745.14), (np.float32, 103.97, 103.98)])
def test_reference_loss_overflows_where_its_docstring_says(dtype, last_finite, first_inf):
    """The article's -log(softmax[y]) on scores (gap, 0) with the true class at 0: finite up to the gap where
    exp(-gap) falls below half the smallest subnormal (-ln of it plus ln 2), inf beyond; the gradient stays finite.
    The torch side's log-sum-exp form stays finite (tests/test_equivalence.py)."""
    W = np.array([[1.0, 0.0]], dtype=dtype)
    smallest = float(np.finfo(dtype).smallest_subnormal)
    assert abs(-np.log(smallest) + np.log(2) - last_finite) < 0.01  # the docstring's figure, derived
    with np.errstate(divide="ignore"):
        loss_ok, _ = softmax_loss_vectorized(W, np.array([[last_finite]], dtype=dtype), np.array([1]), 0.0)
        loss_inf, dW = softmax_loss_vectorized(W, np.array([[first_inf]], dtype=dtype), np.array([1]), 0.0)
    assert np.isfinite(loss_ok) and np.isinf(loss_inf)
    assert np.all(np.isfinite(dW))
    gap = 80.0 if dtype == np.float32 else 700.0  # below -ln of the smallest normal: exact to rounding
    loss, _ = softmax_loss_vectorized(W, np.array([[gap]], dtype=dtype), np.array([1]), 0.0)
    assert abs(loss - gap) / gap < 10 * np.finfo(dtype).eps


@pytest.mark.two_layer
def test_toy_model_scores_and_loss_match_cs231n():
    net = toy_model()
    X, y = toy_data()
    scores = net.loss(X)
    assert np.sum(np.abs(scores - CS231N_SCORES)) < 1e-7
    loss, _ = net.loss(X, y, reg=0.05)
    assert abs(loss - CS231N_LOSS) < 1e-10, loss


@pytest.mark.two_layer
@pytest.mark.parametrize("reg", [0.0, 0.05])
def test_two_layer_gradients_equal_finite_differences(reg):
    net = toy_model()
    X, y = toy_data()
    _, grads = net.loss(X, y, reg=reg)
    for name in ("W1", "b1", "W2", "b2"):
        num = eval_numerical_gradient(lambda _: net.loss(X, y, reg=reg)[0], net.params[name], verbose=False)
        err = rel_error(num, grads[name])
        assert err < 1e-7, f"{name}: rel_error {err:.3e}"


@pytest.mark.two_layer
def test_toy_model_trains_below_0_02():
    net = toy_model()
    X, y = toy_data()
    stats = net.train(X, y, X, y, learning_rate=1e-1, reg=5e-6, num_iters=100, verbose=False)
    assert stats["loss_history"][-1] < 0.02, stats["loss_history"][-1]
    # 5 rows, batch 200: an "epoch" is max(5 / 200, 1) = 1 iteration, so accuracy is recorded every iteration.
    assert len(stats["train_acc_history"]) == 100 and len(stats["val_acc_history"]) == 100


@pytest.mark.two_layer
def test_train_records_and_decays_per_float_epoch():
    """cs231n's epoch length is the float num_train / batch_size; `it % 2.5 == 0` holds at it = 0, 5, 10."""
    np.random.seed(0)
    net = TwoLayerNet(3, 4, 2, std=1e-2)
    X = np.random.randn(10, 3)
    y = np.array([0, 1] * 5)
    stats = net.train(X, y, X, y, num_iters=12, batch_size=4, learning_rate=1e-2)
    assert len(stats["val_acc_history"]) == 3


@pytest.mark.two_layer
def test_sample_indices_hook_drives_the_batches():
    """Two nets driven by the same index source end equal; the default path still uses np.random.choice."""
    X, y = toy_data()
    order = [np.array([0, 1, 1, 4]), np.array([2, 3, 3, 0]), np.array([4, 4, 1, 2])]
    nets = [toy_model(), toy_model()]
    np.random.seed(123)
    nets[0].train(X, y, X, y, num_iters=3, batch_size=4, sample_indices=lambda it: order[it])
    np.random.seed(456)
    nets[1].train(X, y, X, y, num_iters=3, batch_size=4, sample_indices=lambda it: order[it])
    for name in nets[0].params:
        assert_close_report(name, nets[1].params[name], nets[0].params[name], rtol=0, atol=0)

    # Default sampling: the same as cs231n's loop with np.random.choice under the same seed.
    a, b = toy_model(), toy_model()
    np.random.seed(7)
    a.train(X, y, X, y, num_iters=3, batch_size=4)
    np.random.seed(7)
    manual = [np.random.choice(5, 4) for _ in range(3)]
    b.train(X, y, X, y, num_iters=3, batch_size=4, sample_indices=lambda it: manual[it])
    for name in a.params:
        assert_close_report(name, a.params[name], b.params[name], rtol=0, atol=0)


@pytest.mark.two_layer
def test_predict_returns_class_indices():
    net = toy_model()
    X, _ = toy_data()
    pred = net.predict(X)
    assert pred.shape == (5,)
    assert np.array_equal(pred, np.argmax(CS231N_SCORES, axis=1))


@pytest.mark.softmax
def test_softmax_classifier_learns_separable_data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 5)) * 5
    y = rng.integers(0, 3, size=300)
    X = centers[y] + rng.standard_normal((300, 5))
    np.random.seed(0)
    clf = Softmax()
    history = clf.train(X, y, learning_rate=1e-2, reg=1e-4, num_iters=300, batch_size=50)
    assert len(history) == 300 and history[-1] < history[0]
    assert (clf.predict(X) == y).mean() > 0.95
    with pytest.raises(NotImplementedError):
        LinearClassifier().train(X, y, num_iters=1)


@pytest.mark.softmax
def test_a_diverging_grid_cell_records_inf_and_goes_on():
    """cs231n's softmax grid at lr 3e-5: reg 5e4 gives the factor 1 - 2 lr reg = -2 (diverges), reg 2.5e4 -0.5."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((100, 20)), rng.integers(0, 5, size=100)
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stable cell warns about nothing
        stable = Softmax().train(X, y, learning_rate=3e-5, reg=2.5e4, num_iters=60, batch_size=20)
    np.random.seed(0)
    with pytest.warns(DivergenceWarning) as record:
        diverged = Softmax().train(X, y, learning_rate=3e-5, reg=5e4, num_iters=60, batch_size=20)
    assert np.all(np.isfinite(stable))
    assert len(diverged) == 60 and not np.isfinite(diverged[-1])  # recorded, not raised
    assert len(record) == 1, [str(w.message) for w in record]
    message = str(record[0].message)
    assert message.startswith("Softmax.train: loss ") and "1 - 2*learning_rate*reg = -2" in message, message
    assert "lower learning_rate or reg" in message, message


@pytest.mark.two_layer
def test_two_layer_train_records_nan_and_goes_on():
    net = toy_model()
    X, y = toy_data()
    with pytest.warns(DivergenceWarning, match=r"^TwoLayerNet.train: .*; lower learning_rate$"):
        stats = net.train(X, y, X, y, learning_rate=1e3, reg=0.0, num_iters=20)
    assert len(stats["loss_history"]) == 20 and not np.isfinite(stats["loss_history"][-1])
    assert len(stats["val_acc_history"]) == 20  # accuracy still recorded, as cs231n does


@pytest.mark.two_layer
def test_from_npz_reads_the_sizes_and_leaves_the_global_rng_alone(tmp_path):
    toy_model().save_params(tmp_path / "toy.npz")
    np.random.seed(5)
    state = np.random.get_state()
    net = TwoLayerNet.from_npz(tmp_path / "toy.npz")
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    for name, p in toy_model().params.items():
        assert_close_report(name, net.params[name], p, rtol=0, atol=0)
    assert np.array_equal(net.predict(toy_data()[0]), np.argmax(CS231N_SCORES, axis=1))


def test_gradient_check_tools():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    num = eval_numerical_gradient(lambda v: np.sum(v ** 3), x.copy(), verbose=False)
    assert rel_error(num, 3 * x ** 2) < 1e-8
    df = np.array([[1.0, 2.0], [3.0, 4.0]])
    num_arr = eval_numerical_gradient_array(lambda v: v ** 2, x.copy(), df)
    assert rel_error(num_arr, 2 * x * df) < 1e-8
    errs = grad_check_sparse(lambda v: np.sum(v ** 3), x.copy(), 3 * x ** 2, num_checks=5)
    assert len(errs) == 5 and max(errs) < 1e-8
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert abs(rel_error(np.array([1.0]), np.array([3.0])) - 0.5) < 1e-15
    # a wrong analytic gradient is caught
    assert rel_error(num, 2 * x ** 2) > 0.1


def test_reference_numpy_imports_no_torch():
    """Import every reference module with torch and lightning blocked: importing either would raise."""
    code = (
        "import sys\n"
        "for name in ('torch', 'lightning', 'pytorch_lightning', 'torchvision'):\n"
        "    sys.modules[name] = None\n"
        "import reference_numpy, reference_numpy.softmax, reference_numpy.neural_net, "
        "reference_numpy.linear_classifier, reference_numpy.gradient_check\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
