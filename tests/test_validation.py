"""Bad inputs to the public functions of both implementations raise ValueError naming the argument.

Run: ``.venv/bin/python -m pytest tests/test_validation.py -q``. One table of bad inputs, each applied to the NumPy
reference and to the torch twin (same function names); each row says which argument the message must name.
"""
import math

import numpy as np
import pytest
import torch

import reference_numpy.neural_net as np_net
import reference_numpy.softmax as np_softmax
import torch_impl.neural_net as t_net
import torch_impl.softmax as t_softmax
from reference_numpy import validation as np_validation
from torch_impl import validation as t_validation

N, D, H, C = 5, 4, 3, 2


def good_inputs():
    """NumPy float64 X (N, D), y (N,), W (D, C), W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)."""
    rng = np.random.default_rng(0)
    return {"X": rng.standard_normal((N, D)), "y": np.array([0, 1, 1, 0, 1]), "W": rng.standard_normal((D, C)),
            "W1": rng.standard_normal((D, H)), "b1": np.zeros(H), "W2": rng.standard_normal((H, C)),
            "b2": np.zeros(C), "reg": 0.1}


def with_nan(a, value=np.nan):
    a = a.copy()
    a.flat[1] = value
    return a


# (case id, changes to good_inputs, the argument the message must name, a phrase it must contain)
BAD = [
    ("X 1-D", {"X": np.ones(D)}, "X", "2-D"),
    ("X 3-D", {"X": np.ones((N, D, 1))}, "X", "2-D"),
    ("X empty", {"X": np.ones((0, D)), "y": np.zeros(0, dtype=np.int64)}, "X", "empty"),
    ("X columns", {"X": np.ones((N, D + 1))}, "X", f"(N, {D})"),
    ("X NaN", {"X": with_nan(good_inputs()["X"])}, "X", "NaN"),
    ("X Inf", {"X": with_nan(good_inputs()["X"], np.inf)}, "X", "Inf"),
    ("y 2-D", {"y": np.zeros((N, 1), dtype=np.int64)}, "y", "1-D"),
    ("y float", {"y": np.zeros(N)}, "y", "integer"),
    ("y length", {"y": np.zeros(N - 1, dtype=np.int64)}, "y", f"expected {N}"),
    ("y negative", {"y": np.array([0, -1, 1, 0, 1])}, "y", "[0, "),
    ("y >= C", {"y": np.array([0, C, 1, 0, 1])}, "y", "[0, "),
    ("reg negative", {"reg": -0.1}, "reg", ">= 0"),
    ("reg NaN", {"reg": float("nan")}, "reg", "finite"),
]
BAD_SOFTMAX = BAD + [
    ("W 1-D", {"W": np.ones(D)}, "W", "2-D"),
    ("W rows", {"W": np.ones((D + 1, C))}, "X", f"(N, {D + 1})"),
]
BAD_TWO_LAYER = BAD + [
    ("W1 1-D", {"W1": np.ones(D)}, "W1", "2-D"),
    ("b1 length", {"b1": np.zeros(H + 1)}, "b1", f"({H},)"),
    ("W2 rows", {"W2": np.ones((H + 1, C))}, "W2", f"({H}, C)"),
    ("b2 length", {"b2": np.zeros(C + 1)}, "b2", f"({C},)"),
]
# Parameters holding NaN/Inf (what a diverged run leaves): torch raises, NumPy warns and computes on, as cs231n does
NONFINITE_PARAMS = [("W", -np.inf), ("W1", -np.inf), ("b1", np.nan), ("W2", np.inf), ("b2", np.nan)]


def to_torch(inputs, dtype=torch.float64):
    out = {}
    for k, v in inputs.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
            v = v.to(dtype) if v.is_floating_point() else v
        out[k] = v
    return out


def softmax_calls():
    return [("numpy naive", np_softmax.softmax_loss_naive, lambda a: a),
            ("numpy vectorized", np_softmax.softmax_loss_vectorized, lambda a: a),
            ("torch naive", t_softmax.softmax_loss_naive, to_torch),
            ("torch vectorized", t_softmax.softmax_loss_vectorized, to_torch)]


def assert_names(info, name, phrase):
    msg = str(info.value)
    assert msg.startswith(f"{name}:"), msg
    assert phrase in msg, msg
    assert "expected" in msg, msg


@pytest.mark.softmax
@pytest.mark.parametrize("case,changes,name,phrase", BAD_SOFTMAX, ids=[row[0] for row in BAD_SOFTMAX])
@pytest.mark.parametrize("impl", range(4), ids=[c[0] for c in softmax_calls()])
def test_softmax_bad_input(impl, case, changes, name, phrase):
    _, fn, convert = softmax_calls()[impl]
    a = convert({**good_inputs(), **changes})
    with pytest.raises(ValueError) as info:
        fn(a["W"], a["X"], a["y"], a["reg"])
    assert_names(info, name, phrase)


@pytest.mark.two_layer
@pytest.mark.parametrize("case,changes,name,phrase", BAD_TWO_LAYER, ids=[row[0] for row in BAD_TWO_LAYER])
@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_two_layer_bad_input(impl, case, changes, name, phrase):
    a = {**good_inputs(), **changes}
    fn = np_net.two_layer_loss
    if impl == "torch":
        a, fn = to_torch(a), t_net.two_layer_loss
    with pytest.raises(ValueError) as info:
        fn(a["X"], a["y"], a["W1"], a["b1"], a["W2"], a["b2"], a["reg"])
    assert_names(info, name, phrase)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy on the NaN, as in cs231n
@pytest.mark.parametrize("name,value", NONFINITE_PARAMS, ids=[f"{n} {v}" for n, v in NONFINITE_PARAMS])
def test_nonfinite_parameters_raise_in_torch_and_warn_in_numpy(name, value):
    a = {**good_inputs(), name: with_nan(good_inputs()[name], value)}
    np_fn, t_fn, args = np_net.two_layer_loss, t_net.two_layer_loss, ("X", "y", "W1", "b1", "W2", "b2", "reg")
    if name == "W":
        np_fn, t_fn = np_softmax.softmax_loss_vectorized, t_softmax.softmax_loss_vectorized
        args = ("W", "X", "y", "reg")
    with pytest.warns(np_validation.DivergenceWarning, match=f"^{name}: holds NaN/Inf.*lower learning_rate"):
        loss, _ = np_fn(*(a[k] for k in args))
    assert not np.isfinite(loss)
    t = to_torch(a)
    with pytest.raises(ValueError) as info:
        t_fn(*(t[k] for k in args))
    assert_names(info, name, "NaN")


@pytest.mark.two_layer
def test_good_inputs_pass_in_both():
    a = good_inputs()
    loss, _ = np_net.two_layer_loss(a["X"], a["y"], a["W1"], a["b1"], a["W2"], a["b2"], a["reg"])
    t = to_torch(a)
    loss_t, _ = t_net.two_layer_loss(t["X"], t["y"], t["W1"], t["b1"], t["W2"], t["b2"], t["reg"])
    assert np.isfinite(loss) and torch.isfinite(loss_t)
    assert np_net.TwoLayerNet(D, H, C).predict(a["X"]).shape == (N,)


@pytest.mark.two_layer
@pytest.mark.parametrize("name,given,expected", [
    ("X", {"X": torch.ones(N, D, dtype=torch.float32)}, "torch.float64"),
    ("b1", {"b1": torch.zeros(H, dtype=torch.float32)}, "torch.float64"),
    ("X", {"X": torch.ones(N, D, dtype=torch.int64)}, "floating"),
    ("y", {"y": torch.zeros(N, dtype=torch.bool)}, "integer"),
    ("X", {"X": torch.ones(N, D, dtype=torch.float64, device="meta")}, "on cpu"),
    ("X", {"X": [[1.0] * D] * N}, "tensor"),
])
def test_torch_dtype_and_device_mixing(name, given, expected):
    a = {**to_torch(good_inputs()), **given}
    with pytest.raises(ValueError) as info:
        t_net.two_layer_loss(a["X"], a["y"], a["W1"], a["b1"], a["W2"], a["b2"], a["reg"])
    assert_names(info, name, expected)


@pytest.mark.two_layer
def test_metadata_only_modes_skip_values_but_keep_shapes():
    a = to_torch({**good_inputs(), "X": with_nan(good_inputs()["X"]), "y": np.array([0, 9, 1, 0, 1])})
    args = (a["X"], a["y"], a["W1"], a["b1"], a["W2"], a["b2"], a["reg"])
    t_validation.check_two_layer_inputs(*args, values=False)  # NaN and a bad label: not looked at
    with t_validation.skip_value_checks():
        t_validation.check_two_layer_inputs(*args)
        with pytest.raises(ValueError, match="^X: .*2-D"):
            t_validation.check_two_layer_inputs(a["X"][0], *args[1:])
    with pytest.raises(ValueError, match="^X: .*NaN"):  # the context is restored on exit
        t_validation.check_two_layer_inputs(*args)


@pytest.mark.two_layer
@pytest.mark.parametrize("validation", [np_validation, t_validation], ids=["numpy", "torch"])
@pytest.mark.parametrize("name,kwargs", [
    ("input_size", {"input_size": 0}), ("hidden_size", {"hidden_size": -1}), ("output_size", {"output_size": 2.0}),
    ("hidden_size", {"hidden_size": True}), ("std", {"std": float("inf")}),
])
def test_net_sizes(validation, name, kwargs):
    sizes = {"input_size": D, "hidden_size": H, "output_size": C, "std": 1e-4, **kwargs}
    with pytest.raises(ValueError) as info:
        validation.check_net_sizes(**sizes)
    assert_names(info, name, repr(kwargs[name]))
    net_class = np_net.TwoLayerNet if validation is np_validation else t_net.TwoLayerNet
    with pytest.raises(ValueError, match=f"^{name}: "):
        net_class(**sizes)


@pytest.mark.two_layer
@pytest.mark.parametrize("name,changes", [
    ("learning_rate", {"learning_rate": 0.0}), ("learning_rate", {"learning_rate": -1e-3}),
    ("learning_rate_decay", {"learning_rate_decay": float("nan")}), ("reg", {"reg": -1.0}),
    ("num_iters", {"num_iters": -1}), ("batch_size", {"batch_size": 0}), ("batch_size", {"batch_size": 2.5}),
    ("X_val", {"X_val": np.ones((3, D + 1))}), ("y_val", {"y_val": np.array([0, 1])}),
    ("y", {"y": np.array([0, 1, 2, 0, 1])}), ("X", {"X": with_nan(good_inputs()["X"], np.inf)}),
])
def test_numpy_train_arguments(name, changes):
    a = good_inputs()
    kwargs = {"X": a["X"], "y": a["y"], "X_val": a["X"][:3], "y_val": a["y"][:3], "learning_rate": 1e-3,
              "learning_rate_decay": 0.95, "reg": 0.1, "num_iters": 2, "batch_size": 2, **changes}
    net = np_net.TwoLayerNet(D, H, C)
    with pytest.raises(ValueError, match=f"^{name}: .*expected"):
        net.train(**kwargs)


@pytest.mark.two_layer
def test_numpy_train_records_divergence_and_goes_on():
    a = good_inputs()
    net = np_net.TwoLayerNet(D, H, C, std=1.0)
    with pytest.warns(np_validation.DivergenceWarning, match=r"^TwoLayerNet.train: loss .* at iteration \d+") as rec:
        stats = net.train(a["X"] * 1e150, a["y"], a["X"], a["y"], learning_rate=1e300, num_iters=5, batch_size=N)
    assert len(rec) == 1  # one warning per run, not one per step
    assert len(stats["loss_history"]) == 5 and not np.isfinite(stats["loss_history"][-1])


@pytest.mark.parametrize("validation,convert", [(np_validation, lambda a: a), (t_validation, to_torch)],
                         ids=["numpy", "torch"])
@pytest.mark.parametrize("name,changes,phrase", [
    ("train X", {"X": np.ones((0, D)), "y": np.zeros(0, dtype=np.int64)}, "empty split"),
    ("train X", {"X": with_nan(good_inputs()["X"])}, "NaN"),
    ("train y", {"y": np.array([0, 1, 2, 0, 1])}, "[0, 2)"),
    ("train y", {"y": np.zeros(N)}, "integer"),
    ("train y", {"y": np.zeros(2, dtype=np.int64)}, "train X"),
])
def test_check_split(validation, convert, name, changes, phrase):
    a = convert({**good_inputs(), **changes})
    with pytest.raises(ValueError) as info:
        validation.check_split("train", a["X"], a["y"], C)
    assert_names(info, name, phrase)
    good = convert(good_inputs())
    validation.check_split("train", good["X"], good["y"], C)


@pytest.mark.parametrize("validation", [np_validation, t_validation], ids=["numpy", "torch"])
def test_scalar_helpers(validation):
    assert validation.check_positive_int("batch_size", 3) == 3
    assert validation.check_positive_float("learning_rate", 1e-3) == 1e-3
    for fn, value in [(validation.check_positive_int, 0), (validation.check_positive_int, 1.0),
                      (validation.check_positive_float, 0.0), (validation.check_positive_float, float("inf")),
                      (validation.check_positive_float, "1e-3"), (validation.check_nonnegative_int, -1)]:
        with pytest.raises(ValueError, match=f"^lr: got {value!r}; expected"):
            fn("lr", value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_cuda_device_mixing_and_scan():
    a = to_torch(good_inputs())
    with pytest.raises(ValueError, match="^X: .*expected torch.float64 on cuda"):
        t_net.two_layer_loss(a["X"], a["y"], *(a[k].cuda() for k in ("W1", "b1", "W2", "b2")), a["reg"])
    X = a["X"].cuda()
    with pytest.raises(ValueError, match="^y: .*expected device cuda"):
        t_net.two_layer_loss(X, a["y"], *(a[k].cuda() for k in ("W1", "b1", "W2", "b2")), a["reg"])
    with pytest.raises(ValueError, match="^X: .*NaN"):
        t_net.two_layer_loss(torch.where(X > 0, X, float("nan")), a["y"].cuda(),
                             *(a[k].cuda() for k in ("W1", "b1", "W2", "b2")), a["reg"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_cuda_metadata_checks_do_not_sync():
    a = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in to_torch(good_inputs()).items()}
    args = (a["X"], a["y"], a["W1"], a["b1"], a["W2"], a["b2"], a["reg"])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync raises
    try:
        t_validation.check_two_layer_inputs(*args, values=False)
        with t_validation.skip_value_checks():
            t_validation.check_two_layer_inputs(*args)
        with pytest.raises(RuntimeError, match="synchroniz"):  # the value scan does sync: the probe works
            t_validation.check_two_layer_inputs(*args)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_torch_finite_scan_is_exact_when_the_sum_overflows():
    big = torch.full((N, D), 3e38)  # float32: every entry finite, their sum is inf
    labels = torch.tensor([0, 1, 1, 0, 1])
    t_validation.check_split("train", big, labels, C)
    big[2, 3] = -math.inf
    with pytest.raises(ValueError, match=r"^train X: .* 0 NaN and 1 Inf entries \(first at index \(2, 3\)\)"):
        t_validation.check_split("train", big, labels, C)
    t_validation.check_split("val", torch.full((N, D), 3e38), labels, C)
    with pytest.raises(ValueError, match=r"^val y: got labels in \[0, 7\]"):
        t_validation.check_split("val", torch.full((N, D), 3e38), torch.tensor([0, 7, 1, 0, 1]), C)
