"""The ``rgbt`` command line: one entry point that assembles each package's commands.

Each package owns its sub-commands (``fusion/commands.py``, ``calibration/cli.py``, ``detection/cli.py``,
``fusion/experiment/cli.py``); they share the parser and dispatcher of :mod:`fusion.commandline`. Every user error
(see :mod:`fusion.errors`) prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys

from calibration import cli as calibration_cli
from detection import cli as detection_cli
from fusion import commands
from fusion.commandline import OneLineParser, dispatch
from fusion.experiment import cli as experiment_cli
from fusion.perf import set_threads, tune_allocator

# The order of `rgbt --help`: the fusion pipeline first, then the stages around it.
SUBCOMMANDS = (
    commands.add_fuse,
    commands.add_evaluate,
    commands.add_demo,
    calibration_cli.add_calibrate,
    calibration_cli.add_register,
    commands.add_export,
    commands.add_training,
    detection_cli.add_parser,
    experiment_cli.add_parser,
    commands.add_methods,
)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="rgbt", description="RGB-thermal image fusion toolkit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in SUBCOMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_allocator()  # fewer page faults for full-image tensor code (fusion/perf.py)
    set_threads()  # intra-op threads from RGBT_THREADS, OMP_NUM_THREADS or this process's CPU affinity
    if argv and argv[0] == "detect":  # downstream detection has its own sub-commands
        return detection_cli.main(list(argv[1:]))
    return dispatch(argv, "rgbt", build_parser(), commands.TRAIN_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
