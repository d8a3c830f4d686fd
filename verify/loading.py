"""Importing someone's file as their course environment would, and saying in one line why it failed.

    module = import_file(Path(".../assignment1/cs231n/classifiers/fc_net.py"))   # as cs231n.classifiers.fc_net
    status, line = explain(exc, root)     # ("ERROR", "Python 2 code: a print statement at softmax.py:12 ...")

A file inside a package (its folder has an __init__.py) is imported as a module of that package, with the folder
above the top package (the assignment folder) on sys.path, so ``from ..layers import *`` and
``from cs231n.layers import *`` both work. The packages' own __init__.py files are not run: cs231n's
classifiers/__init__.py imports every sibling, and a Python 2 sibling would stop a Python 3 target. A plain file is
imported with its folder on sys.path, plus the assignment folder when it sits under a cs231n/ tree.

Runs in the child process (no torch).
"""
import importlib
import importlib.util
import re
import sys
import traceback
import types
from pathlib import Path

PIP_NAMES = {"past": "future", "future": "future", "cv2": "opencv-python", "sklearn": "scikit-learn",
             "PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "imageio": "imageio", "scipy": "scipy",
             "matplotlib": "matplotlib", "h5py": "h5py", "tqdm": "tqdm", "pandas": "pandas", "numba": "numba"}
PYTHON2_MODULES = {"cPickle": "pickle", "urllib2": "urllib.request", "Queue": "queue", "StringIO": "io",
                   "cStringIO": "io", "ConfigParser": "configparser", "__builtin__": "builtins"}
PYTHON2_NAMES = {"xrange": "range (or `from past.builtins import xrange`, as cs231n's templates do)",
                 "unicode": "str", "raw_input": "input", "basestring": "str", "long": "int", "unichr": "chr",
                 "reduce": "functools.reduce", "execfile": "exec(open(...).read())", "iteritems": ".items()",
                 "itervalues": ".values()", "iterkeys": ".keys()", "has_key": "`key in dict`"}
# names NumPy removed (1.24 for the aliases of builtins, 2.0 for the rest) and what replaces them
NUMPY_REMOVED = {"float": "float or np.float64", "int": "int or np.int64", "bool": "bool or np.bool_",
                 "object": "object", "str": "str", "long": "int", "unicode": "str", "complex": "complex",
                 "float_": "np.float64", "complex_": "np.complex128", "NaN": "np.nan", "NAN": "np.nan",
                 "Inf": "np.inf", "Infinity": "np.inf", "infty": "np.inf", "NINF": "-np.inf", "PINF": "np.inf",
                 "product": "np.prod", "cumproduct": "np.cumprod", "alltrue": "np.all", "sometrue": "np.any",
                 "asfarray": "np.asarray(x, dtype=float)", "string_": "np.bytes_", "unicode_": "np.str_",
                 "mat": "np.asmatrix", "trapz": "np.trapezoid", "in1d": "np.isin", "row_stack": "np.vstack"}


def assignment_root(path):
    """The folder above the top package holding path (cs231n's assignment folder), else the folder above the
    nearest cs231n/ ancestor, else None."""
    path = Path(path).resolve()
    folder = path.parent
    if (folder / "__init__.py").is_file():
        while (folder.parent / "__init__.py").is_file():
            folder = folder.parent
        return folder.parent
    for parent in path.parents:
        if parent.name == "cs231n":
            return parent.parent
    return None


def _stub_packages(root, package_dirs):
    """Register each package folder (outermost first) as an imported package without running its __init__.py."""
    names = []
    for folder in package_dirs:
        names.append(folder.name)
        name = ".".join(names)
        if name in sys.modules:
            continue
        init = folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
        module = types.ModuleType(name)
        module.__spec__, module.__file__, module.__path__, module.__package__ = spec, str(init), [str(folder)], name
        sys.modules[name] = module
        if len(names) > 1:
            setattr(sys.modules[".".join(names[:-1])], folder.name, module)
    return ".".join(names)


def import_file(path):
    """Import the file at path (see the module docstring) and return the module; exceptions propagate."""
    path = Path(path).resolve()
    root = assignment_root(path)
    if (path.parent / "__init__.py").is_file():
        package_dirs = [path.parent]
        while (package_dirs[0].parent / "__init__.py").is_file():
            package_dirs.insert(0, package_dirs[0].parent)
        sys.path.insert(0, str(root))
        package = _stub_packages(root, package_dirs)
        return importlib.import_module(f"{package}.{path.stem}")
    for folder in (root, path.parent):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    name = path.stem if path.stem not in sys.modules else f"_verify_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does (dataclasses, pickling look it up)
    spec.loader.exec_module(module)
    return module


def import_target(where):
    """``where`` is a .py path or a dotted module name; the module (exceptions propagate)."""
    if where.endswith(".py") or "/" in where or "\\" in where:
        return import_file(where)
    return importlib.import_module(where)


def _place(exc, root):
    """'file.py:12' of the innermost frame inside root (the student's files), or '' (never importlib or verify)."""
    root = Path(root).resolve() if root else None
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename)
        if frame.filename.startswith("<") or root is None:
            continue
        try:
            path.resolve().relative_to(root)
        except ValueError:
            continue
        return f"{path.name}:{frame.lineno}"
    return ""


def _at(place):
    return f" at {place}" if place else ""


def explain(exc, root):
    """(status, one line) for an exception raised by the student's code (import or call); status is ERROR when
    the cause lies outside the maths (Python 2, a missing module, a name NumPy removed), else FAIL."""
    place = _place(exc, root)
    if isinstance(exc, SyntaxError):  # the place is the exception's own
        where = f"{Path(exc.filename or '?').name}:{exc.lineno}"
        msg = str(exc.msg)
        if "Missing parentheses in call to 'print'" in msg:
            return "ERROR", f"Python 2 code: a print statement at {where}; this tool runs Python 3: write print(...)"
        if "Missing parentheses in call to 'exec'" in msg or "multiple exception types" in msg:
            return "ERROR", f"Python 2 code at {where} ({msg}); this tool runs Python 3"
        if isinstance(exc, TabError):
            return "ERROR", f"Python 2 code: tabs and spaces mixed at {where}; Python 3 needs one of them"
        if "leading zeros" in msg:
            return "ERROR", f"Python 2 code: an octal literal like 0777 at {where}; write 0o777"
        return "ERROR", f"cannot be imported: SyntaxError: {msg} at {where}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in PYTHON2_MODULES:
            return "ERROR", (f"Python 2 code: module {exc.name!r}{_at(place)} is {PYTHON2_MODULES[top]!r} in "
                             "Python 3")
        if top == "cs231n":
            return "ERROR", f"needs {exc.name!r}{_at(place)}, which is not in the assignment folder"
        return "ERROR", (f"needs the module {exc.name!r}{_at(place)}, which is not installed: "
                         f"pip install {PIP_NAMES.get(top, top)}")
    if isinstance(exc, NameError) and getattr(exc, "name", None) in PYTHON2_NAMES:
        return "ERROR", (f"Python 2 code: {exc.name!r} is not defined in Python 3{_at(place)}; use "
                         f"{PYTHON2_NAMES[exc.name]}")
    if isinstance(exc, AttributeError):
        name, obj = getattr(exc, "name", None), getattr(exc, "obj", None)
        numpy_name = re.match(r"module 'numpy' has no attribute '(\w+)'", str(exc))
        if numpy_name:  # NumPy's module __getattr__ sets neither name nor obj
            name, obj = numpy_name.group(1), sys.modules.get("numpy")
        if getattr(obj, "__name__", None) == "numpy" and name in NUMPY_REMOVED:
            return "ERROR", f"np.{name}{_at(place)} was removed from NumPy; use {NUMPY_REMOVED[name]}"
        if name in PYTHON2_NAMES and isinstance(obj, dict):
            return "ERROR", f"Python 2 code: dict.{name}{_at(place)}; use {PYTHON2_NAMES[name]}"
    if isinstance(exc, MemoryError):
        return "FAIL", f"ran out of memory (the --max-memory cap){_at(place)}"
    if isinstance(exc, SystemExit):
        return "FAIL", f"called sys.exit({exc.code!r}) or exit(){_at(place)}"
    if isinstance(exc, KeyboardInterrupt):
        return "FAIL", f"raised KeyboardInterrupt{_at(place)}"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return "FAIL", f"raised {type(exc).__name__}{': ' + text if text else ''}{_at(place)}"
