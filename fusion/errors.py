"""User-facing errors.

Anything a user can cause (a missing file, unpaired names, a corrupt image, a bad option) raises
:class:`RgbtError` with one line that names the file and says what to do. The CLI prints that line and
exits with code 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class RgbtError(Exception):
    """An error caused by the user's input, reported as one line with exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class RegistrationFailed(RgbtError):
    """An automatic registration that could not be trusted: exit code 3, so scripts can tell it from bad input."""

    exit_code = 3


class NonFiniteOutput(ValueError):
    """An image about to be written holds NaN or infinite values (a diverged network, a broken checkpoint)."""


def state_dict_mismatch(message: str) -> tuple[str, int]:
    """The first problem in a ``load_state_dict`` error and how many torch listed: ``(detail, count)``.

    torch puts every missing or unexpected key of a kind on one line, which can run to kilobytes, so the detail
    is cut at 200 characters.
    """
    lines = [ln.strip() for ln in message.splitlines()[1:] if ln.strip()]  # line 0 names the module
    if not lines:
        return "different parameters", 0
    first = lines[0].rstrip(".")
    return (first if len(first) <= 200 else first[:200] + "..."), len(lines)


def short(path: str | Path) -> str:
    """A path as the user would want to read it: relative to the working directory when possible."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # elsewhere, or unresolvable (a symlink loop)
        return str(p)
