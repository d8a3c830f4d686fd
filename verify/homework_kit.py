"""``python -m verify homework DIR``: write the PyTorch homework kit into DIR (a new or empty folder).

    python -m verify homework mykit/      # softmax_torch.py, two_layer_torch.py, lit_two_layer.py, homework.ipynb

The kit ships inside the package (verify/homework/, package data), so it works from a pip install. Its files keep
cs231n's names, signatures and TODO banners; homework.ipynb walks through them and checks each TODO with
``check(...)``. A file already in DIR is never overwritten unless --force is given.
"""
import argparse
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

KIT_FILES = ("softmax_torch.py", "two_layer_torch.py", "lit_two_layer.py", "homework.ipynb")  # in reading order


def kit_source(name):
    """The packaged kit file ``name`` (a Traversable: read_bytes())."""
    return resources.files("verify").joinpath("homework", name)


def _write_atomic(path, data):
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def write_kit(directory, force=False):
    """Write the kit's files into directory (made if missing); returns their paths. Raises FileExistsError naming
    the files already there (unless force) and NotADirectoryError when directory is a file."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file; give a folder")
    taken = [name for name in KIT_FILES if (directory / name).exists()]
    if taken and not force:
        raise FileExistsError(f"{directory} already holds {', '.join(taken)}; give a new folder, or --force to "
                              "replace them (your code in them is lost)")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in KIT_FILES:
        _write_atomic(directory / name, kit_source(name).read_bytes())
        written.append(directory / name)
    return written


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m verify homework",
                                     description="Write the PyTorch homework kit (cs231n's softmax and two-layer net "
                                                 "in PyTorch, with TODOs that verify checks) into DIR.")
    parser.add_argument("dir", metavar="DIR", help="a new or empty folder")
    parser.add_argument("--force", action="store_true", help="replace kit files already in DIR")
    args = parser.parse_args(argv)
    try:
        written = write_kit(args.dir, force=args.force)
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        print(f"error: DIR: {e}", file=sys.stderr)
        return 2
    print(f"wrote the PyTorch homework kit to {args.dir}: {', '.join(p.name for p in written)}")
    print(f"next: cd {args.dir} and open homework.ipynb (jupyter lab homework.ipynb); fill in each TODO, then run "
          "its check(...) cell. From a shell: python -m verify --target two_layer_torch.py")
    return 0
