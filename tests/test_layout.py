"""The folders say what they import: reference_numpy imports no torch, torch_impl no Lightning, torchmetrics, train or
verify; and no two of the project's Python files import each other, directly or round a longer loop.

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
