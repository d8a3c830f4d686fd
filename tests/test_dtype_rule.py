"""The torch side's one dtype rule (torch_impl/neural_net.py's docstring): the net's methods take X as a tensor or
NumPy array of any real dtype, converted to the net's dtype and device; labels of any integer dtype become int64;
a new net is float32, a copy keeps its source's dtype. Run: python -m pytest tests/test_dtype_rule.py -q
"""
import numpy as np
import pytest
import torch

from tests.helpers import DEVICES, FLOAT32_TOL, FLOAT64_TOL, assert_close_report
from torch_impl.linear_classifier import Softmax as TorchSoftmax
from torch_impl.neural_net import TwoLayerLoss, TwoLayerNet, two_layer_loss
from torch_impl.softmax import SoftmaxLoss, softmax_loss_naive, softmax_loss_vectorized

N, D, H, C = 6, 4, 5, 3

X_FORMS = {  # how a student may hold X (N, D): each a converter from the float64 array
    "numpy float64": np.asarray,
    "numpy float32": lambda a: a.astype(np.float32),
    "numpy int64": lambda a: np.round(a).astype(np.int64),
    "tensor float64": torch.from_numpy,
    "tensor float32": lambda a: torch.from_numpy(a).float(),
    "tensor bfloat16": lambda a: torch.from_numpy(a).bfloat16(),
}
LABEL_FORMS = {
    "numpy int32": lambda y: y.astype(np.int32),
    "numpy uint8": lambda y: y.astype(np.uint8),
    "tensor int8": lambda y: torch.from_numpy(y).to(torch.int8),
    "tensor int16": lambda y: torch.from_numpy(y).to(torch.int16),
    "tensor int32": lambda y: torch.from_numpy(y).int(),
    "tensor uint8": lambda y: torch.from_numpy(y).to(torch.uint8),
}


def problem(seed=0):
    """X (N, D) float64 NumPy, y (N,) int64 NumPy, and a float64 NumPy params dict."""
    rng = np.random.default_rng(seed)
    params = {"W1": rng.standard_normal((D, H)), "b1": rng.standard_normal(H), "W2": rng.standard_normal((H, C)),
              "b2": rng.standard_normal(C)}
    return 3 * rng.standard_normal((N, D)), rng.integers(0, C, size=N), params


def tolerance(dtype):
    return FLOAT64_TOL if dtype == torch.float64 else FLOAT32_TOL


@pytest.mark.two_layer
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net_dtype", [torch.float32, torch.float64], ids=["net float32", "net float64"])
@pytest.mark.parametrize("form", X_FORMS)
def test_methods_convert_X_to_the_nets_dtype_and_device(form, net_dtype, device):
    X, y, params = problem()
    X_given = X_FORMS[form](X)
    X_ref = torch.as_tensor(X_given).double().to(net_dtype).to(device)  # the same values, converted by hand
    net = TwoLayerNet.from_numpy(params, dtype=net_dtype, device=device)
    scores = net(X_given)
    assert scores.dtype == net_dtype and scores.device.type == device
    assert_close_report("forward", scores, net(X_ref), **tolerance(net_dtype))
    assert_close_report("loss scores", net.loss(X_given), net.loss(X_ref), **tolerance(net_dtype))
    loss, grads = net.loss(X_given, y, reg=0.1)
    loss_ref, grads_ref = net.loss(X_ref, torch.from_numpy(y).to(device), reg=0.1)
    assert_close_report("loss", loss, loss_ref, **tolerance(net_dtype))
    for name in grads_ref:
        assert grads[name].dtype == net_dtype
        assert_close_report(name, grads[name], grads_ref[name], **tolerance(net_dtype))
    predicted = net.predict(X_given)
    assert predicted.dtype == torch.int64 and predicted.device.type == device
    assert torch.equal(predicted, net.predict(X_ref))


@pytest.mark.softmax
@pytest.mark.two_layer
@pytest.mark.parametrize("form", LABEL_FORMS)
def test_any_integer_label_dtype_gives_the_int64_result(form):
    X, y, params = problem(1)
    net = TwoLayerNet.from_numpy(params)
    Xt, yt, W = torch.from_numpy(X), torch.from_numpy(y), net.W1.detach()[:, :C].clone()
    y_given = LABEL_FORMS[form](y)
    y_tensor = torch.as_tensor(y_given)

    loss, grads = net.loss(X, y_given, reg=0.1)  # the method: NumPy or tensor labels
    loss_ref, grads_ref = net.loss(Xt, yt, reg=0.1)
    assert_close_report("net.loss", loss, loss_ref, **FLOAT64_TOL)
    for name in grads_ref:
        assert_close_report(name, grads[name], grads_ref[name], **FLOAT64_TOL)
    assert_close_report("two_layer_loss", two_layer_loss(Xt, y_tensor, *net.params.values(), 0.1)[0], loss_ref,
                        **FLOAT64_TOL)

    net.zero_grad()
    TwoLayerLoss.apply(Xt, y_tensor, *net.params.values(), 0.1).backward()  # crashed inside nll_loss on int32
    for name, p in net.params.items():
        assert_close_report(f"TwoLayerLoss {name}.grad", p.grad, grads_ref[name], **FLOAT64_TOL)

    for fn in (softmax_loss_naive, softmax_loss_vectorized):
        got, want = fn(W, Xt, y_tensor, 0.1), fn(W, Xt, yt, 0.1)
        assert_close_report(f"{fn.__name__} loss", got[0], want[0], **FLOAT64_TOL)
        assert_close_report(f"{fn.__name__} dW", got[1], want[1], **FLOAT64_TOL)
    W.requires_grad_(True)
    SoftmaxLoss.apply(W, Xt, y_tensor, 0.1).backward()
    assert_close_report("SoftmaxLoss W.grad", W.grad, softmax_loss_vectorized(W.detach(), Xt, yt, 0.1)[1],
                        **FLOAT64_TOL)

    clf = TorchSoftmax(dtype=torch.float64)
    clf.W = W.detach().clone()
    assert_close_report("Softmax.loss", clf.loss(X, y_given, 0.1)[0],
                        softmax_loss_vectorized(clf.W, Xt, yt, 0.1)[0], **FLOAT64_TOL)


@pytest.mark.two_layer
def test_dtype_of_new_nets_and_of_copies():
    _, _, params = problem()
    assert TwoLayerNet(D, H, C).W1.dtype == torch.get_default_dtype() == torch.float32  # like nn.Linear
    assert TwoLayerNet(D, H, C, dtype=torch.float64).W1.dtype == torch.float64
    assert TwoLayerNet.from_numpy(params).W1.dtype == torch.float64  # a copy keeps its source's dtype
    as32 = {name: p.astype(np.float32) for name, p in params.items()}
    assert TwoLayerNet.from_numpy(as32).W1.dtype == torch.float32
    assert TwoLayerNet.from_numpy(params, dtype=torch.float32).W1.dtype == torch.float32


@pytest.mark.two_layer
@pytest.mark.parametrize("changes,phrase", [
    ({"W1": np.zeros((D, H), dtype=np.int64)}, "params: W1 holds torch.int64; expected floating point"),
    ({"b1": np.zeros(H + 1)}, f"b1: got shape ({H + 1},)"),
    ({"W2": np.zeros((H + 1, C))}, "W2: got shape"),
])
def test_from_numpy_names_a_bad_params_dict_in_one_line(changes, phrase):
    _, _, params = problem()
    with pytest.raises(ValueError) as info:
        TwoLayerNet.from_numpy({**params, **changes})
    assert str(info.value).startswith(phrase) and "\n" not in str(info.value), str(info.value)
    mixed = {**params, "b1": params["b1"].astype(np.float32)}  # W1's dtype decides
    assert all(p.dtype == torch.float64 for p in TwoLayerNet.from_numpy(mixed).parameters())


@pytest.mark.two_layer
def test_from_numpy_and_from_npz_leave_torchs_rng_alone(tmp_path):
    _, _, params = problem()
    TwoLayerNet.from_numpy(params).save_npz(tmp_path / "net.npz")
    torch.manual_seed(3)
    state = torch.get_rng_state()
    net = TwoLayerNet.from_numpy(params)
    again = TwoLayerNet.from_npz(tmp_path / "net.npz")
    assert torch.equal(torch.get_rng_state(), state)
    assert again.W1.dtype == torch.float64
    for name, p in net.params.items():
        assert_close_report(name, p, params[name], rtol=0, atol=0)
        assert_close_report(f"npz {name}", again.params[name], params[name], rtol=0, atol=0)


@pytest.mark.two_layer
def test_repr_shows_shapes_dtype_and_device():
    assert repr(TwoLayerNet(4, 10, 3)) == "TwoLayerNet(W1 (4, 10), b1 (10,), W2 (10, 3), b2 (3,), torch.float32, cpu)"
    assert "torch.float64" in repr(TwoLayerNet(4, 10, 3, dtype=torch.float64))


@pytest.mark.two_layer
@pytest.mark.parametrize("call,name,phrase", [
    (lambda net: net.predict([[1.0] * D] * N), "X", "tensor"),
    (lambda net: net.predict(np.ones((N, D + 1))), "X", f"(N, {D})"),
    (lambda net: net.predict(np.ones((N, D), dtype=bool)), "X", "floating"),
    (lambda net: net.predict(np.array([["a"] * D] * N)), "X", "tensor"),
    (lambda net: net.loss(np.ones((N, D)), np.zeros(N)), "y", "integer"),
    (lambda net: net.loss(np.ones((N, D)), np.zeros(N, dtype=bool)), "y", "integer"),
    (lambda net: net.loss(np.ones((N, D)), np.full(N, C)), "y", f"[0, {C})"),
    (lambda net: net.loss(np.full((N, D), np.nan), np.zeros(N, dtype=np.int32)), "X", "NaN"),
])
def test_bad_input_to_the_methods_is_named_in_one_line(call, name, phrase):
    net = TwoLayerNet(D, H, C)
    with pytest.raises(ValueError) as info:
        call(net)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and phrase in message and "\n" not in message, message
