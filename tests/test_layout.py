"""The folders say what they import, in one direction, train -> verify -> torch_impl -> reference_numpy:
reference_numpy imports no torch; torch_impl imports only torch, numpy and reference_numpy; verify never imports
train; and no two of the project's Python files import each other, directly or round a longer loop.

Run: ``python -m pytest tests/test_layout.py -q``.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reference_numpy", "torch_impl", "train", "verify")
SCRIPT_DIRS = ("benchmarks", "docs")  # scripts that import their neighbours by bare name

BLOCKED_IMPORT = """
import importlib, pkgutil, sys
blocked = {blocked!r}

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{{name}} is blocked: {package} must not import it")

sys.meta_path.insert(0, Refuse())
import {package}
names = sorted(m.name for m in pkgutil.iter_modules({package}.__path__) if not m.name.startswith("_"))
for name in names:
    importlib.import_module(f"{package}.{{name}}")
print(len(names), "modules:", " ".join(names))
"""


@pytest.mark.parametrize("package,blocked", [("reference_numpy", ["torch", "lightning", "torchmetrics"]),
                                             ("torch_impl", ["lightning", "torchmetrics", "train", "verify"]),
                                             ("verify", ["lightning", "optuna", "torchvision", "sklearn", "matplotlib",
                                                         "torchmetrics", "jsonargparse", "tqdm", "train"])])
def test_every_module_imports_with_the_layers_above_it_blocked(package, blocked):
    code = BLOCKED_IMPORT.format(package=package, blocked=blocked)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[0]) >= 3, proc.stdout


def project_modules():
    """{module name: path} of every project file: package modules by dotted name, scripts by their bare name."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder in SCRIPT_DIRS:
        for path in (ROOT / folder).glob("*.py"):
            modules[path.stem] = path
    return modules


def imports_of(path, modules):
    """The project modules ``path`` imports, anywhere in the file (a lazy import inside a function counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_no_import_cycle():
    modules = project_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    # a package's __init__ is imported on the way to each of its modules; only edges between files count
    graph = {name: {d for d in deps if not name.startswith(f"{d}.")} for name, deps in graph.items()}
    done, on_path, cycles = set(), [], []

    def visit(name):
        if name in on_path:
            cycles.append(on_path[on_path.index(name):] + [name])
            return
        if name in done:
            return
        on_path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def top_level_imports(path):
    """The first names of every module ``path`` imports, anywhere in the file (relative imports left out)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package,allowed", [
    ("reference_numpy", {"numpy", "reference_numpy", "PIL"}),  # PIL: images.py decodes a picture file
    ("torch_impl", {"torch", "numpy", "torch_impl", "reference_numpy", "PIL"}),
])
def test_each_maths_folder_imports_only_the_rungs_below_it(package, allowed):
    """The standard library aside, what each folder's files import (lazy imports inside functions included):
    reference_numpy only numpy; torch_impl only torch, numpy and reference_numpy (and PIL to decode picture files)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        others = top_level_imports(path) - allowed - set(sys.stdlib_module_names) - {"__future__"}
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}; {package} may import {sorted(allowed)}"


def test_verify_never_imports_the_app():
    """verify runs where only numpy, torch and future are installed: never train, nor what only the app needs."""
    app = {"train", "lightning", "torchmetrics", "optuna", "torchvision", "jsonargparse", "sklearn", "matplotlib"}
    for path in sorted((ROOT / "verify").rglob("*.py")):
        if path.parent.name == "homework":  # the kit's files: the student's code, copied out, never imported by verify
            continue
        assert not top_level_imports(path) & app, f"{path.relative_to(ROOT)} imports {top_level_imports(path) & app}"


def test_the_app_is_made_of_small_rooms():
    """No file in train/ over 400 lines, no function there over 60: each one read in one sitting."""
    too_long = []
    for path in sorted((ROOT / "train").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_long, "; ".join(too_long)
