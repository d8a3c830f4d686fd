"""The PyTorch homework kit: ``python -m verify homework DIR`` writes it, and verify judges every TODO in it.

A solved copy (tests/fixtures/homework_kit_solved/, not shipped) PASSes every check; the untouched kit says "looks
unfinished" once per function; typical student mistakes, made as small edits of the solution, FAIL naming the
quantity and the mistake. homework.ipynb runs top to bottom on the solved kit (test_kit_notebook_runs).

Run: python -m pytest tests/test_homework_kit.py -q   (marker: verify; the Lightning and notebook ones: slow)
"""
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from verify.checks import check_file, write_job
from verify.cli import main
from verify.homework_kit import KIT_FILES
from verify.sandbox import Limits

pytestmark = pytest.mark.verify
ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "verify" / "homework"
SOLVED = Path(__file__).resolve().parent / "fixtures" / "homework_kit_solved"
LIMITS = Limits(timeout=180.0, max_memory=4 * 2**30)  # Lightning's import is slow on a loaded machine
TARGETS = {"softmax_torch.py": ["softmax_loss_naive", "softmax_loss_vectorized"],
           "two_layer_torch.py": ["two_layer_loss", "TwoLayerLoss", "train"],
           "lit_two_layer.py": ["LitTwoLayerNet"]}
BLOCK = re.compile(r"(# \*+START OF YOUR CODE.*?\n).*?(\s*# \*+END OF YOUR CODE)", re.S)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return write_job(tmp_path_factory.mktemp("job"))


def check(folder, file, job, name=None):
    return {r.name: r for r in check_file(str(folder / file), job, name=name, limits=LIMITS)}


def kit_folder(tmp_path, source, **edits):
    """The kit's .py files from source in tmp_path, with edits {file: [(old, new), ...]} applied (each must hit)."""
    for file in TARGETS:
        text = (source / file).read_text()
        for old, new in edits.get(file, []):
            assert old in text, f"{file}: {old!r} not found"
            text = text.replace(old, new)
        (tmp_path / file).write_text(text)
    return tmp_path


# ---- python -m verify homework DIR ----

def test_homework_writes_the_kit_and_never_overwrites(tmp_path, capsys):
    target = tmp_path / "mykit"
    assert main(["homework", str(target)]) == 0
    assert "wrote the PyTorch homework kit" in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == sorted(KIT_FILES)
    assert all((target / f).read_bytes() == (KIT / f).read_bytes() for f in KIT_FILES)
    (target / "softmax_torch.py").write_text("# my work")
    assert main(["homework", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds softmax_torch.py" in err and "--force" in err
    assert (target / "softmax_torch.py").read_text() == "# my work"
    assert main(["homework", str(target), "--force"]) == 0
    assert (target / "softmax_torch.py").read_bytes() == (KIT / "softmax_torch.py").read_bytes()
    (tmp_path / "file").write_text("")
    assert main(["homework", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_kit_ships_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"verify.homework" = ["*.ipynb"]' in text and '"verify", "verify.homework"]' in text
    assert not (KIT / "__init__.py").exists()  # files to copy, never imported by verify (lit_two_layer: Lightning)


@pytest.mark.parametrize("file", list(TARGETS))
def test_solved_kit_is_the_template_with_the_blocks_filled(file):
    template, solved = (KIT / file).read_text(), (SOLVED / file).read_text()
    assert len(BLOCK.findall(template)) == len(BLOCK.findall(solved)) >= 1
    bodies = re.findall(r"# \*+START OF YOUR CODE.*?\n(.*?)# \*+END", template, re.S)
    assert bodies and all(body.strip() == "pass" for body in bodies)
    assert BLOCK.sub(r"\1\2", template) == BLOCK.sub(r"\1\2", solved)


# ---- verify judges the kit ----

@pytest.mark.parametrize("file", ["softmax_torch.py", "two_layer_torch.py",
                                  pytest.param("lit_two_layer.py", marks=pytest.mark.slow)])
def test_solved_kit_passes(file, job):
    results = check(SOLVED, file, job)
    assert sorted(results) == sorted(TARGETS[file])
    for name, r in results.items():
        assert r.status == "PASS", (name, r.message, [(x.case, x.quantity, x.note) for x in r.rows if not x.passed])
        assert r.rows and not r.hints


@pytest.mark.parametrize("file", ["softmax_torch.py", "two_layer_torch.py",
                                  pytest.param("lit_two_layer.py", marks=pytest.mark.slow)])
def test_untouched_kit_looks_unfinished(file, job, tmp_path):
    results = check(kit_folder(tmp_path, KIT), file, job)
    assert sorted(results) == sorted(TARGETS[file])
    for r in results.values():
        assert r.status == "FAIL" and r.message.startswith(("looks unfinished", "looks unimplemented")), r.message
        assert len(r.rows) == 1 and "\n" not in r.message


MUTANTS = {  # copies of the solution with typical mistakes, each in its own target (one child per copy)
    "softmax": {"softmax_torch.py": [("dW = X.T @ dscores + 2 * reg * W", "dW = -X.T @ dscores + 2 * reg * W"),
                                     ("dW = dW / num_train + 2 * reg * W", "dW = dW + 2 * reg * W")]},
    "two_layer A": {"two_layer_torch.py": [
        ("    dscores /= N\n    grads", "    grads"),
        ("dhidden = (dscores @ W2.T) * (S1 > 0)  # (N, H)  through W2 and the ReLU mask\n        dW1",
         "dhidden = dscores @ W2.T\n        dW1"),
        ("        optimizer.step()\n", "")]},
    "two_layer B": {"two_layer_torch.py": [
        ("dscores *= grad_loss / N", "dscores /= N"), ("2 * reg * grad_loss * W1", "2 * reg * W1"),
        ("2 * reg * grad_loss * W2", "2 * reg * W2"), ("        optimizer.zero_grad()\n", "")]},
}
MISTAKES = {  # name: (mutant, target, failing quantity, words of its hint)
    "softmax: wrong sign": ("softmax", "softmax_loss_vectorized", "dW", "wrong sign"),
    "softmax: missing /N": ("softmax", "softmax_loss_naive", "dW", "not divided by N"),
    "two_layer_loss: missing /N": ("two_layer A", "two_layer_loss", "W2", "not divided by N"),
    "TwoLayerLoss: missing ReLU mask": ("two_layer A", "TwoLayerLoss", "W1", "ReLU mask missing"),
    "train: optimizer never steps": ("two_layer A", "train", "W1", "never changes"),
    "TwoLayerLoss: grad_loss ignored": ("two_layer B", "TwoLayerLoss", "grad_loss", "grad_loss"),
    "train: no zero_grad": ("two_layer B", "train", "W1", "accumulate"),
}


@pytest.fixture(scope="module")
def mistakes(job, tmp_path_factory):
    """{mutant: {target: TargetResult}}, every mutated copy checked two children at a time."""
    def run(item):
        mutant, edits = item
        folder = kit_folder(tmp_path_factory.mktemp("mutant"), SOLVED, **edits)
        return mutant, check(folder, next(iter(edits)), job)
    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, MUTANTS.items()))


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistake_fails_naming_the_quantity(mistake, mistakes):
    mutant, target, quantity, words = MISTAKES[mistake]
    r = mistakes[mutant][target]
    assert r.status == "FAIL" and quantity in r.failed_quantities, (r.message, r.failed_quantities)
    assert any(words in h for h in r.hints.get(quantity, [])), r.hints


def test_mistakes_stay_in_their_targets(mistakes):
    """The spy judges train() with the course's loss: TwoLayerLoss's missing mask (same file) does not show in it."""
    assert mistakes["two_layer A"]["train"].failed_quantities == ["optimizer", "W1", "b1", "W2", "b2"]
    assert mistakes["two_layer B"]["two_layer_loss"].status == "PASS"


@pytest.mark.slow
def test_lightning_step_that_returns_none_fails(job, tmp_path):
    folder = kit_folder(tmp_path, SOLVED, **{"lit_two_layer.py": [(
        "        return loss\n\n    def validation_step", "        return None\n\n    def validation_step")]})
    r = check(folder, "lit_two_layer.py", job)["LitTwoLayerNet"]
    assert r.status == "FAIL" and {"training_step", "W1", "b2"} <= set(r.failed_quantities)
    assert any("training_step returned None" in x.note for x in r.rows)
    assert any("never changes" in h for h in r.hints["W1"])


def test_cli_target_judges_the_kit(tmp_path, capsys):
    """python -m verify --target FILE on a kit file; torch code that refuses the NumPy arrays it is first tried
    with is reported with its own error on tensors (float64 @ float32), not the NumPy attempt's."""
    folder = kit_folder(tmp_path, SOLVED, **{"softmax_torch.py": [
        ("dW = dW / num_train + 2 * reg * W", "dW = dW + 2 * reg * W"),
        ("dW = X.T @ dscores", "dW = X.T @ dscores.float()")]})
    assert main(["--target", str(folder / "softmax_torch.py")]) == 1
    out = capsys.readouterr().out
    naive, vectorized = out.split("softmax_loss_vectorized  (")
    assert "FAIL dW" in naive and "not divided by N" in naive
    assert "same dtype" in vectorized and "numpy.ndarray" not in vectorized
    assert "0 PASS, 2 FAIL, 0 ERROR" in out


@pytest.mark.slow
@pytest.mark.notebooks
def test_kit_notebook_runs(tmp_path, monkeypatch):
    """homework.ipynb top to bottom in a fresh kernel on the solved kit: every check(...) cell shows PASS."""
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kit = tmp_path / "kit"
    kit.mkdir()
    for file in TARGETS:
        shutil.copy(SOLVED / file, kit / file)
    nb = nbformat.read(KIT / "homework.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(kit)}}).execute()
    checks = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("check(")]
    assert len(checks) == 6
    for cell in checks:
        shown = " ".join(o.get("data", {}).get("text/html", "") + o.get("data", {}).get("text/plain", "")
                         for o in cell.outputs)
        assert "PASS" in shown and "FAIL" not in shown.replace("0 FAIL", ""), (cell.source, shown[:2000])



def test_parent_side_never_imports_lightning(tmp_path):
    """verify's own code for the kit (writing it, judging it) runs without Lightning; only the child, running the
    student's lit_two_layer.py, imports it."""
    code = ("import sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('lightning', 'pytorch_lightning', 'train', 'optuna', 'torchvision'):\n"
            "            raise ImportError(name + ' is blocked')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "import verify.torch_checks, verify.torch_loops, verify.homework_kit, verify.checks\n"
            f"verify.homework_kit.write_kit({str(tmp_path / 'kit')!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == sorted(KIT_FILES)


def test_seeded_cases_are_judged_on_what_the_child_ran(tmp_path):
    """With a seed the child runs reseeded cases; the parent judges on the same ones (fixed ones would FAIL)."""
    results = check(SOLVED, "two_layer_torch.py", write_job(tmp_path, seed=5))
    assert {n: r.status for n, r in results.items()} == {n: "PASS" for n in TARGETS["two_layer_torch.py"]}
