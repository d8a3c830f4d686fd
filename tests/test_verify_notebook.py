"""check() (``from verify import check``): a function or class imported from a file, a path, or one defined in a
notebook cell, checked in the same child process as ``verify --target``; the result's passed, rows, text and HTML.

In this process, a "cell" is simulated as IPython makes one: source compiled under a file name that only linecache
knows, run in a namespace named __main__. The last test runs real cells in a Jupyter kernel (nbclient).
Run: python -m pytest tests/test_verify_notebook.py -q   (marker: verify; the kernel test is also notebooks, slow)
"""
import linecache
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from verify import check

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORRECT = FIXTURES / "homework_years" / "y2021" / "assignment1" / "cs231n" / "classifiers" / "softmax.py"
NO_DIV_N = FIXTURES / "homework" / "softmax_no_div_n.py"
FAST = dict(timeout=20.0, max_memory="2G")

CELL = '''
import numpy as np
from numpy import arange
EPS = 0.0


def shifted(S):
    return S - S.max(axis=1, keepdims=True) + EPS


def my_softmax(W, X, y, reg):
    N = X.shape[0]
    S = shifted(X @ W)  # (N, C)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    loss = -np.log(P[arange(N), y]).mean() + reg * np.sum(W * W)
    P[arange(N), y] -= 1
    return loss, X.T @ P / N + 2 * reg * W
'''


def run_cell(source, number):
    """The namespace after running source as IPython runs a cell (module __main__, source known to linecache)."""
    filename = f"/tmp/ipykernel_0/{number}.py"  # no such file: only linecache has it
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def import_file(path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def test_importing_verify_imports_nothing_heavy():
    code = "import sys, verify; from verify import check; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_an_imported_function_passes(tmp_path):
    module = import_file(shutil.copy(CORRECT, tmp_path / "softmax.py"), "verify_test_imported_softmax")
    result = check(module.softmax_loss_vectorized, **FAST)
    assert result.passed and [r.name for r in result.results] == ["softmax_loss_vectorized"]
    assert {(row.quantity, row.check) for row in result.rows} == {("loss", "course"), ("dW", "course"),
                                                                   ("dW", "own")}
    assert all(row.passed for row in result.rows) and len(result.rows) == 15  # 5 cases
    assert "result: PASS" in repr(result) and "FAIL" not in repr(result).replace("0 FAIL", "")
    html = result._repr_html_()
    assert html.count("<tr") == 11 and "FAIL" not in html.replace("0 FAIL", "")
    whole = check(module, **FAST)  # a module: every known target of its file (the naive one is the template's)
    assert {r.name: r.status for r in whole.results} == {"softmax_loss_naive": "FAIL",
                                                         "softmax_loss_vectorized": "PASS"}
    assert not whole.passed and "looks unimplemented" in whole._repr_html_()


def test_a_path_and_its_name():
    result = check(f"{NO_DIV_N}:softmax_loss_vectorized", **FAST)
    assert not result.passed and {row.quantity for row in result.rows if not row.passed} == {"dW"}
    assert any("not divided by N" in h for h in result.results[0].hints["dW"])


def test_a_cell_function_with_its_imports_and_helpers():
    namespace = run_cell(CELL, 101)
    assert check(namespace["my_softmax"], **FAST).passed  # np, arange, EPS and the helper travel with it
    buggy = run_cell(CELL.replace("X.T @ P / N", "X.T @ P"), 102)
    result = check(buggy["my_softmax"], **FAST)
    assert not result.passed and result.results[0].failed_quantities == ["dW"]
    html = result._repr_html_()
    assert "not divided by N" in html and "#ffebe9" in html and "matches your own loss" in html


def test_a_cell_class_errors_name_the_cells_line_and_are_escaped():
    source = textwrap.dedent('''
        X_dev = object()


        class Net:
            def __init__(self, input_size, hidden_size, output_size, std=1e-4):
                self.params = {}

            def loss(self, X, y=None, reg=0.0):
                if reg < 0: print(X_dev)  # never runs: X_dev is only named
                raise ValueError("<b>not yet</b> & done")
    ''')
    result = check(run_cell(source, 103)["Net"], **FAST)
    target = result.results[0]
    assert not result.passed and target.kind == "two_layer"
    assert target.message.startswith("raised ValueError: <b>not yet</b> & done at line 11 of its cell")
    assert any("not sent to the check" in n and "X_dev" in n for n in target.notes)
    html = result._repr_html_()
    assert "&lt;b&gt;not yet&lt;/b&gt; &amp; done" in html and "<b>not yet" not in html


@pytest.mark.parametrize("target,options,error,message", [
    (42, {}, TypeError, "expected a function, a class or a module"),
    (lambda W, X, y, reg: 0, {}, ValueError, "not defined at the top level"),
    ("no_such_file.py", {}, ValueError, "no such file 'no_such_file.py'"),
    (str(NO_DIV_N), {"timeout": -1}, ValueError, "timeout must be a positive number"),
    (str(NO_DIV_N), {"max_memory": "lots"}, ValueError, "max_memory must be a size"),
    (str(NO_DIV_N), {"kind": "nope"}, ValueError, "kind must be one of"),
])
def test_bad_targets_and_options_are_one_line(target, options, error, message):
    with pytest.raises(error, match=message):
        check(target, **options)


NOTEBOOK_CELLS = [
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom verify import check",
    "from cs231n.classifiers.softmax import softmax_loss_vectorized\n"
    "good = check(softmax_loss_vectorized, timeout=30)\nassert good.passed, good\ngood",
    "from cs231n.classifiers.buggy import softmax_loss_vectorized as buggy_loss\n"
    "bad = check(buggy_loss, timeout=30)\nassert not bad.passed and 'not divided by N' in repr(bad), bad",
    CELL,
    "assert check(my_softmax, timeout=30).passed",
    CELL.replace("X.T @ P / N", "X.T @ P").replace("my_softmax", "my_buggy_softmax"),
    "cell_bad = check(my_buggy_softmax, timeout=30)\nassert not cell_bad.passed, cell_bad\ncell_bad",
    "out = !{sys.executable} -m verify --target cs231n/classifiers/softmax.py --timeout 30\n"
    "assert 'result: PASS' in out.n, out.n",
]


@pytest.mark.slow
@pytest.mark.notebooks
def test_check_in_a_jupyter_kernel(tmp_path, monkeypatch):
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    classifiers = tmp_path / "assignment1" / "cs231n" / "classifiers"
    classifiers.mkdir(parents=True)
    shutil.copy(CORRECT, classifiers / "softmax.py")
    shutil.copy(NO_DIV_N, classifiers / "buggy.py")
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")  # this interpreter, whatever the user has
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "assignment1")}}).execute()
    shown = [o for c in nb.cells for o in c.outputs if o.output_type == "execute_result"]
    assert len(shown) == 2 and all("<table" in o.data["text/html"] for o in shown)
    assert "#dafbe1" in shown[0].data["text/html"] and "not divided by N" in shown[1].data["text/html"]
