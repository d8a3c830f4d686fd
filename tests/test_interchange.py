"""Weights move between the NumPy reference and torch through one .npz format (float64 W1, b1, W2, b2 in the
reference's params layout) and keep their predictions. Run: python -m pytest tests/test_interchange.py -q

NumPy-trained -> torch: TwoLayerNet.save_params / torch TwoLayerNet.from_npz. Lightning checkpoint -> NumPy:
``python -m train export --ckpt_path CKPT --out net.npz`` / TwoLayerNet.load_params.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reference_numpy.neural_net import TwoLayerNet as NumpyNet
from tests.helpers import DEVICES, FLOAT32_TOL, assert_close_report
from torch_impl.neural_net import PARAM_NAMES
from torch_impl.neural_net import TwoLayerNet as TorchNet
from train.export_cmd import export_checkpoint
from train.export_cmd import main as export_main

ROOT = Path(__file__).resolve().parent.parent
SCORE_TOL = {"rtol": 1e-12, "atol": 1e-12}  # float64, the same products summed in another order

pytestmark = [pytest.mark.two_layer, pytest.mark.equivalence]


def blobs(n=300, d=8, c=4, seed=0):
    """X: (n, d) float64 Gaussian blobs around c random centres, y: (n,) int64 labels; learnable in a few steps."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((c, d))
    y = rng.integers(0, c, size=n)
    return centres[y] + rng.standard_normal((n, d)), y


@pytest.fixture(scope="module")
def numpy_net():
    """A NumPy TwoLayerNet trained for 60 iterations (std 0.1 so predictions are not all one class)."""
    X, y = blobs()
    np.random.seed(0)
    net = NumpyNet(X.shape[1], 16, 4, std=0.1)
    stats = net.train(X[:250], y[:250], X[250:], y[250:], learning_rate=0.05, reg=1e-3, num_iters=60,
                      batch_size=50)
    assert stats["loss_history"][-1] < stats["loss_history"][0]
    assert (net.predict(X) == y).mean() > 0.5, "training did not learn; the comparison would be too easy"
    return net, X


def test_numpy_trained_weights_give_the_same_scores_in_torch(numpy_net, tmp_path):
    net, X = numpy_net
    net.save_params(tmp_path / "net.npz")
    tnet = TorchNet.from_npz(tmp_path / "net.npz")  # float64, CPU
    for name in PARAM_NAMES:
        assert tnet.params[name].dtype == torch.float64
        np.testing.assert_array_equal(tnet.params[name].detach().numpy(), net.params[name], err_msg=name)
    scores = tnet.loss(torch.from_numpy(X))  # (N, C)
    assert_close_report("scores", scores, net.loss(X), **SCORE_TOL)
    assert len(np.unique(net.predict(X))) > 1
    np.testing.assert_array_equal(tnet.predict(torch.from_numpy(X)).numpy(), net.predict(X))


def test_round_trip_numpy_torch_numpy_is_exact(numpy_net, tmp_path):
    net, X = numpy_net
    net.save_params(tmp_path / "a.npz")
    TorchNet.from_npz(tmp_path / "a.npz").save_npz(tmp_path / "b.npz")
    back = NumpyNet(1, 1, 1).load_params(tmp_path / "b.npz")  # the sizes come from the file
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(back.params[name], net.params[name], err_msg=name)
    np.testing.assert_array_equal(back.loss(X), net.loss(X))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


@pytest.mark.parametrize("device", DEVICES)
def test_from_npz_in_float32_on_a_device(numpy_net, tmp_path, device):
    net, X = numpy_net
    net.save_params(tmp_path / "net.npz")
    tnet = TorchNet.from_npz(tmp_path / "net.npz", dtype=torch.float32, device=device)
    assert tnet.W1.dtype == torch.float32 and tnet.W1.device.type == device
    scores = tnet.loss(torch.as_tensor(X, dtype=torch.float32, device=device))
    assert_close_report("scores (float32)", scores, net.loss(X), rtol=1e-5, atol=FLOAT32_TOL["atol"] * 10)


def fake_checkpoint(path, params, **extra):
    """A dict shaped like a Lightning checkpoint of TwoLayerNetModule (state_dict keys net.W1 ... net.b2)."""
    state = {f"net.{name}": torch.as_tensor(p) for name, p in params.items()}
    torch.save({"epoch": 3, "global_step": 42, "pytorch-lightning_version": "2.6.6", "state_dict": state,
                "hyper_parameters": {"input_size": 8, "num_classes": 4}, **extra}, path)
    return path


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_export_of_a_checkpoint_loads_in_numpy_with_the_same_predictions(numpy_net, tmp_path, dtype, capsys):
    net, X = numpy_net
    tnet = TorchNet.from_numpy(net.params, dtype=dtype)
    ckpt = fake_checkpoint(tmp_path / "last.ckpt", {n: p.detach() for n, p in tnet.params.items()})
    assert export_main(["--ckpt_path", str(ckpt), "--out", str(tmp_path / "net.npz")]) == 0
    assert "W1 (8, 16)" in capsys.readouterr().out
    back = NumpyNet(1, 1, 1).load_params(tmp_path / "net.npz")
    with np.load(tmp_path / "net.npz") as f:
        assert sorted(f.files) == sorted(PARAM_NAMES) and all(f[n].dtype == np.float64 for n in PARAM_NAMES)
    for name in PARAM_NAMES:  # float32 -> float64 is exact
        np.testing.assert_array_equal(back.params[name], tnet.params[name].detach().double().numpy(), err_msg=name)
    Xt = torch.as_tensor(X, dtype=dtype)
    np.testing.assert_array_equal(back.predict(X.astype(np.float32).astype(np.float64) if dtype == torch.float32
                                               else X), tnet.predict(Xt).numpy())


def test_export_errors_name_the_argument(numpy_net, tmp_path, capsys):
    net, _ = numpy_net
    good = fake_checkpoint(tmp_path / "good.ckpt", net.params)
    out = tmp_path / "net.npz"
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save({"epoch": 0}, tmp_path / "no_state.ckpt")
    other = {"net.W1": torch.zeros(8, 16), "net.b1": torch.zeros(16), "fc.weight": torch.zeros(4, 16)}
    torch.save({"state_dict": other}, tmp_path / "other_model.ckpt")
    bad_shapes = {"W1": np.zeros((8, 16)), "b1": np.zeros(5), "W2": np.zeros((16, 4)), "b2": np.zeros(4)}
    fake_checkpoint(tmp_path / "bad_shapes.ckpt", bad_shapes)
    cases = [
        (tmp_path / "missing.ckpt", out, "--ckpt_path", "no such file"),
        (None, out, "--ckpt_path", "missing"),
        (tmp_path / "notes.txt", out, "--ckpt_path", "not a readable PyTorch checkpoint"),
        (tmp_path / "no_state.ckpt", out, "--ckpt_path", "has no 'state_dict'"),
        (tmp_path / "other_model.ckpt", out, "--ckpt_path", "state_dict lacks ['net.W2', 'net.b2']"),
        (tmp_path / "bad_shapes.ckpt", out, "--ckpt_path", "inconsistent shapes"),
        (good, None, "--out", "missing"),
        (good, tmp_path / "no_such_dir" / "net.npz", "--out", "folder does not exist"),
        (good, tmp_path, "--out", "is a directory"),
    ]
    for ckpt, dest, argument, message in cases:
        with pytest.raises(ValueError, match=argument) as err:
            export_checkpoint(ckpt, dest)
        assert message in str(err.value), str(err.value)
        argv = [*(["--ckpt_path", str(ckpt)] if ckpt else []), *(["--out", str(dest)] if dest else [])]
        capsys.readouterr()
        assert export_main(argv) == 2
        assert argument in capsys.readouterr().err
    assert not out.exists(), "a failed export must not write --out"


def test_load_params_rejects_files_that_are_not_this_net(tmp_path):
    np.savez(tmp_path / "few.npz", W1=np.zeros((2, 3)))
    np.savez(tmp_path / "shapes.npz", W1=np.zeros((2, 3)), b1=np.zeros(3), W2=np.zeros((4, 2)), b2=np.zeros(2))
    np.savez(tmp_path / "ints.npz", W1=np.zeros((2, 3), int), b1=np.zeros(3), W2=np.zeros((3, 2)), b2=np.zeros(2))
    for name, message in [("nothing.npz", "no such file"), ("few.npz", "holds ['W1']"),
                          ("shapes.npz", "has shapes"), ("ints.npz", "expected floating point")]:
        with pytest.raises(ValueError, match="path: .*" + re.escape(message)):
            NumpyNet(1, 1, 1).load_params(tmp_path / name)
        with pytest.raises(ValueError, match="path: .*" + re.escape(message)):
            TorchNet.from_npz(tmp_path / name)


@pytest.mark.lightning
def test_module_checkpoint_keys_are_what_export_reads(numpy_net, tmp_path):
    """The real TwoLayerNetModule's state_dict, saved as Lightning does, exports to the same weights."""
    from train.module import TwoLayerNetModule

    module = TwoLayerNetModule(input_size=8, num_classes=4, hidden_size=16, init_seed=3)
    assert sorted(module.state_dict()) == sorted(f"net.{n}" for n in PARAM_NAMES)
    torch.save({"state_dict": module.state_dict()}, tmp_path / "m.ckpt")
    params = export_checkpoint(tmp_path / "m.ckpt", tmp_path / "m.npz")
    _, X = numpy_net
    back = NumpyNet(1, 1, 1).load_params(tmp_path / "m.npz")
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(params[name], back.params[name])
        np.testing.assert_array_equal(back.params[name], getattr(module.net, name).detach().double().numpy())
    assert back.params["W1"].shape == (8, 16)


def run(args, cwd):
    """Run ``python -m train ARGS`` in cwd; fail with its output when it exits non-zero."""
    proc = subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"python -m train {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.lightning
@pytest.mark.slow
def test_cli_fit_then_export_gives_numpy_the_lightning_predictions(tmp_path):
    """python -m train fit (a few steps on the digits) -> export -> NumPy predictions == torch predictions."""
    from train.data import DigitsDataModule

    smoke = ROOT / "configs" / "smoke.yaml"
    config = ["--config", str(smoke)] if smoke.is_file() else []
    run(["fit", *config, "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
         "--plots.enabled", "false"], cwd=tmp_path)
    ckpts = sorted(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1, list(tmp_path.rglob("*.ckpt"))
    run(["export", "--ckpt_path", str(ckpts[0]), "--out", str(tmp_path / "net.npz")], cwd=tmp_path)

    splits = DigitsDataModule().load()
    X_val = splits.X_val.double()  # (n, 64) preprocessed as in training
    numpy_net = NumpyNet(1, 1, 1).load_params(tmp_path / "net.npz")
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)["state_dict"]
    torch_net = TorchNet.from_numpy({n: state[f"net.{n}"].numpy() for n in PARAM_NAMES}, dtype=state["net.W1"].dtype)
    torch_pred = torch_net.predict(splits.X_val.to(state["net.W1"].dtype)).numpy()
    numpy_pred = numpy_net.predict(X_val.numpy())
    assert len(np.unique(numpy_pred)) > 1
    mismatch = np.flatnonzero(numpy_pred != torch_pred)
    assert mismatch.size == 0, f"{mismatch.size} of {numpy_pred.size} predictions differ, first at {mismatch[:5]}"
    # and the round trip back through torch keeps them
    TorchNet.from_npz(tmp_path / "net.npz").save_npz(tmp_path / "back.npz")
    np.testing.assert_array_equal(NumpyNet(1, 1, 1).load_params(tmp_path / "back.npz").predict(X_val.numpy()),
                                  numpy_pred)
