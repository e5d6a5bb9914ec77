"""Command line: ``fer predict|export|serve`` and the error handling every stage entry point shares."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from .errors import FerError


def run_stage(stage: str, fn: Callable[[dict], object]) -> None:
    """Validate params.yaml, then run ``fn`` with the params ``stage`` reads (``params.STAGE_PARAMS``).
    A user-facing error (a bad parameter included) becomes one line on stderr and exit status 1,
    before any output is touched."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from .params import for_stage

        fn(for_stage(stage))
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: no partial outputs were written", file=sys.stderr)
        sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fer", description="Facial emotion recognition tools")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import export, predict, serve, workflow

    for module in (predict, serve, export, workflow):
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
