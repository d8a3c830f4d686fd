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
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image

try:
    import resource  # Unix: the kernel's CPU time
except ImportError:
    resource = None

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# inline figures without CIFAR-10: a library import that switched matplotlib's backend (e.g. to Agg) would drop them
INLINE_IMAGES = {"softmax_pytorch.ipynb": 2, "two_layer_net_pytorch.ipynb": 5}
NAMES = list(INLINE_IMAGES)
CELL_TIMEOUT_S = 120  # a hung cell fails the test
CPU_BUDGET_S = 60  # the kernel's CPU time (user + sys) for a whole notebook: a load-independent time budget

pytestmark = pytest.mark.notebooks


def execute(nb, cwd):
    """Run every cell of ``nb`` in a fresh kernel started in ``cwd``; raises CellExecutionError on the first
    cell that raises. Returns (the executed notebook, the kernel's CPU seconds, user + sys; 0 off Unix)."""
    cpu_s = lambda: 0.0 if resource is None else sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    before = cpu_s()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb, cpu_s() - before  # the kernel has exited and been waited for: its time is counted


@pytest.fixture
def quiet_kernel_env(monkeypatch, tmp_path_factory):
    """The kernel inherits this process's environment: one BLAS/OpenMP thread (the GEMMs are tiny, and the
    machine is shared), no CIFAR-10, and a python3 kernelspec that runs this interpreter (JUPYTER_PATH is searched
    before a user's own kernelspecs, which may point at another Python)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(jupyter_path / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))


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
    executed, cpu_s = execute(nb, NOTEBOOKS)
    elapsed = time.perf_counter() - start
    print(f"{name}: {elapsed:.1f} s wall, {cpu_s:.1f} s kernel CPU")
    assert cpu_s < CPU_BUDGET_S, f"{name} took {cpu_s:.0f} s of kernel CPU; the budget is {CPU_BUDGET_S} s"
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "CIFAR10_ROOT is not set" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == INLINE_IMAGES[name], f"{name}: {len(images)} inline images, expected {INLINE_IMAGES[name]}"


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
    executed, _ = execute(nbformat.read(NOTEBOOKS / name, as_version=4), NOTEBOOKS)
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
