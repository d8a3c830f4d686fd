"""check(): verify code from a Jupyter notebook (or any Python session), the way ``verify --target`` does.

    from verify import check
    from cs231n.classifiers.softmax import softmax_loss_vectorized
    check(softmax_loss_vectorized)                       # the function as saved in its file
    check("cs231n/classifiers/fc_net.py:TwoLayerNet")    # FILE, FILE:NAME or module:NAME, from the current folder

    def my_softmax(W, X, y, reg): ...                    # defined in a cell
    result = check(my_softmax)                           # its source and the cell's imports go to the child
    result.passed, result.rows                           # True/False; the report's rows (CheckRow)

The code runs in the same child process, with the same limits, as on the command line: nothing the student's code
does (an endless loop, exit(), a flood of prints, a fork) reaches the notebook's kernel. A function or class
imported from a file is checked as that file is saved on disk, as a grader would see it. One defined in a cell is
written to a file in a temporary folder, with what it uses from the notebook: the modules it names, the functions
and classes it calls (imported ones as imports, ones from other cells as their source), and plain constants.
Anything else (an array, an object) is not sent, and the result's notes say so.

The result shows as the terminal table (repr) or, in Jupyter, as a coloured HTML table with the hints.
"""
import ast
import builtins
import html
import inspect
import linecache
import os
import re
import sys
import tempfile
from pathlib import Path

PASS_STYLE = "color:#116329;background:#dafbe1"
FAIL_STYLE = "color:#82071e;background:#ffebe9"
CELL_FILE = "notebook_cell.py"  # the generated file's name; its lines are reported as the cell's
CELL = "notebook cell"


def check(target, *, name=None, kind=None, reg_convention="auto", timeout=60.0, max_memory="4G", seed=None):
    """Check one function or class (an object, or where to find it) and return a CheckResult.

    target: a function or class (imported from the student's file, or defined in a cell), a module imported from
    the student's file, or a string FILE.py,
    FILE.py:NAME or module:NAME (found from the current folder). name: the target in FILE.py (default: every known
    one). kind: the API, when its name does not say it (see ``verify --help``). reg_convention: "auto", "full"
    (reg*sum(W*W)) or "half" (0.5*reg*sum(W*W)). timeout: seconds each target (and the import) may run.
    max_memory: the child's address-space cap, e.g. "4G", "512M", or bytes; 0 for none. seed: draw the cases
    afresh from this seed (default: the fixed cases).
    Raises TypeError or ValueError (one line) for a target or option it cannot use."""
    from verify.checks import check_file  # torch (for the references) is imported here, not before
    from verify.job import write_job
    from verify.kinds import KINDS
    from verify.sandbox import Limits

    if kind is not None and kind not in KINDS:
        raise ValueError(f"check: kind must be one of {', '.join(sorted(KINDS))}; got {kind!r}")
    if reg_convention not in ("auto", "full", "half"):
        raise ValueError(f"check: reg_convention must be 'auto', 'full' or 'half'; got {reg_convention!r}")
    limits = Limits(timeout=_seconds(timeout), max_memory=_bytes(max_memory))
    with tempfile.TemporaryDirectory(prefix="verify_check_") as tmp:
        where, name, label, cell = _locate(target, name, Path(tmp))
        results = check_file(where, write_job(tmp, seed=seed), name=name, kind=kind, reg_convention=reg_convention,
                             limits=limits)
    if cell is not None:
        for r in results:
            cell.relabel(r)
    return CheckResult(label, results, limits.describe())


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"check: timeout must be a positive number of seconds; got {value!r}")
    return float(value)


def _bytes(value):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    from verify.cli import parse_size

    try:
        return parse_size(str(value))
    except Exception:
        raise ValueError(f"check: max_memory must be a size like '4G' or '512M', or bytes; got {value!r}") from None


def _locate(target, name, tmp):
    """(where for check_file, name, the label shown, a CellFile or None) of check()'s target."""
    if isinstance(target, (str, os.PathLike)):
        from verify.cli import split_target

        where, given = split_target(os.fspath(target))
        if given and name and given != name:
            raise ValueError(f"check: {target!r} names {given!r}, and name={name!r} another")
        is_path = where.endswith(".py") or "/" in where or os.sep in where
        if is_path and not Path(where).is_file():
            raise ValueError(f"check: no such file {where!r} (from the folder {os.getcwd()})")
        return where, given or name, os.fspath(target), None
    if inspect.ismodule(target) and str(getattr(target, "__file__", "")).endswith(".py"):
        return target.__file__, name, target.__name__, None  # every known target of its file
    obj = target.__func__ if inspect.ismethod(target) else target
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError("check: expected a function, a class or a module, or a string 'FILE.py[:NAME]' or "
                        f"'module:NAME'; got {type(target).__name__}")
    if obj.__name__ == "<lambda>" or "<locals>" in obj.__qualname__:
        raise ValueError(f"check: {obj.__qualname__} is not defined at the top level of a file or a cell; "
                         "define it with def at the top level")
    file = getattr(sys.modules.get(obj.__module__), "__file__", None)
    if obj.__module__ != "__main__" and file and file.endswith(".py"):
        return file, obj.__qualname__, f"{file}:{obj.__qualname__}", None
    cell = CellFile(obj, tmp / CELL_FILE)
    return str(cell.path), obj.__name__, f"{CELL}:{obj.__name__}", cell


class CellFile:
    """A file holding a cell's function or class, its helpers from other cells, and the imports they use."""

    def __init__(self, obj, path):
        self.path, self.segments, self.missing = path, [], []
        header = ["# written by verify.check() from notebook cells", "import sys as _verify_sys", "",
                  f"_verify_sys.path += [p for p in {_search_path()!r} if p not in _verify_sys.path]"]
        bindings, sources = [], []
        self._collect(obj, bindings, sources, seen={obj.__name__})
        lines = header + sorted(set(bindings)) + [""]
        for src, first_line in sources:  # helpers first, the target last
            lines += ["", ""]
            self.segments.append((len(lines) + 1, first_line))
            lines += src.splitlines()
        path.write_text("\n".join(lines) + "\n")

    def _collect(self, obj, bindings, sources, seen):
        source, first_line = cell_source(obj)
        namespace = _globals_of(obj)
        for name in sorted(free_names(source)):
            value = namespace.get(name, _MISSING)
            if name in seen or (value is _MISSING and hasattr(builtins, name)):
                continue
            seen.add(name)
            line = _binding(name, value)
            if line is not None:
                bindings.append(line)
            elif (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == "__main__" \
                    and value.__name__ == name:
                self._collect(value, bindings, sources, seen)  # a helper from another cell: its source
            elif value is not _MISSING:
                self.missing.append(name)
        sources.append((source, first_line))

    def relabel(self, result):
        """Put the cell's line numbers in result's messages, and note what was not sent."""
        result.where = CELL
        result.message = self._lines(result.message)
        result.notes = [self._lines(n) for n in result.notes]
        result.hints = {q: [self._lines(h) for h in hs] for q, hs in result.hints.items()}
        for r in result.rows:
            r.note = self._lines(r.note)
        if self.missing:
            result.notes.append(f"not sent to the check (not a module, a function, a class or a plain constant): "
                                f"{', '.join(self.missing)}; a NameError for them comes from this")

    def _lines(self, text):
        def cell_line(match):
            line = int(match.group(1))
            for start, first_line in reversed(self.segments):
                if line >= start:
                    return f"line {line - start + first_line} of its cell"
            return match.group(0)
        return re.sub(rf"{re.escape(CELL_FILE)}:(\d+)", cell_line, text) if text else text


_MISSING = object()


def _search_path():
    """The session's current folder and sys.path folders, so the cell's imports resolve as in the kernel."""
    folders = [os.getcwd()] + [os.path.abspath(p) for p in sys.path if p]
    return [p for i, p in enumerate(folders) if os.path.isdir(p) and p not in folders[:i]]


def _globals_of(obj):
    """The namespace obj's code reads its global names from (the notebook's, for a cell)."""
    if inspect.isfunction(obj):
        return obj.__globals__
    for member in vars(obj).values():
        func = getattr(member, "__func__", getattr(member, "fget", member))
        if inspect.isfunction(func):
            return func.__globals__
    return vars(sys.modules.get(obj.__module__, sys.modules["__main__"]))


def _binding(name, value):
    """The line that binds name in the generated file (an import or a constant), or None."""
    if inspect.ismodule(value):
        return f"import {value.__name__}" + (f" as {name}" if name != value.__name__ else "")
    module, attr = getattr(value, "__module__", None), getattr(value, "__name__", None)
    if module and module != "__main__" and attr and getattr(sys.modules.get(module), attr, None) is value:
        return f"from {module} import {attr}" + (f" as {name}" if name != attr else "")
    try:
        text = repr(value)
        if ast.literal_eval(text) == value:
            return f"{name} = {text}"
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    return None


def cell_source(obj):
    """(the dedented source of a function or class, its first line in its cell or file)."""
    try:
        lines, first = inspect.getsourcelines(obj)
    except (OSError, TypeError):  # a class in __main__: find it from one of its methods' code
        if not inspect.isclass(obj):
            raise ValueError(f"check: the source of {obj.__name__} cannot be found; save it in a .py file and "
                             "check that file") from None
        lines, first = _class_lines(obj)
    first = max(first, 1)
    text = "".join(lines)
    indent = len(text) - len(text.lstrip(" \t"))
    return "\n".join(line[indent:] for line in text.splitlines()), first


def _class_lines(cls):
    for member in vars(cls).values():
        func = getattr(member, "__func__", getattr(member, "fget", member))
        code = getattr(func, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        header = re.compile(rf"^\s*class\s+{re.escape(cls.__name__)}\b")
        for start in range(min(code.co_firstlineno, len(lines)) - 1, -1, -1):
            if header.match(lines[start]):
                return inspect.getblock(lines[start:]), start + 1
    raise ValueError(f"check: the source of class {cls.__name__} cannot be found; save it in a .py file and "
                     "check that file")


def free_names(source):
    """Names source reads that it does not bind itself (its globals and builtins)."""
    tree = ast.parse(source)
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return loaded - bound


class CheckResult:
    """What check() found. passed: every target PASSed; results: [TargetResult], one per target; rows: their
    report rows (CheckRow: case, quantity, check, max_rel, tol, passed, note)."""

    def __init__(self, target, results, limits_line):
        self.target, self.results, self.limits_line = target, results, limits_line

    @property
    def passed(self):
        return bool(self.results) and all(r.status == "PASS" for r in self.results)

    @property
    def rows(self):
        return [row for r in self.results for row in r.rows]

    def __repr__(self):
        from verify.report import format_target, summary_counts

        lines = [f"verify {self.target}: float64, every case against torch.autograd and your own loss; "
                 f"{self.limits_line}"]
        lines += [format_target(r) for r in self.results]
        return "\n".join(lines + [f"verify: {summary_counts(self.results)}"])

    def _repr_html_(self):
        from verify.report import summary_counts

        style = PASS_STYLE if self.passed else FAIL_STYLE
        parts = [f'<div class="verify-check"><p><b>verify</b> <code>{_e(self.target)}</code>: '
                 f'<span style="{style};padding:0 4px">{_e(summary_counts(self.results))}</span></p>']
        parts += [_target_html(r) for r in self.results]
        parts.append(f"<p><small>{_e(self.limits_line)}</small></p></div>")
        return "\n".join(parts)


def _e(text):
    return html.escape(str(text), quote=True)


def _num(x):
    return "-" if x is None else "nan" if x != x else f"{x:.1e}"


def _first_failure(result, quantity):
    """': rel err 8.0e+00 in case 'random' (against the course)', or the row's note, or ''."""
    bad = next((r for r in result.rows if r.quantity == quantity and not r.passed), None)
    if bad is None:
        return ""
    against = "against the course" if bad.check == "course" else "against your own loss"
    return f": {bad.note or f'rel err {_num(bad.max_rel)} in case {bad.case!r} ({against})'}"


def _target_html(result):
    """One target: its status, the table of cases and quantities, the failing quantities with their hints."""
    from verify.kinds import KINDS
    from verify.report import COLUMNS, rows_by_case

    style = PASS_STYLE if result.status == "PASS" else FAIL_STYLE
    api = f" ({_e(result.kind)}: {_e(KINDS[result.kind].api)})" if result.kind else ""
    parts = [f'<p><span style="{style};padding:0 4px"><b>{_e(result.status)}</b></span> '
             f"<code>{_e(result.where)}:{_e(result.name)}</code>{api}</p>"]
    if result.message:
        parts.append(f"<p>{_e(result.message)}</p>")
    if result.convention_note:
        parts.append(f"<p>convention {_e(result.convention_note)}</p>")
    table = rows_by_case(result)
    if table:
        parts.append(f"<table><tr><th>case</th><th>quantity</th><th>{_e(COLUMNS['course'])}<br>(autograd)</th>"
                     f"<th>{_e(COLUMNS['own'])}<br>(finite differences)</th><th>result</th><th></th></tr>")
        for (case, q), checks in table.items():
            course, own = checks.get("course"), checks.get("own")
            ok = all(r.passed for r in checks.values())
            note = "; ".join(r.note for r in checks.values() if r.note)
            parts.append(f'<tr style="{PASS_STYLE if ok else FAIL_STYLE}"><td>{_e(case)}</td><td>{_e(q)}</td>'
                         f"<td>{_num(course.max_rel if course else None)}</td>"
                         f"<td>{_num(own.max_rel if own else None)}</td><td>{'PASS' if ok else 'FAIL'}</td>"
                         f"<td>{_e(note)}</td></tr>")
        parts.append("</table>")
    items = [f"<li><b>FAIL {_e(q)}</b>{_e(_first_failure(result, q))}"
             + "".join(f"<br>hint: {_e(h)}" for h in result.hints.get(q, [])) + "</li>"
             for q in result.failed_quantities]
    items += [f"<li>note: {_e(n)}</li>" for n in result.notes]
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    if result.output_lines:
        shown = "\n".join(result.output_head)
        parts.append(f"<details><summary>the code printed {result.output_lines:,} line(s)</summary>"
                     f"<pre>{_e(shown)}</pre></details>")
    return "\n".join(parts)
