"""Load a module of this repository as it was at another git revision, for benchmarks that compare a
change with what it replaced in one run. Imports nothing heavy (the JAX benchmarks use it too)."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_at(rev: str, path: str):
    """The file ``path`` (relative to the repository root) at ``rev``, imported as a module."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    name = f"{Path(path).stem}_{rev}"
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
