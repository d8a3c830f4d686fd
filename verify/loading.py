"""Importing someone's file as their course environment would, and saying in one line why it failed.

    module = import_file(Path(".../assignment1/cs231n/classifiers/fc_net.py"))   # as cs231n.classifiers.fc_net
    status, line = explain(exc, root)     # ("ERROR", "Python 2 code: a print statement at softmax.py:12 ...")

A file inside a package (its folder has an __init__.py, or lies in a cs231n/ folder: a namespace package, which
Python 3 allows) is imported as a module of that package, with the folder above the top package (the assignment
folder) on sys.path, so ``from ..layers import *`` and ``from cs231n.layers import *`` both work. The packages' own
__init__.py files are not run: cs231n's classifiers/__init__.py imports every sibling, and a Python 2 sibling would
stop a Python 3 target. A plain file is imported with its folder on sys.path. A module name (``module:NAME``) is
found from the current folder first, as ``python -c "import cs231n..."`` would from the assignment folder.

Runs in the child process (no torch).
"""
import importlib
import importlib.machinery
import importlib.util
import io
import re
import sys
import tokenize
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


NEWLINE = b"\n"


class NotPythonSource(Exception):
    """The file is not Python source text (binary, or in an undeclared encoding); str(exc) is the one line."""


def package_dirs(path):
    """The package folders holding the file at path, outermost first, or [] for a plain file. A folder is a
    package when it has an __init__.py, or when it is a cs231n/ folder or inside one (a namespace package, as
    Python 3 allows: cs231n/ with no __init__.py)."""
    path = Path(path).resolve()
    cs231n = next((p for p in path.parents if p.name == "cs231n"), None)
    dirs, folder = [], path.parent
    while (folder / "__init__.py").is_file() or (cs231n is not None and folder.is_relative_to(cs231n)):
        dirs.insert(0, folder)
        folder = folder.parent
    if not all(d.name.isidentifier() for d in dirs) or not path.stem.isidentifier():
        return []  # not importable by name ("classifiers copy/"): imported as a plain file
    return dirs


def assignment_root(path):
    """The folder above the top package holding path (cs231n's assignment folder), else None."""
    dirs = package_dirs(path)
    return dirs[0].parent if dirs else None


def _stub_packages(package_dirs):
    """Register each package folder (outermost first) as an imported package without running its __init__.py."""
    names = []
    for folder in package_dirs:
        names.append(folder.name)
        name = ".".join(names)
        if name in sys.modules:
            continue
        init = folder / "__init__.py"
        module = types.ModuleType(name)
        if init.is_file():
            module.__spec__ = importlib.util.spec_from_file_location(name, init,
                                                                     submodule_search_locations=[str(folder)])
            module.__file__ = str(init)
        else:  # a namespace package
            module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            module.__spec__.submodule_search_locations = [str(folder)]
        module.__path__, module.__package__ = [str(folder)], name
        sys.modules[name] = module
        if len(names) > 1:
            setattr(sys.modules[".".join(names[:-1])], folder.name, module)
    return ".".join(names)


def check_source(path):
    """Raise NotPythonSource when the file at path cannot be Python source: null bytes, or bytes its encoding
    (UTF-8 unless a coding line says otherwise) cannot decode."""
    data = Path(path).read_bytes()
    name = Path(path).name
    if b"\0" in data:
        raise NotPythonSource(f"cannot be imported: {name} is not Python source text (it holds null bytes: a binary "
                              "file, e.g. a .pyc, a zip or a notebook saved in another format?)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:  # its first lines are not UTF-8 and name no other encoding
        encoding = "utf-8"
    try:
        data.decode(encoding)
    except (LookupError, UnicodeDecodeError) as e:
        where = str(e)
        if isinstance(e, UnicodeDecodeError):
            line = data[:e.start].count(NEWLINE) + 1
            where = f"byte {data[e.start]:#04x} at line {line} is not {encoding}"
        raise NotPythonSource(f"cannot be imported: {name} is not readable text ({where}); save it as UTF-8, or "
                              "declare its encoding in its first line: # -*- coding: latin-1 -*-") from None


def import_file(path):
    """Import the file at path (see the module docstring) and return the module; exceptions propagate."""
    path = Path(path).resolve()
    check_source(path)
    dirs = package_dirs(path)
    if dirs:
        if str(dirs[0].parent) not in sys.path:
            sys.path.insert(0, str(dirs[0].parent))
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))  # a bare sibling import (Python 2 habit) still resolves, last
        return importlib.import_module(f"{_stub_packages(dirs)}.{path.stem}")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    name = path.stem if path.stem not in sys.modules else f"_verify_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does (dataclasses, pickling look it up)
    spec.loader.exec_module(module)
    return module


def module_file(name, folder):
    """The file of the dotted module name under folder (pkg/mod.py or pkg/mod/__init__.py), or None."""
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    base = Path(folder).joinpath(*parts)
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_target(where):
    """``where`` is a .py path or a dotted module name; the module (exceptions propagate). A module name is
    looked up in the current folder first (``cs231n.classifiers.fc_net`` from the assignment folder: imported as
    that file is, without running the packages' __init__.py), then on sys.path."""
    if where.endswith(".py") or "/" in where or "\\" in where:
        return import_file(where)
    path = module_file(where, Path.cwd())
    if path is not None and path.name != "__init__.py":
        module = import_file(path)
        sys.modules.setdefault(where, module)
        return module
    if str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))
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
    if isinstance(exc, NotPythonSource):
        return "ERROR", str(exc)
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
