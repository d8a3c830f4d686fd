"""The ladders of docs/ladder/ (shown in docs/bridge.md), each rung a complete program.

- The two-layer net, rungs 1-7: the same net on the same batches from the same start, so every rung's loss history
  equals rung 1's (NumPy, float64) to rounding. The one variant allowed to differ is rung 5's weight_decay on every
  parameter (it decays the biases, which the article never does), and the test shows that it does.
- The softmax classifier, softmax1-4: every rung's loss history equals softmax1's (NumPy, float64) to rounding.
- On real data, rungs 8 (the digits) and 9 (an ImageFolder tree): a plain PyTorch program that trains what
  ``python -m train fit`` trains, to the same weights (float64) and the same printed accuracy (float32).

Run: python -m pytest tests/test_ladder.py -q
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import FLOAT64_TOL, assert_close_report

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parent.parent
LADDER = ROOT / "docs" / "ladder"
RUNGS = sorted(LADDER.glob("rung[1-7]_*.py"))  # the two-layer net on its toy problem
SOFTMAX_RUNGS = sorted(LADDER.glob("softmax*.py"))
LIGHTNING_RUNGS = {"rung6_lightning.py", "rung7_manual.py"}


def load(path):
    """The rung file at ``path`` as a module (not run as a program)."""
    spec = importlib.util.spec_from_file_location(f"ladder_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rung_params():
    return [pytest.param(path, id=path.stem, marks=[pytest.mark.lightning] if path.name in LIGHTNING_RUNGS else [])
            for path in RUNGS[1:]]


@pytest.fixture(scope="module")
def rung1():
    """Rung 1 and its loss history on its own problem."""
    module = load(RUNGS[0])
    problem = module.make_problem()
    return module, problem, module.train(*problem, module.learning_rate, module.reg)


def test_the_ladders_have_their_rungs():
    assert [path.name for path in RUNGS] == ["rung1_numpy.py", "rung2_tensors.py", "rung3_autograd.py",
                                             "rung4_function.py", "rung5_nn.py", "rung6_lightning.py",
                                             "rung7_manual.py"]
    assert [path.name for path in SOFTMAX_RUNGS] == ["softmax1_numpy.py", "softmax2_tensors.py",
                                                     "softmax3_autograd.py", "softmax4_nn.py"]
    assert sorted(path.name for path in LADDER.glob("*.py")) == sorted(
        [path.name for path in RUNGS + SOFTMAX_RUNGS] + ["rung8_dataloader.py", "rung9_imagefolder.py"])


@pytest.mark.parametrize("path", rung_params())
def test_every_rung_gives_rung_1s_loss_history(rung1, path):
    first, problem, want = rung1
    rung = load(path)
    for name in ("N", "D", "H", "C", "learning_rate", "reg", "num_iters", "batch_size"):  # the same names
        assert getattr(rung, name) == getattr(first, name), name
    X, y, params, batches = rung.make_problem()  # the same problem
    for name, a, b in [("X", X, problem[0]), ("y", y, problem[1]), ("batches", batches, problem[3]),
                       *((name, params[name], problem[2][name]) for name in problem[2])]:
        assert_close_report(f"{path.stem} {name}", a, b, rtol=0, atol=0)
    got = rung.train(*problem, rung.learning_rate, rung.reg)
    assert len(got) == first.num_iters
    assert_close_report(f"{path.stem} loss_history", got, want, **FLOAT64_TOL)
    assert want[-1] < 0.5 * want[0]  # it trains: the comparison is not between two flat lines


def test_weight_decay_equals_reg_in_the_loss_only_with_parameter_groups(rung1):
    _, problem, want = rung1
    rung5 = load(LADDER / "rung5_nn.py")
    groups = rung5.train(*problem, rung5.learning_rate, rung5.reg, decay="weight_decay, weights only")
    assert_close_report("weight_decay on the weights", groups, want, **FLOAT64_TOL)
    everything = rung5.train(*problem, rung5.learning_rate, rung5.reg, decay="weight_decay, everything")
    assert max(abs(a - b) for a, b in zip(everything, want)) > 1e-4  # decaying the biases changes the run


@pytest.mark.parametrize("path", SOFTMAX_RUNGS[1:], ids=[path.stem for path in SOFTMAX_RUNGS[1:]])
def test_every_softmax_rung_gives_softmax_1s_loss_history(path):
    first, rung = load(SOFTMAX_RUNGS[0]), load(path)
    for name in ("N", "D", "C", "learning_rate", "reg", "num_iters", "batch_size"):  # the same names
        assert getattr(rung, name) == getattr(first, name), name
    problem = first.make_problem()
    for name, a, b in zip(("X", "y", "W", "batches"), rung.make_problem(), problem):  # the same problem
        assert_close_report(f"{path.stem} {name}", a, b, rtol=0, atol=0)
    want = first.train(*problem, first.learning_rate, first.reg)
    got = rung.train(*problem, rung.learning_rate, rung.reg)
    assert len(got) == first.num_iters
    assert_close_report(f"{path.stem} loss_history", got, want, **FLOAT64_TOL)
    assert want[-1] < 0.5 * want[0]  # it trains


PRINTS = {"rung4_function.py": "gradcheck (backward vs finite differences): True",
          "rung5_nn.py": "our W1: (10, 20), nn.Linear's fc1.weight: (20, 10)",
          "rung8_dataloader.py": "final val/acc = 0.9800 after 175 steps (25 epochs)",
          "rung9_imagefolder.py": "final val/acc = ",
          **{path.name: "loss every 5 steps: 1.110870 0.472949" for path in SOFTMAX_RUNGS}}
PROGRAMS = sorted(LADDER.glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", PROGRAMS, ids=[path.stem for path in PROGRAMS])
def test_every_rung_runs_as_a_program(path, tmp_path, image_tree):
    args = {"rung8_dataloader.py": [str(tmp_path)], "rung9_imagefolder.py": [str(image_tree), str(tmp_path)]}
    run = subprocess.run([sys.executable, str(path), *args.get(path.name, [])], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 0, run.stderr[-2000:]
    assert PRINTS.get(path.name, "loss every 5 steps: 1.118048 0.961549") in run.stdout, run.stdout
    if path.name in args:
        assert (tmp_path / "two_layer_net.pt").is_file()


@pytest.mark.lightning
def test_rung_7_needs_manual_optimization(rung1):
    """The line bridge.md points at: without automatic_optimization = False, manual_backward raises."""
    import lightning as L
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    _, (X, y, params, batches), _ = rung1
    rung7 = load(LADDER / "rung7_manual.py")
    module = rung7.TwoLayerNetModule(params, rung7.learning_rate, rung7.reg)
    module.automatic_optimization = True
    loader = rung7.DataLoader(rung7.TensorDataset(rung7.torch.from_numpy(X), rung7.torch.from_numpy(y)),
                              batch_sampler=batches[:1].tolist())
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(MisconfigurationException, match="to use manual_backward, please disable automatic"):
        trainer.fit(module, loader)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """An ImageFolder tree root/train/<class>/*.jpg: 4 classes x 350 JPEGs of 36x36 (resized to 32: fit's and the
    rung's resize path), each class a colour plus noise; ImageFolderDataModule keeps 1,000 for val, 400 for train."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (150, 150, 150)]):
        folder = root / "train" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(350):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def fit(argv, monkeypatch, tmp_path):
    """``python -m train fit ARGV`` in-process in tmp_path; returns (the trained net, val/loss, val/acc)."""
    from train.cli import build_cli

    monkeypatch.chdir(tmp_path)
    cli = build_cli(["fit", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                     *argv])
    metrics = cli.trainer.callback_metrics
    return cli.model.net, metrics["val/loss"].item(), metrics["val/acc"].item()


def assert_same_net(rung, model, net):
    """The rung's nn.Linear layers (weight (H, D)) equal fit's TwoLayerNet (W1 (D, H)) to float64 rounding."""
    for name, a, b in [("W1", model.fc1.weight.T, net.W1), ("b1", model.fc1.bias, net.b1),
                       ("W2", model.fc2.weight.T, net.W2), ("b2", model.fc2.bias, net.b2)]:
        assert_close_report(f"{rung} {name}", a.detach(), b.detach(), **FLOAT64_TOL)


def test_rung_8_has_the_settings_of_fit_on_the_digits():
    rung8, config = load(LADDER / "rung8_dataloader.py"), yaml.safe_load((ROOT / "configs/digits.yaml").read_text())
    model, data, trainer = config["model"], config["data"]["init_args"], config["trainer"]
    assert (model["lr_schedule"], model["momentum"], model["grad_mode"]) == ("epoch", 0.0, "manual")
    assert config["data"]["class_path"] == "train.data.DigitsDataModule"
    for name, want in [("hidden_size", model["hidden_size"]), ("std", model["std"]), ("reg", model["reg"]),
                       ("learning_rate", model["learning_rate"]), ("init_seed", model["init_seed"]),
                       ("learning_rate_decay", model["learning_rate_decay"]), ("batch_size", data["batch_size"]),
                       ("seed", data["seed"]), ("num_val", data["num_val"]), ("num_test", data["num_test"]),
                       ("num_epochs", trainer["max_epochs"])]:
        assert getattr(rung8, name) == want, name


@pytest.mark.lightning
def test_rung_8_trains_fits_net_on_the_digits(monkeypatch, tmp_path, capsys):
    """float64: every weight equal to fit's after 175 steps; the saved state_dict holds them."""
    net, val_loss, val_acc = fit(["--trainer.precision", "64-true"], monkeypatch, tmp_path)
    rung8 = load(LADDER / "rung8_dataloader.py")
    monkeypatch.setattr(rung8, "device", torch.device("cpu"))
    capsys.readouterr()
    model = rung8.train(str(tmp_path), torch.float64)
    out = capsys.readouterr().out
    assert_same_net("rung8", model, net)
    assert f"val/loss {val_loss:.4f}  val/acc {val_acc:.4f}\nfinal val/acc = {val_acc:.4f} after 175 steps" in out
    saved = torch.load(tmp_path / "two_layer_net.pt", weights_only=True)
    assert sorted(saved) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved[name], tensor), name
    assert f"two_layer_net.pt: val/acc = {val_acc:.4f}" in out


@pytest.mark.slow
@pytest.mark.lightning
def test_rung_8_prints_fits_final_line_in_float32(monkeypatch, tmp_path, capsys):
    """The default run of each, float32: the rung's last line is the one ``python -m train fit`` prints."""
    fit([], monkeypatch, tmp_path)
    fit_out = capsys.readouterr().out
    rung8 = load(LADDER / "rung8_dataloader.py")
    monkeypatch.setattr(rung8, "device", torch.device("cpu"))
    rung8.train(str(tmp_path))
    final = [line for line in capsys.readouterr().out.split("\n") if line.startswith("final val/acc")]
    assert final == ["final val/acc = 0.9800 after 175 steps (25 epochs)"]
    assert final[0] + "; logs in" in fit_out


@pytest.mark.slow
@pytest.mark.lightning
def test_rung_9_trains_fits_net_on_an_image_folder(image_tree, monkeypatch, tmp_path, capsys):
    """float64: the same weights as fit with ImageFolderDataModule (cs231n's settings, the JPEGs resized to 32)."""
    net, val_loss, val_acc = fit(["--data", "train.image_data.ImageFolderDataModule", "--data.root", str(image_tree),
                                  "--trainer.max_epochs", "3", "--trainer.precision", "64-true"], monkeypatch, tmp_path)
    rung9 = load(LADDER / "rung9_imagefolder.py")
    monkeypatch.setattr(rung9, "device", torch.device("cpu"))
    monkeypatch.setattr(rung9, "num_epochs", 3)
    capsys.readouterr()
    model = rung9.train(str(image_tree), str(tmp_path), torch.float64)
    out = capsys.readouterr().out
    assert_same_net("rung9", model, net)
    assert f"val/loss {val_loss:.4f}  val/acc {val_acc:.4f}\nfinal val/acc = {val_acc:.4f} after 6 steps" in out
    assert val_acc > 0.5  # it learns the colours: the comparison is not between two untrained nets
