"""Regenerate the code blocks of docs/bridge.md from marked regions of the sources, or check they are current.

Usage::

    python docs/build_bridge.py           # rewrite the doc's code blocks from the sources
    python docs/build_bridge.py --check   # exit 1 and name every stale block; the doc is not touched

In a source file a region is the lines between two marker comments, each on its own line::

    # [bridge:NAME]
    ...code...
    # [/bridge:NAME]

Regions may nest; marker lines are dropped from the code shown, which is dedented and captioned with its file
and enclosing function. In the doc, a block is an HTML comment naming the region and its file, followed by a
fenced block that this script owns (write the comment alone and the script adds the block)::

    <!-- bridge:NAME file=PATH -->
    ```python
    ...
    ```

Everything else in the doc (the prose) is left exactly as written. A missing file, a missing or unbalanced
marker or a malformed comment stops the script with exit status 2 and a message naming it.
"""
import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = Path("docs/bridge.md")
SOURCE_DIRS = ("reference_numpy", "torch_impl", "train", "docs/ladder")  # where markers may live (balance check)

MARKER = re.compile(r"^\s*# \[(/?)bridge:([A-Za-z0-9_.-]+)\]\s*$")
DIRECTIVE = re.compile(r"^<!-- bridge:([A-Za-z0-9_.-]+) file=(\S+) -->\s*$")
DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")
FENCE = "```"


class BridgeError(Exception):
    """A broken marker, a missing region or file, a malformed doc comment."""


@dataclass
class Region:
    name: str
    path: str  # relative to the root, with forward slashes
    start: int  # 1-based line number of the opening marker
    lines: list  # the source lines between the markers (nested markers included)
    owner: str  # the enclosing function, "Class.method", or "" at module level

    def code(self):
        """The region as shown in the doc: nested markers dropped, dedented, captioned."""
        body = textwrap.dedent("\n".join(line for line in self.lines if not MARKER.match(line))).strip("\n")
        caption = f"# {self.path}" + (f", {self.owner}" if self.owner else "")
        return f"{caption}\n{body}"


def _owner(lines, index):
    """Name of the def (and class) enclosing line ``index``, by indentation."""
    indent = len(lines[index]) - len(lines[index].lstrip())
    names = []
    for line in reversed(lines[:index]):
        m = DEF.match(line)
        if m and len(m.group(1)) < indent:
            names.append(m.group(3))
            indent = len(m.group(1))
    return ".".join(reversed(names))


def parse_regions(text, path):
    """{name: Region} for each marker pair in ``text`` (the source of ``path``); BridgeError if unbalanced."""
    lines = text.split("\n")
    regions, stack = {}, []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if m is None:
            if "[bridge:" in line or "[/bridge:" in line:
                raise BridgeError(f"{path}:{i + 1}: malformed marker {line.strip()!r}; "
                                  "expected '# [bridge:NAME]' or '# [/bridge:NAME]' on its own line")
            continue
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if name in regions or name in (n for n, _ in stack):
                raise BridgeError(f"{path}:{i + 1}: region {name!r} is opened twice")
            stack.append((name, i))
            continue
        if not stack or stack[-1][0] != name:
            open_name = stack[-1][0] if stack else None
            raise BridgeError(f"{path}:{i + 1}: '[/bridge:{name}]' does not close the innermost open region "
                              f"({open_name!r})")
        _, start = stack.pop()
        code_lines = [j for j in range(start + 1, i) if lines[j].strip() and not MARKER.match(lines[j])]
        if not code_lines:
            raise BridgeError(f"{path}:{start + 1}: region {name!r} is empty")
        regions[name] = Region(name, path, start + 1, lines[start + 1:i], _owner(lines, code_lines[0]))
    if stack:
        name, start = stack[-1]
        raise BridgeError(f"{path}:{start + 1}: region {name!r} is never closed ('# [/bridge:{name}]')")
    return regions


def read_regions(root, path, cache=None):
    """The regions of the source file ``root / path``, parsed once per cache."""
    cache = {} if cache is None else cache
    if path not in cache:
        file = Path(root) / path
        if not file.is_file():
            raise BridgeError(f"source file {path!r} not found under {root}")
        cache[path] = parse_regions(file.read_text(), path)
    return cache[path]


def marked_sources(root):
    """{path: {name: Region}} for every .py file under SOURCE_DIRS that contains a marker."""
    found = {}
    for d in SOURCE_DIRS:
        for file in sorted((Path(root) / d).rglob("*.py")):
            text = file.read_text()
            if "bridge:" in text:
                rel = file.relative_to(root).as_posix()
                found[rel] = parse_regions(text, rel)
    return found


@dataclass
class Block:
    name: str
    path: str
    doc_line: int  # 1-based line of the <!-- bridge: --> comment
    old: str | None  # the fenced block now in the doc, or None when there is none yet
    new: str  # the fenced block the sources give

    def label(self):
        return f"bridge:{self.name} file={self.path} (docs line {self.doc_line})"


def build(doc_text, root):
    """(new doc text, [Block]): every block after a <!-- bridge:NAME file=PATH --> comment, regenerated."""
    lines = doc_text.split("\n")
    out, blocks, cache, i = [], [], {}, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        m = DIRECTIVE.match(line)
        if m is None:
            if line.lstrip().startswith("<!-- bridge:"):
                raise BridgeError(f"doc line {i}: malformed comment {line!r}; "
                                  "expected '<!-- bridge:NAME file=PATH -->'")
            continue
        name, path = m.groups()
        directive_line = i
        regions = read_regions(root, path, cache)
        if name not in regions:
            raise BridgeError(f"doc line {i}: region {name!r} not found in {path} (known: {sorted(regions)})")
        new = f"{FENCE}python\n{regions[name].code()}\n{FENCE}"
        old = None
        if i < len(lines) and lines[i].startswith(FENCE):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(FENCE)), None)
            if end is None:
                raise BridgeError(f"doc line {i + 1}: code block of bridge:{name} is never closed")
            old = "\n".join(lines[i:end + 1])
            i = end + 1
        out.extend(new.split("\n"))
        blocks.append(Block(name, path, directive_line, old, new))
    return "\n".join(out), blocks


def stale_blocks(doc_path, root):
    """Labels of the doc's blocks that differ from the sources (empty when the doc is current)."""
    _, blocks = build(Path(doc_path).read_text(), root)
    return [b.label() for b in blocks if b.old != b.new]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 naming stale blocks; do not write")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--doc", type=Path, default=None, help="the doc (default: ROOT/docs/bridge.md)")
    args = parser.parse_args(argv)
    doc = args.doc if args.doc is not None else args.root / DOC
    try:
        if not doc.is_file():
            raise BridgeError(f"--doc: {str(doc)!r} does not exist")
        text = doc.read_text()
        new_text, blocks = build(text, args.root)
    except BridgeError as e:
        print(f"build_bridge: error: {e}", file=sys.stderr)
        return 2
    stale = [b.label() for b in blocks if b.old != b.new]
    if args.check:
        for label in stale:
            print(f"stale: {label}", file=sys.stderr)
        if stale:
            print("the doc is out of date: run python docs/build_bridge.py", file=sys.stderr)
            return 1
        print(f"{doc}: {len(blocks)} blocks, all current")
        return 0
    if new_text != text:
        doc.write_text(new_text)
    print(f"{doc}: {len(blocks)} blocks, {len(stale)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
