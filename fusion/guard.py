"""One guard for every command that writes: outputs never touch inputs, and names from files stay in their root.

Every command calls :func:`check_outputs` with what it will write and what it reads, before its first write:

- an output that is, contains or lies inside an input (file or folder) is refused, with or without ``--overwrite``
  (``--overwrite`` replaces earlier results, never the data they came from);
- an output file that exists is refused without ``overwrite``; an output that should be a file but is a folder
  (or the reverse) is refused;
- the nearest existing folder must be writable.

:func:`child_path` joins a name taken from a file (an experiment's ``name:``, a dataset or method name) to its
output root and refuses any name that would leave it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from fusion.errors import RgbtError, short

PathLike = str | Path


def _resolved(p: PathLike) -> Path:
    try:
        return Path(p).expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: its absolute spelling is all there is
        return Path(p).expanduser().absolute()


def overlaps(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` is ``b``, lies inside it, or contains it (symbolic links resolved)."""
    ra, rb = _resolved(a), _resolved(b)
    return ra == rb or rb in ra.parents or ra in rb.parents


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Iterable[PathLike | None],
    overwrite: bool = False,
    folders: Iterable[str] = (),
) -> None:
    """Refuse, in one line, outputs that would touch an input or an existing result.

    Args:
        outputs: flag -> path the command will write (``{"--out": "runs/x", "--plot": "v.png"}``); None is skipped.
        inputs: every file and folder the command reads (None skipped): globs expanded to their files.
        overwrite: whether existing output files may be replaced (never inputs).
        folders: the flags of ``outputs`` that name folders (the others name files).

    Raises:
        RgbtError: the first problem found, naming the flag, the path and the fix.
    """
    folders = set(folders)
    ins = [Path(i) for i in inputs if i is not None and str(i) != ""]
    outs = {flag: Path(p) for flag, p in outputs.items() if p is not None and str(p) != ""}
    for flag, out in outs.items():
        for i in ins:
            if overlaps(out, i):
                kind = "folder" if i.is_dir() else "file"
                raise RgbtError(
                    f"{flag} {short(out)} overlaps the input {kind} {short(i)}; write outputs outside the inputs "
                    "(--overwrite never replaces an input)"
                )
        if flag in folders:
            if out.exists() and not out.is_dir():
                raise RgbtError(f"{flag} {short(out)} is a file; name a folder to write into")
        else:
            if out.is_dir():
                raise RgbtError(f"{flag} {short(out)} is a folder; name the file to write")
            if out.exists() and not overwrite:
                raise RgbtError(f"{short(out)} exists; pass --overwrite to replace it or choose another {flag}")
        for other, p in outs.items():  # two outputs of one command into one file
            if other < flag and (flag not in folders and other not in folders) and _resolved(p) == _resolved(out):
                raise RgbtError(f"{other} and {flag} both name {short(out)}; give each output its own file")
    from fusion.io import probe_writable

    for flag, out in outs.items():
        probe_writable(out if flag in folders else out.parent, f"{flag} {short(out)}")


def child_path(root: PathLike, name: str, what: str) -> Path:
    """``root / name`` for a ``name`` read from a file, refused if it is absolute, has ``..`` or is empty.

    Args:
        root: the output root.
        name: one path component (or a relative path) from a user's file.
        what: where the name came from, for messages (``experiment name``).
    """
    p = Path(name)
    if not name or p.is_absolute() or ".." in p.parts or name.strip() in ("", "."):
        raise RgbtError(f"{what} '{name}' would write outside {short(root)}; use a plain name (letters, digits, _-.)")
    out = Path(root) / p
    if _resolved(root) not in _resolved(out).parents:
        raise RgbtError(f"{what} '{name}' would write outside {short(root)}; use a plain name (letters, digits, _-.)")
    return out


MAX_SIDE = 65_535  # PNG and OpenCV's codecs stop there


def check_image_memory(width: int, height: int, bytes_per_pixel: int, what: str) -> None:
    """Refuse an image size asked for on the command line or in a file before allocating it: a side above
    :data:`MAX_SIDE`, or images needing more than half the memory available now."""
    from fusion.train.memory import available_bytes  # MemAvailable, or less under a container's limit

    need = int(width) * int(height) * int(bytes_per_pixel)
    avail = available_bytes() or 8 << 30
    if max(width, height) > MAX_SIDE or need > avail // 2:
        raise RgbtError(
            f"{what} {width}x{height}: {need / 2**30:.1f} GB of images (sides up to {MAX_SIDE:,}), more than half the "
            f"{avail / 2**30:.1f} GB available; choose a smaller size"
        )
