"""The assignment spec: which targets a submission must hold, their points, visibility and the seed.

A small YAML file (``--assignment FILE``), or the name of one shipped in verify/assignments/::

    name: cs231n assignment 1 (2017-2019)
    seed: 1234                    # optional: each student's cases are drawn from (seed, their folder's name)
    timeout: 60                   # optional: seconds per target; max_memory: 4G
    visibility: visible           # optional default for every target
    targets:
      - file: softmax.py          # a file name, found at any depth, or a path suffix like cs231n/layers.py
        name: softmax_loss_naive  # what the file defines
        points: 10
      - file: neural_net.py
        name: TwoLayerNet
        points: 20
        partial: {scores: 4, loss: 4, W1: 3, b1: 3, W2: 3, b2: 3}   # optional: points per quantity, summing to points
        visibility: after_due_date    # visible | hidden | after_due_date | after_published

    spec = load_spec("assignment.yaml")     # an Assignment, or SpecError with one line per mistake
    spec = default_spec([Path("class/ada"), ...])   # cs231n assignment 1 of the course year the files show
    points = spec.targets[0].score(result)   # a TargetResult's points under this target

Imports nothing heavy (PyYAML is read only when a spec is loaded).
"""
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from verify.kinds import KINDS, KNOWN_NAMES

SHIPPED = Path(__file__).resolve().parent / "assignments"
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
TOP_KEYS = {"name", "seed", "timeout", "max_memory", "visibility", "targets"}
TARGET_KEYS = {"file", "name", "points", "partial", "visibility"}
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
FILE_KINDS = {"neural_net.py": "two_layer", "fc_net.py": "fc_net"}  # where TwoLayerNet's API is told by its file


class SpecError(Exception):
    """An assignment spec that cannot be used; ``lines``: one line per mistake."""

    def __init__(self, lines):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass
class Target:
    """One expected target: ``file`` (a name or a path suffix), ``name``, points, optional points per quantity."""

    file: str
    name: str
    points: float
    visibility: str = "visible"
    partial: dict = field(default_factory=dict)

    @property
    def label(self):
        return f"{self.file}:{self.name}"

    def score(self, result):
        """Points earned: all of them for a PASS; for a FAIL with ``partial``, the points of every quantity that
        was computed and passed in every case; 0 for ERROR, MISSING and a FAIL without partial credit."""
        if result.status == "PASS":
            return self.points
        if result.status != "FAIL" or not self.partial or result.message:
            return 0.0
        failed = set(result.failed_quantities)
        ran = {r.quantity for r in result.rows}
        return float(sum(p for q, p in self.partial.items() if q in ran and q not in failed))


@dataclass
class Assignment:
    name: str
    targets: list
    seed: int = None
    timeout: float = None
    max_memory: int = None
    source: str = ""

    @property
    def max_points(self):
        return float(sum(t.points for t in self.targets))

    @property
    def files(self):
        """The expected files, in the order the spec first names them."""
        return list(dict.fromkeys(t.file for t in self.targets))


def student_seed(seed, folder_name):
    """The seed of one student's cases: (the spec's seed, their folder's name) through SHA-256, stable across
    runs and machines (Python's hash() is salted per process)."""
    digest = hashlib.sha256(f"{int(seed)}:{folder_name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _size(value):
    m = SIZE.match(str(value))
    return None if not m else int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


def _quantities(target):
    """The quantities a target can be scored on, or None when its kind is not known from its name and file."""
    kind = KNOWN_NAMES.get(target["name"], "")
    if kind is None:
        kind = FILE_KINDS.get(Path(str(target.get("file", ""))).name)
    return set(KINDS[kind].quantities) if kind in KINDS else None


def _check_target(i, t, default_visibility, errors):
    where = f"targets[{i}]"
    if not isinstance(t, dict):
        errors.append(f"{where}: expected a mapping with file, name and points, got {t!r}")
        return None
    errors += [f"{where}: unknown key {k!r} (expected: {', '.join(sorted(TARGET_KEYS))})"
               for k in t if k not in TARGET_KEYS]
    file, name, points = t.get("file"), t.get("name"), t.get("points")
    if not isinstance(file, str) or not file.endswith(".py") or file.startswith("/") or ".." in Path(file).parts:
        errors.append(f"{where}.file: expected a relative .py path like softmax.py, got {file!r}")
    if not isinstance(name, str) or not DOTTED.match(name):
        errors.append(f"{where}.name: expected a name the file defines, like softmax_loss_naive, got {name!r}")
    if not _number(points) or points < 0:
        errors.append(f"{where}.points: expected a number >= 0, got {points!r}")
    visibility = t.get("visibility", default_visibility)
    if visibility not in VISIBILITIES:
        errors.append(f"{where}.visibility: expected one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    partial = t.get("partial") or {}
    if not isinstance(partial, dict):
        errors.append(f"{where}.partial: expected a mapping of quantity: points, got {partial!r}")
        partial = {}
    known = _quantities(t) if isinstance(name, str) else None
    for q, p in partial.items():
        if known is not None and q not in known:
            errors.append(f"{where}.partial: {name} has no quantity {q!r} (it has: {', '.join(sorted(known))})")
        if not _number(p) or p < 0:
            errors.append(f"{where}.partial.{q}: expected a number >= 0, got {p!r}")
    if partial and _number(points) and all(_number(p) for p in partial.values()) \
            and abs(sum(partial.values()) - points) > 1e-9:
        errors.append(f"{where}.partial: the quantities' points add up to {sum(partial.values()):g}, "
                      f"not to the target's {points:g} points")
    return Target(file, name, float(points) if _number(points) else 0.0, visibility, dict(partial))


def parse_spec(data, source="<spec>"):
    """An Assignment from a spec's parsed YAML; SpecError listing every mistake, one line each."""
    if not isinstance(data, dict):
        raise SpecError([f"{source}: expected a mapping with a 'targets' list, got {type(data).__name__}"])
    errors = [f"unknown key {k!r} (expected: {', '.join(sorted(TOP_KEYS))})" for k in data if k not in TOP_KEYS]
    seed, timeout, memory = data.get("seed"), data.get("timeout"), data.get("max_memory")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        errors.append(f"seed: expected a whole number from 0 to 2**63 - 1, got {seed!r}")
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        errors.append(f"timeout: expected a positive number of seconds, got {timeout!r}")
    if memory is not None and _size(memory) is None:
        errors.append(f"max_memory: expected a size like 4G or 512M, got {memory!r}")
    visibility = data.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        errors.append(f"visibility: expected one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    raw = data.get("targets")
    if not isinstance(raw, list) or not raw:
        errors.append(f"targets: expected a non-empty list of targets (file, name, points), got {raw!r}")
        raw = []
    targets = [_check_target(i, t, visibility if visibility in VISIBILITIES else "visible", errors)
               for i, t in enumerate(raw)]
    labels = [t.label for t in targets if t is not None]
    errors += [f"targets: {label} is listed {labels.count(label)} times" for label in sorted(set(labels))
               if labels.count(label) > 1]
    if errors:
        raise SpecError([f"{source}: {e}" for e in errors])
    return Assignment(str(data.get("name") or Path(source).stem), targets, seed,
                      float(timeout) if timeout is not None else None,
                      _size(memory) if memory is not None else None, source)


def shipped_specs():
    """{name: path} of the specs shipped in verify/assignments/."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def load_spec(spec):
    """An Assignment from a YAML file, or from the name of a shipped spec (e.g. cs231n-a1-2016-2019)."""
    import yaml

    path = Path(spec)
    if not path.is_file() and spec in shipped_specs():
        path = shipped_specs()[spec]
    if not path.is_file():
        raise SpecError([f"{spec}: no such file, and not a shipped spec (shipped: "
                         f"{', '.join(shipped_specs())})"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"{spec}: not valid YAML{at}: {getattr(e, 'problem', None) or e}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([f"{spec}: cannot be read ({type(e).__name__}: {e})"]) from None
    return parse_spec(data, str(spec))


def detect_year(folders):
    """(shipped spec name, why) for submissions: fc_net.py (assignment 1 from 2020) or neural_net.py (2016-2019),
    whichever more submissions hold; 2016-2019 when none holds either."""
    counts = {"fc_net.py": 0, "neural_net.py": 0}
    for folder in folders:
        for name in counts:
            if any(_walk_names(folder, name)):
                counts[name] += 1
    if counts["fc_net.py"] > counts["neural_net.py"]:
        return "cs231n-a1-2020", f"{counts['fc_net.py']} of {len(folders)} submission(s) hold fc_net.py"
    return "cs231n-a1-2016-2019", (f"{counts['neural_net.py']} of {len(folders)} submission(s) hold neural_net.py"
                              if counts["neural_net.py"] else "no submission holds fc_net.py or neural_net.py")


def _walk_names(folder, name):
    try:
        yield from (p for p in Path(folder).rglob(name) if not p.is_symlink())
    except OSError:
        return


def default_spec(folders):
    """(Assignment, one line saying which and why): cs231n assignment 1 of the course year the folders show."""
    name, why = detect_year(folders)
    spec = load_spec(name)
    return spec, f"assignment: {spec.name} (detected: {why}; choose with --assignment)"
