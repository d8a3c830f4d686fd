"""The ladder of docs/ladder/ (shown in docs/bridge.md): every rung is a complete program that trains the same net
on the same batches from the same start, so every rung's loss history equals rung 1's (NumPy, float64) to
rounding. The one variant allowed to differ is rung 5's weight_decay on every parameter (it decays the biases,
which the article never does), and the test shows that it does. Run: python -m pytest tests/test_ladder.py -q
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import FLOAT64_TOL, assert_close_report

pytestmark = pytest.mark.docs

LADDER = Path(__file__).resolve().parent.parent / "docs" / "ladder"
RUNGS = sorted(LADDER.glob("rung*.py"))
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


def test_the_ladder_has_seven_rungs():
    assert [path.name for path in RUNGS] == ["rung1_numpy.py", "rung2_tensors.py", "rung3_autograd.py",
                                             "rung4_function.py", "rung5_nn.py", "rung6_lightning.py",
                                             "rung7_manual.py"]


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


PRINTS = {"rung4_function.py": "gradcheck (backward vs finite differences): True",
          "rung5_nn.py": "our W1: (10, 20), nn.Linear's fc1.weight: (20, 10)"}


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNGS, ids=[path.stem for path in RUNGS])
def test_every_rung_runs_as_a_program(path):
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert PRINTS.get(path.name, "loss every 5 steps: 1.118048 0.961549") in run.stdout, run.stdout


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
