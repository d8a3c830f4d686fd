"""The notebooks' link to your own homework: your cs231n NumPy code beside its PyTorch twin, and verify's diagnosis
when the two differ.

Usage (the first cells of notebooks/*.ipynb)::

    ASSIGNMENT = None                    # the project's reference_numpy
    ASSIGNMENT = "~/cs231n/assignment1"  # your assignment folder, the one holding cs231n/classifiers/
    code = load_numpy_code(assignment_folder(ASSIGNMENT), "softmax")
    code.softmax_loss_naive(W, X, y, reg)                   # yours (or the reference's)
    compare("dW", grad, grad_t, code, "softmax_loss_naive")  # agree, or what verify says is wrong

``feeding(batches)`` hands the batches of a ``train()`` to the NumPy code: inside it, every ``np.random.choice``
call returns the next of ``batches``, so your ``train()`` and its PyTorch twin take the same steps.
"""
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

PROJECT = Path(__file__).resolve().parent.parent
NAMES = {"softmax": {"softmax.py": ["softmax_loss_naive", "softmax_loss_vectorized"],
                     "linear_classifier.py": ["Softmax"]},
         "two_layer": {"neural_net.py": ["TwoLayerNet"]}}
REFERENCE = {"softmax.py": "reference_numpy.softmax", "linear_classifier.py": "reference_numpy.linear_classifier",
             "neural_net.py": "reference_numpy.neural_net"}


def assignment_folder(value):
    """ASSIGNMENT as set at the top of a notebook, else the ASSIGNMENT environment variable; None: reference_numpy."""
    value = value if value is not None else os.environ.get("ASSIGNMENT") or None
    return None if value is None else Path(value).expanduser().resolve()


def load_numpy_code(folder, topic):
    """The NumPy code of ``topic`` ("softmax": softmax_loss_naive, softmax_loss_vectorized, Softmax; "two_layer":
    TwoLayerNet), from ``folder``'s cs231n/classifiers/ (imported as your notebooks import it) or, with None, from
    reference_numpy. Returns a namespace of those names plus ``files`` ({name: file}) and ``where`` (a phrase)."""
    files = NAMES[topic]
    if folder is None:
        found = {name: getattr(importlib.import_module(REFERENCE[file]), name)
                 for file, names in files.items() for name in names}
        return SimpleNamespace(**found, files={}, where="the project's reference_numpy")
    classifiers = folder / "cs231n" / "classifiers"
    for file in files:
        if not (classifiers / file).is_file():
            raise ValueError(f"ASSIGNMENT: {folder} has no cs231n/classifiers/{file}; expected your cs231n "
                             "assignment 1 folder (the one holding cs231n/), or None for the project's reference_numpy")
    for name in [m for m in sys.modules if m == "cs231n" or m.startswith("cs231n.")]:
        del sys.modules[name]  # another folder's cs231n, imported before
    sys.path.insert(0, str(folder))
    found = {}
    for file, names in files.items():
        try:
            module = importlib.import_module(f"cs231n.classifiers.{file[:-3]}")
        except Exception as err:
            raise ValueError(f"ASSIGNMENT: importing cs231n/classifiers/{file} failed: {type(err).__name__}: {err}") \
                from None
        missing = [name for name in names if not hasattr(module, name)]
        if missing:
            raise ValueError(f"ASSIGNMENT: cs231n/classifiers/{file} defines no {', '.join(missing)}")
        found.update({name: getattr(module, name) for name in names})
    targets = {name: classifiers / file for file, names in files.items() for name in names}
    return SimpleNamespace(**found, files=targets, where=f"your {classifiers}")


def as_array(value):
    """A NumPy float64 array of a tensor, an array, a number or a list of numbers."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def compare(what, yours, twin, code, name, rtol=1e-10, atol=1e-12):
    """Print whether the NumPy result ``yours`` and its PyTorch twin agree to rounding; returns True if they do.

    When they differ: with your code, print verify's diagnosis of ``name`` (a function or class of your files); with
    the reference, raise AssertionError (the project's twins must agree)."""
    yours, twin = as_array(yours), as_array(twin)
    if yours.shape != twin.shape:
        verdict = f"{what}: yours has shape {yours.shape}, the PyTorch twin {twin.shape}"
    elif np.allclose(yours, twin, rtol=rtol, atol=atol):
        print(f"{what}: NumPy and PyTorch agree (max |difference| {np.max(np.abs(yours - twin), initial=0):.1e})")
        return True
    else:
        verdict = f"{what}: NumPy and PyTorch DIFFER (max |difference| {np.max(np.abs(yours - twin)):.1e})"
    if not code.files:
        raise AssertionError(f"{verdict} in {code.where}")
    print(verdict)
    key = (str(code.files[name]), name)
    lines = diagnose(code.files[name], name)
    print("\n".join(lines[:1] if key in _SHOWN else lines))
    _SHOWN.add(key)
    if lines[0].startswith(f"verify {code.files[name].name}:{name}: PASS"):
        print(f"  your {name} passes: look at the code that calls it (train()'s batches, update, history or lr decay)")
    return False


_DIAGNOSES, _SHOWN = {}, set()  # verify's lines per target; the targets whose hints were printed in full


def diagnose(path, name):
    """verify's verdict on ``path:name`` as lines (``python -m verify --target path:name``), computed once per
    target."""
    key = (str(path), name)
    if key not in _DIAGNOSES:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "verify.json"
            run = subprocess.run([sys.executable, "-m", "verify", "--target", f"{path}:{name}", "--json", str(report)],
                                 capture_output=True, text=True, cwd=PROJECT, timeout=600)
            if not report.is_file():
                _DIAGNOSES[key] = [f"verify could not check {name}: " + (run.stderr.strip().split("\n") or [""])[-1]]
                return _DIAGNOSES[key]
            result = json.loads(report.read_text())["results"][0]
        lines = [f"verify {path.name}:{name}: {result['status']}" + (f" -- {result['headline']}"
                                                                      if result.get("headline") else "")]
        for quantity, hints in (result.get("hints") or {}).items():
            lines += [f"  {quantity}: hint: {hint}" for hint in hints]
        lines += [f"  {result['message']}"] if result.get("message") else []
        _DIAGNOSES[key] = lines
    return _DIAGNOSES[key]


@contextlib.contextmanager
def feeding(batches):
    """Inside the block, ``np.random.choice`` returns the next of ``batches`` (index arrays), as cs231n's train()
    draws a batch. Yields a namespace whose ``calls`` counts them; the NumPy ``train()`` and its twin then take the
    same steps. Prints a warning when the block drew no batch this way."""
    real, fed = np.random.choice, SimpleNamespace(calls=0)

    def choice(*args, **kwargs):
        if fed.calls >= len(batches):
            return real(*args, **kwargs)
        fed.calls += 1
        return np.array(batches[fed.calls - 1])

    np.random.choice = choice
    try:
        yield fed
    finally:
        np.random.choice = real
    if fed.calls == 0:
        print("note: train() drew no batch with np.random.choice, so its batches differ from the PyTorch twin's")
