"""What every package's commands share: the one-line-error parser, the dispatcher and the checks of common flags.

A leaf: it imports no command module (``fusion/cli.py`` assembles ``fusion/commands.py``, ``calibration/cli.py``,
``detection/cli.py`` and ``fusion/experiment/cli.py``, which all import this), so any of them can use it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

from fusion.errors import RgbtError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rgbt fuse: error: ...; see rgbt fuse --help``), exit 2, and a
    flag must be spelt out in full (no silent prefix matching: ``--over`` is not ``--overwrite``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def crash_report(prog: str, argv: list[str], exc: BaseException) -> str:
    """Write the traceback of an unexpected error, with the command line and versions, to a report file; return
    its path (or a note that it could not be written). The user sees one line; a bug report gets the whole."""
    import platform
    import tempfile
    import time
    import traceback

    text = (
        f"{prog} {' '.join(argv)}\n{time.strftime('%Y-%m-%d %H:%M:%S')}, python {platform.python_version()}, "
        f"torch {torch.__version__}, {platform.platform()}\n\n" + "".join(traceback.format_exception(exc))
    )
    try:
        fd, path = tempfile.mkstemp(prefix="rgbt-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return "not written: the temporary folder is not writable"


def _guarded(prog: str, command: str, argv: list[str], run: Callable[[], object]) -> int:
    """Run one command: expected errors are one line and their exit status (2, or 3 for an unreliable result);
    anything else is one line naming a report file, exit 1 (``RGBT_DEBUG=1``: the traceback instead)."""
    try:
        run()
    except RgbtError as e:
        print(f"{prog} {command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished images are complete, rerun to continue", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen input: never a bare traceback
        if os.environ.get("RGBT_DEBUG", "") not in ("", "0"):
            raise
        what = " ".join(str(e).split())[:200] or "no message"
        report = crash_report(prog, argv, e)
        print(
            f"{prog} {command}: unexpected error: {type(e).__name__}: {what} (full report: {report}; "
            "RGBT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def dispatch(
    argv: list[str], prog: str, parser: argparse.ArgumentParser, lightning: tuple[str, ...], datamodule_class=None
) -> int:
    """Run one command line: LightningCLI for the ``lightning`` sub-commands (with ``datamodule_class``),
    ``parser`` for the rest; errors become one line and the exit status."""
    if argv and argv[0] in lightning:  # LightningCLI owns these arguments
        from fusion.train.cli import main as train_main

        return _guarded(
            prog, argv[0], argv, lambda: train_main(list(argv), datamodule_class=datamodule_class, prog=prog)
        )
    args = parser.parse_args(argv)
    return _guarded(prog, args.command, argv, lambda: args.func(args))


def parse_device(name: str) -> str:
    """``--device``: auto (a GPU if present), cpu, cuda or cuda:N, checked against what is visible."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise RgbtError(f"--device {name}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RgbtError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise RgbtError(f"--device {name}: unsupported here; use cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RgbtError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible; use cuda:0")
    return name


MIN_TILE = 64  # smaller tiles are mostly context: a network run per few pixels would never finish


def parse_tile(tile: int | None) -> int | None:
    """``--tile``: None (automatic), 0 (never) or at least :data:`MIN_TILE`."""
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise RgbtError(f"--tile {tile}: use 0 (never tile) or at least {MIN_TILE} pixels")
    return tile


def check_csv_target(path: str, overwrite: bool, inputs: list[str] = ()) -> None:
    """Fail before the slow part if ``--csv`` cannot be written: a folder, an existing file without
    ``--overwrite``, a file or folder among the ``inputs``, or a folder we may not write in."""
    from fusion.guard import check_outputs

    check_outputs({"--csv": path}, inputs, overwrite)
