"""docs/bridge.md shows code taken from marked source regions: it is current, it goes stale when a marked line
changes, and the markers are sound. Run: python -m pytest tests/test_docs.py -q

Regenerate the doc with ``python docs/build_bridge.py`` when the first test fails.
"""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bridge.md"

_spec = importlib.util.spec_from_file_location("build_bridge", ROOT / "docs" / "build_bridge.py")
bb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bb)

pytestmark = pytest.mark.docs

TWINS = [("reference_numpy/softmax.py", "torch_impl/softmax.py"),
         ("reference_numpy/neural_net.py", "torch_impl/neural_net.py")]
NUMPY_ONLY = {"net-update"}  # TwoLayerNet.train has no torch twin (the optimizer does the update)


def doc_directives(text):
    """[(name, path)] of the doc's <!-- bridge:NAME file=PATH --> comments."""
    return [m.groups() for m in map(bb.DIRECTIVE.match, text.split("\n")) if m]


def copy_tree(tmp_path):
    """A copy of the doc, its generator's inputs and every marked source under tmp_path; returns the root."""
    root = tmp_path / "repo"
    paths = {path for _, path in doc_directives(DOC.read_text())} | set(bb.marked_sources(ROOT))
    for rel in [*paths, "docs/bridge.md"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    return root


def edit(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def test_doc_is_current():
    stale = bb.stale_blocks(DOC, ROOT)
    assert not stale, "docs/bridge.md is out of date; run python docs/build_bridge.py. Stale: " + "; ".join(stale)


def test_every_name_in_the_doc_exists_and_every_twin_pair_is_shown():
    directives = doc_directives(DOC.read_text())
    assert len(directives) >= 20
    for name, path in directives:
        regions = bb.read_regions(ROOT, path)
        assert name in regions, f"docs/bridge.md names bridge:{name} in {path}, which has {sorted(regions)}"
    shown = set(directives)
    for numpy_file, torch_file in TWINS:
        for name in bb.read_regions(ROOT, numpy_file):
            assert (name, numpy_file) in shown, f"region {name} of {numpy_file} is marked but not shown"
            if name not in NUMPY_ONLY:
                assert (name, torch_file) in shown, f"region {name} of {torch_file} is marked but not shown"


def test_the_doc_links_every_rung_of_the_ladders():
    text = DOC.read_text()
    rungs = sorted((ROOT / "docs" / "ladder").glob("*.py"))
    missing = [path.name for path in rungs if f"](ladder/{path.name})" not in text]
    assert not missing, f"docs/bridge.md does not link {missing}"


def test_markers_are_balanced_and_placed_identically_in_the_twins():
    marked = bb.marked_sources(ROOT)  # raises BridgeError on an unbalanced, duplicated or malformed marker
    for numpy_file, torch_file in TWINS:
        assert numpy_file in marked and torch_file in marked

        def marker_lines(path):
            return [line.strip() for line in (ROOT / path).read_text().split("\n")
                    if bb.MARKER.match(line) and bb.MARKER.match(line).group(2) not in NUMPY_ONLY]

        assert marker_lines(numpy_file) == marker_lines(torch_file), f"{numpy_file} and {torch_file} differ"
        for name, region in marked[numpy_file].items():
            if name not in NUMPY_ONLY:
                other = marked[torch_file][name]
                assert region.owner == other.owner, f"{name}: in {region.owner} vs {other.owner}"


def test_shown_code_has_no_markers_and_names_its_source():
    _, blocks = bb.build(DOC.read_text(), ROOT)
    for block in blocks:
        assert "bridge:" not in block.new, block.label()
        assert block.new.split("\n")[1].startswith(f"# {block.path}"), block.label()


def test_editing_a_marked_line_makes_exactly_that_block_stale_until_regenerated(tmp_path, capsys):
    root = copy_tree(tmp_path)
    doc = root / "docs" / "bridge.md"
    assert bb.main(["--check", "--root", str(root)]) == 0
    edit(root / "torch_impl/softmax.py", "dW = X.T @ dscores + 2 * reg * W",
         "dW = X.T @ dscores + 2.0 * reg * W")
    capsys.readouterr()
    assert bb.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    stale = bb.stale_blocks(doc, root)
    assert len(stale) == 1 and stale[0].startswith("bridge:softmax-dW file=torch_impl/softmax.py"), stale
    assert stale[0] in err
    before = doc.read_text()
    assert bb.main(["--root", str(root)]) == 0
    after = doc.read_text()
    assert "dW = X.T @ dscores + 2.0 * reg * W" in after
    assert bb.main(["--check", "--root", str(root)]) == 0
    # only that block changed: the prose and every other block are byte-identical
    changed = [line for line in after.split("\n") if line not in before.split("\n")]
    assert changed == ["dW = X.T @ dscores + 2.0 * reg * W  # (D, C)  formula (5): dW = X^T (P - Y) / N + 2 reg W"]


def test_editing_outside_the_regions_leaves_the_doc_current(tmp_path):
    root = copy_tree(tmp_path)
    source = root / "reference_numpy/softmax.py"
    first, rest = source.read_text().split("\n", 1)  # the module docstring's first line: outside every region
    source.write_text(first + " Edited.\n" + rest)
    assert bb.stale_blocks(root / "docs" / "bridge.md", root) == []


def test_a_missing_marker_fails_loudly(tmp_path, capsys):
    root = copy_tree(tmp_path)
    edit(root / "torch_impl/neural_net.py", "    # [/bridge:net-relu-mask]\n", "")
    assert bb.main(["--check", "--root", str(root)]) == 2
    assert "net-relu-mask" in capsys.readouterr().err
    edit(root / "torch_impl/neural_net.py", "    # [bridge:net-relu-mask]\n", "")
    assert bb.main(["--root", str(root)]) == 2
    assert re.search(r"region 'net-relu-mask' not found in torch_impl/neural_net.py", capsys.readouterr().err)


def test_a_comment_alone_gets_its_block_and_prose_is_kept(tmp_path):
    root = tmp_path
    (root / "m.py").write_text("def f(x):\n    # [bridge:outer]\n    y = x + 1  # one\n    # [bridge:inner]\n"
                               "    z = y * 2  # two\n    # [/bridge:inner]\n    # [/bridge:outer]\n    return z\n")
    doc = root / "d.md"
    doc.write_text("Some *prose*.\n<!-- bridge:outer file=m.py -->\nmore prose\n<!-- bridge:inner file=m.py -->\n"
                   "```python\nstale\n```\nend\n")
    assert bb.main(["--root", str(root), "--doc", str(doc)]) == 0
    assert doc.read_text() == (
        "Some *prose*.\n<!-- bridge:outer file=m.py -->\n"
        "```python\n# m.py, f\ny = x + 1  # one\nz = y * 2  # two\n```\n"
        "more prose\n<!-- bridge:inner file=m.py -->\n```python\n# m.py, f\nz = y * 2  # two\n```\nend\n")


@pytest.mark.parametrize("source, message", [
    ("# [bridge:a]\nx = 1\n", "region 'a' is never closed"),
    ("x = 1\n# [/bridge:a]\n", "does not close the innermost open region (None)"),
    ("# [bridge:a]\n# [bridge:b]\nx = 1\n# [/bridge:a]\n# [/bridge:b]\n",
     "does not close the innermost open region ('b')"),
    ("# [bridge:a]\nx = 1\n# [/bridge:a]\n# [bridge:a]\ny = 2\n# [/bridge:a]\n", "region 'a' is opened twice"),
    ("# [bridge:a]\n# [/bridge:a]\n", "region 'a' is empty"),
    ("x = 1  # [bridge:a]\n", "malformed marker"),
    ("# [bridge: a]\nx = 1\n", "malformed marker"),
])
def test_broken_markers_are_named(source, message):
    with pytest.raises(bb.BridgeError, match=re.escape(message)) as err:
        bb.parse_regions(source, "src.py")
    assert str(err.value).startswith("src.py:")


def test_the_readme_is_a_short_door_whose_links_all_work():
    """README.md stays a door (150 lines at most); every relative link in it names a file of this clone."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 8
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    assert "../shared" not in text  # paths work from any clone
