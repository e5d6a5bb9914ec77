"""The ``fer`` command: ``fer predict|export|serve|smoke|retrain|compare|...``. No pipeline stage
loads this module (stages run through ``stage.run_stage``)."""

from __future__ import annotations

import argparse

from .stage import one_line_errors


def main(argv: list[str] | None = None) -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow info/warning lines in command output
    parser = argparse.ArgumentParser(prog="fer", description="Facial emotion recognition tools")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import experiments, export, monitoring, photo_eval, predict_cli, release, serve, workflow

    for module in (predict_cli, photo_eval, serve, monitoring, export, release, workflow, experiments):
        module.add_parser(sub)
    args = parser.parse_args(argv)
    with one_line_errors("interrupted"):
        args.func(args)


if __name__ == "__main__":
    main()
