"""notebooks/*.ipynb run top to bottom in a fresh kernel, and are stored without outputs.

Each notebook is executed by nbclient in a new ipykernel (the .venv's python) from the notebooks folder, with
CIFAR10_ROOT and ASSIGNMENT unset (the CIFAR-10 section is skipped, the NumPy code is reference_numpy) unless a test
sets them. With ASSIGNMENT, the NumPy cells run a student's cs231n package: a correct one written by the test agrees
with every PyTorch twin; one with a bug gets verify's name for it. A cell that raises fails the test with the
cell's source and traceback. Run: python -m pytest tests/test_notebooks.py -q
"""
import importlib.util
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
    monkeypatch.delenv("ASSIGNMENT", raising=False)
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
    assert "The NumPy code is the project's reference_numpy" in text
    assert "agree (max |difference|" in text and "DIFFER" not in text
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


def stream_text(executed):
    return "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_your_correct_code_agrees_with_every_twin_also_on_cifar10(name, quiet_kernel_env, tiny_cifar10_folder,
                                                                 monkeypatch, tmp_path):
    """A correct homework package: every comparison agrees; the CIFAR-10 section runs on a tiny folder."""
    folder = write_assignment(tmp_path / "assignment1", bug=None)
    monkeypatch.setenv("ASSIGNMENT", str(folder))
    monkeypatch.setenv("CIFAR10_ROOT", str(tiny_cifar10_folder))
    monkeypatch.setenv("CIFAR10_NUM_ITERS", "20")
    executed, _ = execute(nbformat.read(NOTEBOOKS / name, as_version=4), NOTEBOOKS)
    text = stream_text(executed)
    assert f"The NumPy code is your {folder / 'cs231n' / 'classifiers'}" in text
    assert "DIFFER" not in text
    assert text.count("agree (max |difference|") >= 5
    assert "CIFAR10_ROOT is not set" not in text
    assert "Train data shape:  (100, " in text  # 1,100 images minus ImageFolderDataModule's 1,000 for val
    assert "test accuracy" in text.lower()


BUGS = {  # (the bug, the comparison cell that catches it, what it prints, verify's hint)
    "softmax_pytorch.ipynb": ("softmax_no_div_n", "compare('vectorized dW'", "vectorized dW: NumPy and PyTorch DIFFER",
                              "hint: gradient not divided by N"),
    "two_layer_net_pytorch.ipynb": ("two_layer_no_reg_grad", "compare(f'd{name}'", "dW1: NumPy and PyTorch DIFFER",
                                    "hint: regularization gradient missing (add 2*reg*W")}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_bug_in_your_code_is_named_by_the_comparison_cell(name, quiet_kernel_env, monkeypatch, tmp_path):
    """The notebook up to the cell that compares the buggy quantity: that cell prints DIFFER and verify's hint."""
    bug, source, differ, hint = BUGS[name]
    monkeypatch.setenv("ASSIGNMENT", str(write_assignment(tmp_path / "assignment1", bug=bug)))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    last = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and source in c.source)
    nb.cells = nb.cells[:last + 1]
    executed, _ = execute(nb, NOTEBOOKS)
    text = stream_text_of(executed.cells[-1])
    assert differ in text and hint in text, text
    assert stream_text(executed).count("DIFFER") == 1  # the other comparisons before it agree


def load_assignment_module():
    spec = importlib.util.spec_from_file_location("notebook_assignment", NOTEBOOKS / "assignment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_without_your_classifiers_is_named_in_one_line(tmp_path):
    assignment = load_assignment_module()
    with pytest.raises(ValueError, match=r"ASSIGNMENT: .* has no cs231n/classifiers/neural_net.py; expected your"):
        assignment.load_numpy_code(tmp_path, "two_layer")
    assert assignment.load_numpy_code(None, "softmax").where == "the project's reference_numpy"


def test_feeding_hands_the_batches_to_np_random_choice(capsys):
    assignment = load_assignment_module()
    batches, real = [np.array([3, 1]), np.array([0, 0])], np.random.choice
    with assignment.feeding(batches) as fed:
        drawn = [np.random.choice(5, 2, replace=False) for _ in range(2)]
    assert fed.calls == 2 and all(np.array_equal(a, b) for a, b in zip(drawn, batches))
    assert np.random.choice is real  # restored
    with assignment.feeding(batches):
        pass
    assert "drew no batch with np.random.choice" in capsys.readouterr().out


def stream_text_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


SOFTMAX_PY = """\
import numpy as np
from past.builtins import xrange


def softmax_loss_naive(W, X, y, reg):
    loss, dW = 0.0, np.zeros_like(W)
    num_train, num_classes = X.shape[0], W.shape[1]
    for i in xrange(num_train):
        f = X[i].dot(W)
        f -= np.max(f)
        p = np.exp(f) / np.sum(np.exp(f))
        loss -= np.log(p[y[i]])
        for j in xrange(num_classes):
            dW[:, j] += X[i] * (p[j] - (j == y[i]))
    return loss / num_train + reg * np.sum(W * W), dW / num_train + 2 * reg * W


def softmax_loss_vectorized(W, X, y, reg):
    num_train = X.shape[0]
    f = X.dot(W)
    f -= np.max(f, axis=1, keepdims=True)
    p = np.exp(f) / np.sum(np.exp(f), axis=1, keepdims=True)
    loss = np.sum(-np.log(p[np.arange(num_train), y])) / num_train + reg * np.sum(W * W)
    p[np.arange(num_train), y] -= 1
    dW = X.T.dot(p) / num_train + 2 * reg * W
    return loss, dW
"""

LINEAR_CLASSIFIER_PY = """\
import numpy as np
from cs231n.classifiers.softmax import *


class LinearClassifier(object):
    def __init__(self):
        self.W = None

    def train(self, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False):
        num_train, dim = X.shape
        num_classes = np.max(y) + 1
        if self.W is None:
            self.W = 0.001 * np.random.randn(dim, num_classes)
        loss_history = []
        for it in range(num_iters):
            batch_idx = np.random.choice(num_train, batch_size, replace=True)
            loss, grad = self.loss(X[batch_idx], y[batch_idx], reg)
            loss_history.append(loss)
            self.W -= learning_rate * grad
            if verbose and it % 100 == 0:
                print('iteration %d / %d: loss %f' % (it, num_iters, loss))
        return loss_history

    def predict(self, X):
        return np.argmax(X.dot(self.W), axis=1)


class Softmax(LinearClassifier):
    def loss(self, X_batch, y_batch, reg):
        return softmax_loss_vectorized(self.W, X_batch, y_batch, reg)
"""

NEURAL_NET_PY = """\
import numpy as np


class TwoLayerNet(object):
    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        self.params = {}
        self.params['W1'] = std * np.random.randn(input_size, hidden_size)
        self.params['b1'] = np.zeros(hidden_size)
        self.params['W2'] = std * np.random.randn(hidden_size, output_size)
        self.params['b2'] = np.zeros(output_size)

    def loss(self, X, y=None, reg=0.0):
        W1, b1, W2, b2 = self.params['W1'], self.params['b1'], self.params['W2'], self.params['b2']
        N, D = X.shape
        hidden = np.maximum(0, X.dot(W1) + b1)
        scores = hidden.dot(W2) + b2
        if y is None:
            return scores
        shifted = scores - np.max(scores, axis=1, keepdims=True)
        probs = np.exp(shifted) / np.sum(np.exp(shifted), axis=1, keepdims=True)
        loss = -np.sum(np.log(probs[range(N), y])) / N + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        grads = {}
        dscores = probs.copy()
        dscores[range(N), y] -= 1
        dscores /= N
        grads['W2'] = hidden.T.dot(dscores) + 2 * reg * W2
        grads['b2'] = np.sum(dscores, axis=0)
        dhidden = dscores.dot(W2.T)
        dhidden[hidden <= 0] = 0
        grads['W1'] = X.T.dot(dhidden) + 2 * reg * W1
        grads['b1'] = np.sum(dhidden, axis=0)
        return loss, grads

    def train(self, X, y, X_val, y_val, learning_rate=1e-3, learning_rate_decay=0.95, reg=5e-6, num_iters=100,
              batch_size=200, verbose=False):
        num_train = X.shape[0]
        iterations_per_epoch = max(num_train / batch_size, 1)
        loss_history, train_acc_history, val_acc_history = [], [], []
        for it in range(num_iters):
            indices = np.random.choice(num_train, batch_size)
            X_batch, y_batch = X[indices], y[indices]
            loss, grads = self.loss(X_batch, y=y_batch, reg=reg)
            loss_history.append(loss)
            for name in self.params:
                self.params[name] -= learning_rate * grads[name]
            if verbose and it % 100 == 0:
                print('iteration %d / %d: loss %f' % (it, num_iters, loss))
            if it % iterations_per_epoch == 0:
                train_acc_history.append((self.predict(X_batch) == y_batch).mean())
                val_acc_history.append((self.predict(X_val) == y_val).mean())
                learning_rate *= learning_rate_decay
        return {'loss_history': loss_history, 'train_acc_history': train_acc_history,
                'val_acc_history': val_acc_history}

    def predict(self, X):
        return np.argmax(self.loss(X), axis=1)
"""

BUG_EDITS = {  # a bug students make, as (file, correct line, buggy line)
    "softmax_no_div_n": ("softmax.py", "dW = X.T.dot(p) / num_train + 2 * reg * W", "dW = X.T.dot(p) + 2 * reg * W"),
    "two_layer_no_reg_grad": ("neural_net.py", "grads['W1'] = X.T.dot(dhidden) + 2 * reg * W1",
                              "grads['W1'] = X.T.dot(dhidden)"),
}


def write_assignment(folder, bug):
    """A cs231n assignment 1 folder with a student's classifiers (cs231n 2017-2019 API), correct or with ``bug``."""
    files = {"softmax.py": SOFTMAX_PY, "linear_classifier.py": LINEAR_CLASSIFIER_PY, "neural_net.py": NEURAL_NET_PY}
    if bug is not None:
        file, correct, buggy = BUG_EDITS[bug]
        assert files[file].count(correct) == 1
        files[file] = files[file].replace(correct, buggy)
    package = folder / "cs231n" / "classifiers"
    package.mkdir(parents=True)
    (folder / "cs231n" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from cs231n.classifiers.softmax import *\n")
    for file, text in files.items():
        (package / file).write_text(text)
    return folder


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_run(tmp_path, quiet_kernel_env):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom')"),
                                         nbformat.v4.new_code_cell("x = 2")])
    with pytest.raises(CellExecutionError, match="boom"):
        execute(nb, tmp_path)
