"""The runner every stage entry point (``pipeline/<stage>.py``) shares: params checked, the
``name=path`` arguments that dvc.yaml's ``cmd`` passes checked against the stage function, and a
user-facing error turned into one line. The ``fer`` command lives in ``cli``; keeping the two
apart means an edit of the command reruns no stage (no stage depends on ``cli.py``)."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator

from .errors import FerError, PeerLost


def cmd_paths(cmd: str) -> dict[str, str]:
    """The ``name=path`` arguments of a stage command line."""
    import shlex

    return dict(a.split("=", 1) for a in shlex.split(cmd) if "=" in a)


def declared_paths(stage: str, dvc_yaml: str | os.PathLike = "dvc.yaml") -> dict[str, str]:
    """The ``name=path`` arguments of a stage's ``cmd`` in dvc.yaml, for code that reads a stage's
    outputs (workflows, tests) without writing the paths again."""
    import yaml

    with open(dvc_yaml) as fh:
        return cmd_paths(yaml.safe_load(fh)["stages"][stage]["cmd"])


def stage_paths(stage: str, fn: Callable, args: list[str]) -> dict[str, str]:
    """The ``name=path`` arguments that dvc.yaml's ``cmd`` passes to a stage, checked against the
    keyword-only parameters of ``fn`` (each one required, no other allowed). dvc.yaml is the one
    place where a stage's input and output paths are written."""
    wanted = [p.name for p in inspect.signature(fn).parameters.values()
              if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    given = dict(a.split("=", 1) if "=" in a else (a, "") for a in args)
    how = f"dvc.yaml's cmd gives them: run `dvc repro {stage}`"
    unknown = sorted(k for k in given if k not in wanted)
    if unknown:
        raise FerError(f"pipeline/{stage}.py: unknown argument {unknown[0]}; it takes "
                       + " ".join(f"{k}=PATH" for k in wanted) + f" ({how})")
    missing = [k for k in wanted if not given.get(k)]
    if missing:
        raise FerError(f"pipeline/{stage}.py: missing " + " ".join(f"{k}=PATH" for k in missing) + f" ({how})")
    return given


@contextlib.contextmanager
def one_line_errors(interrupted: str) -> Iterator[None]:
    """A user-facing error (``FerError``) inside the block becomes one line on stderr and exit
    status 1; Ctrl-C prints ``interrupted`` and exits 130 (no traceback either way)."""
    try:
        yield
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, PeerLost):   # skip JAX's shutdown barrier, which waits for the lost peer
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        sys.exit(1)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)


def run_stage(stage: str, fn: str | Callable[..., object]) -> None:
    """Validate params.yaml and the path arguments, then run ``fn(params, **paths)`` with the
    params ``stage`` reads (``params.STAGE_PARAMS``). ``fn``: the stage function, or its
    ``"module:function"`` name, imported only once params.yaml is valid (a mistake in it is then
    reported before TensorFlow loads). A user-facing error (a bad parameter or a missing path
    included) becomes one line on stderr and exit status 1, before any output is touched."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with one_line_errors("interrupted: no partial outputs were written"):
        from .params import for_stage

        params = for_stage(stage)
        if isinstance(fn, str):
            import importlib

            module, _, name = fn.partition(":")
            fn = getattr(importlib.import_module(module), name)
        fn(params, **stage_paths(stage, fn, sys.argv[1:]))
