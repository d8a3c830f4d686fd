"""notebooks/*.ipynb run top to bottom in a fresh kernel, and are stored without outputs.

Each notebook is executed by nbclient in a new ipykernel (the .venv's python) from the notebooks folder, with
CIFAR10_ROOT unset (its section is skipped) unless a test sets it. A cell that raises fails the test with the
cell's source and traceback. Run: python -m pytest tests/test_notebooks.py -q
"""
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["softmax_pytorch.ipynb", "two_layer_net_pytorch.ipynb"]
CELL_TIMEOUT_S = 120  # a hung cell fails the test; a whole notebook runs in well under a minute on 2 cores

pytestmark = pytest.mark.notebooks


def execute(nb, cwd):
    """Run every cell of ``nb`` in a fresh kernel started in ``cwd``; raises CellExecutionError on the first
    cell that raises. Returns the executed notebook."""
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


@pytest.fixture
def quiet_kernel_env(monkeypatch):
    """The kernel inherits this process's environment: one BLAS/OpenMP thread (the GEMMs are tiny, and the
    machine is shared), no CIFAR-10."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, quiet_kernel_env):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    start = time.perf_counter()
    executed = execute(nb, NOTEBOOKS)
    elapsed = time.perf_counter() - start
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "CIFAR10_ROOT is not set" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"{name}: expected inline plots, got {len(images)} images"
    print(f"{name}: {elapsed:.1f} s")


@pytest.fixture(scope="module")
def tiny_cifar10_folder(tmp_path_factory):
    """A CIFAR-10-shaped ImageFolder tree of random 32x32 PNGs: 10 classes x 110 train (ImageFolderDataModule
    keeps 1,000 of them for val), x 3 test."""
    root = tmp_path_factory.mktemp("cifar10")
    rng = np.random.default_rng(0)
    for split, per_class in [("train", 110), ("test", 3)]:
        for c in range(10):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cifar10_section_runs_when_a_folder_is_given(name, quiet_kernel_env, tiny_cifar10_folder, monkeypatch):
    monkeypatch.setenv("CIFAR10_ROOT", str(tiny_cifar10_folder))
    monkeypatch.setenv("CIFAR10_NUM_ITERS", "20")
    executed = execute(nbformat.read(NOTEBOOKS / name, as_version=4), NOTEBOOKS)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")
    assert "CIFAR10_ROOT is not set" not in text
    assert "Train data shape:  (100, " in text  # 1,100 images minus ImageFolderDataModule's 1,000 for val
    assert "test accuracy" in text.lower()


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_run(tmp_path, quiet_kernel_env):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom')"),
                                         nbformat.v4.new_code_cell("x = 2")])
    with pytest.raises(CellExecutionError, match="boom"):
        execute(nb, tmp_path)
