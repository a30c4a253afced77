"""Image files in and out: the only place where uint8/uint16 and BGR exist in the fusion stack.

Everything read here comes back as float32 in [0, 1], shape (1, C, H, W), RGB order, with C = 1 for grey
images. 16-bit images (common for raw thermal) are never silently rescaled: the caller picks a
:class:`Norm16` and the choice, with the values it used, is recorded in :class:`ImageInfo`.

Writes are atomic: the image goes to a temporary file in the target folder, then is renamed over the
target, so an interrupted run never leaves a half-written PNG behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion.errors import NonFiniteOutput, RgbtError, short

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# OpenCV warns on stderr about every broken file; we raise our own one-line error instead.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass(frozen=True)
class Norm16:
    """How a 16-bit image is mapped to [0, 1].

    Attributes:
        mode: ``"fixed"`` (``(v - lo) / (hi - lo)``, default 0..65535), ``"minmax"`` (per image) or
            ``"percentile"`` (per image, between the ``lo`` and ``hi`` percentiles, then clipped).
        lo: lower value (fixed) or percentile (percentile mode).
        hi: upper value (fixed) or percentile (percentile mode).
    """

    mode: str = "fixed"
    lo: float | None = None
    hi: float | None = None

    @classmethod
    def parse(cls, text: str) -> Norm16:
        """Parse ``fixed``, ``fixed:LO:HI``, ``minmax``, ``percentile`` or ``percentile:LO:HI``."""
        parts = text.strip().split(":")
        mode = parts[0]
        if mode not in ("fixed", "minmax", "percentile") or len(parts) not in (1, 3):
            raise RgbtError(
                f"unknown 16-bit normalisation '{text}': use fixed, fixed:LO:HI, minmax, percentile "
                "or percentile:LO:HI (e.g. percentile:1:99)"
            )
        if len(parts) == 3:
            try:
                lo, hi = float(parts[1]), float(parts[2])
            except ValueError:
                raise RgbtError(f"16-bit normalisation '{text}': LO and HI must be numbers") from None
            if not lo < hi:
                raise RgbtError(f"16-bit normalisation '{text}': LO must be below HI")
            if mode == "minmax":
                raise RgbtError("16-bit normalisation 'minmax' takes no values")
            return cls(mode, lo, hi)
        return cls(mode)

    def range_for(self, img: np.ndarray) -> tuple[float, float]:
        """The (lo, hi) pixel values mapped to 0 and 1 for this image."""
        if self.mode == "fixed":
            return (0.0 if self.lo is None else self.lo, 65535.0 if self.hi is None else self.hi)
        if self.mode == "minmax":
            return float(img.min()), float(img.max())
        lo, hi = np.percentile(img, [1.0 if self.lo is None else self.lo, 99.0 if self.hi is None else self.hi])
        return float(lo), float(hi)


@dataclass(frozen=True)
class ImageInfo:
    """What was read and how it was scaled, so that results can say exactly what they were computed on."""

    path: str
    height: int
    width: int
    channels: int
    bit_depth: int
    normalization: str  # e.g. "uint8/255" or "percentile:1:99 [2870.0, 3310.0]"


@contextlib.contextmanager
def quiet_stderr():
    """Silence C libraries writing to file descriptor 2 (libpng's ``libpng error: ...``) for the block.

    Our own one-line error says what was wrong with the file; the library's lines would come before it.
    """
    try:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no usable fd 2 (e.g. a captured stream): nothing to silence
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def imdecode_file(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """Decode an image file as OpenCV does (uint8/uint16, BGR), or None when OpenCV cannot.

    The bytes are read by numpy and decoded from memory: ``cv2.imread`` on a file name that is not valid UTF-8
    can crash the process. libpng's own stderr lines are silenced. Raises OSError (unreadable file) and
    cv2.error (e.g. a header claiming more pixels than OpenCV's limit).
    """
    buf = np.fromfile(os.fspath(path), dtype=np.uint8)
    with quiet_stderr():
        return cv2.imdecode(buf, flags) if buf.size else None


def _decode(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RgbtError(f"{short(path)}: no such file; check the path")
    try:
        img = imdecode_file(path)
    except OSError as e:
        raise RgbtError(f"{short(path)}: cannot read ({e.strerror}); check permissions") from None
    except cv2.error:  # e.g. a header claiming more pixels than OpenCV's limit
        raise RgbtError(
            f"{short(path)}: not a decodable image (its header claims an impossible size, or it is corrupt); "
            "replace or remove it"
        ) from None
    if img is None:
        raise RgbtError(f"{short(path)}: not a readable image (corrupt, truncated or empty); replace or remove it")
    if img.dtype not in (np.uint8, np.uint16):
        raise RgbtError(f"{short(path)}: unsupported pixel type {img.dtype}; save it as 8- or 16-bit PNG/TIFF")
    if img.ndim == 3 and img.shape[2] == 2:  # grey + alpha
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in (1, 3, 4) or img.ndim not in (2, 3) or 0 in img.shape[:2]:
        raise RgbtError(f"{short(path)}: unsupported image layout {img.shape}; save it as grey or RGB")
    return img


def _channels(img: np.ndarray) -> np.ndarray:
    """Decoded (H, W[, C]) BGR(A) -> (C, H, W) in RGB order with C in {1, 3}, as a view where possible."""
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        b, g, r = (img[:, :, c] for c in range(3))
        # one row at a time: whole-image comparisons would allocate image-sized temporaries
        if all(np.array_equal(b[i], g[i]) and np.array_equal(g[i], r[i]) for i in range(img.shape[0])):
            return img[None, :, :, 0]
        return img.transpose(2, 0, 1)[::-1]  # BGR -> RGB
    return img[None]


def _range16(path: Path, img: np.ndarray, norm16: Norm16 | None) -> tuple[float, float, str]:
    if norm16 is None:
        raise RgbtError(
            f"{short(path)} is 16-bit; choose how to map it to [0,1] with --norm16 "
            "(fixed, fixed:LO:HI, minmax or percentile:1:99)"
        )
    lo, hi = norm16.range_for(img)
    desc = f"{norm16.mode}{'' if norm16.lo is None else f':{norm16.lo:g}:{norm16.hi:g}'} [{lo:g}, {hi:g}]"
    return lo, hi, desc


def inspect_image(path: str | Path, *, norm16: Norm16 | None = None) -> ImageInfo:
    """Decode an image and check everything :func:`read_image` checks, without converting it to float.

    Raises:
        RgbtError: as :func:`read_image`.
    """
    path = Path(path)
    img = _decode(path)
    desc, depth = "uint8/255", 8
    if img.dtype != np.uint8:
        desc, depth = _range16(path, img, norm16)[2], 16
    c = _channels(img).shape[0]
    return ImageInfo(str(path), img.shape[0], img.shape[1], c, depth, desc)


def read_image(
    path: str | Path, *, grey: bool = False, norm16: Norm16 | None = None, keep_uint8: bool = False
) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file as a float tensor.

    A colour file whose three channels are identical (a grey image saved as RGB, as many thermal datasets
    do) becomes one channel. An alpha channel is dropped.

    Args:
        path: PNG, JPEG, BMP or TIFF file, 8- or 16-bit.
        grey: convert colour to one luminance channel (ITU-R BT.601, as in YCbCr's Y).
        norm16: how to scale a 16-bit image; required for 16-bit files.
        keep_uint8: return an 8-bit file's levels as a uint8 tensor (a quarter of the memory; ``x.float() / 255``
            gives exactly the float image). 16-bit files still come back as float.

    Returns:
        ``(image, info)`` with image of shape (1, C, H, W), float32 in [0, 1] (or uint8, see ``keep_uint8``),
        RGB order, C in {1, 3}.

    Raises:
        RgbtError: missing, corrupt or unsupported file, or a 16-bit file without ``norm16``.
    """
    path = Path(path)
    img = _decode(path)
    chw = _channels(img)
    if img.dtype == np.uint8:
        desc, depth = "uint8/255", 8
        t = torch.from_numpy(np.ascontiguousarray(chw))[None]
        if not (keep_uint8 and not grey):
            t = t.float().div_(255.0)  # in place: a 24-MP colour image needs one float copy, not three
    else:
        lo, hi, desc = _range16(path, img, norm16)
        scale = (hi - lo) if hi > lo else 1.0
        x = np.clip((chw.astype(np.float32) - lo) / scale, 0.0, 1.0)
        t, depth = torch.from_numpy(np.ascontiguousarray(x))[None], 16
    del img, chw
    if grey and t.shape[1] == 3:
        t = rgb_to_grey(t)
    info = ImageInfo(str(path), t.shape[2], t.shape[3], t.shape[1], depth, desc)
    return t, info


READERS = ("pil:L", "pil:RGB", "pil:YCbCr", "cv2:grey", "cv2:bgr", "cv2:bgr-float-grey")


def read_as(path: str | Path, reader: str) -> np.ndarray:
    """Decode an 8-bit image exactly as an authors' test script reads it (``rgbt fuse --official``).

    Grey conversions differ between libraries by one level on many pixels (PIL's ``convert('L')``, OpenCV's
    ``IMREAD_GRAYSCALE`` and ``cvtColor`` on uint8 or on float), so each script's own call is made here.

    Args:
        reader: ``"pil:L"`` / ``"pil:RGB"`` / ``"pil:YCbCr"`` (``Image.open(p).convert(mode)``), ``"cv2:grey"``
            (``cv2.imread(p, cv2.IMREAD_GRAYSCALE)``), ``"cv2:bgr"`` (``cv2.imread(p)``, BGR) or
            ``"cv2:bgr-float-grey"`` (``cv2.cvtColor(cv2.imread(p).astype('float32'), cv2.COLOR_BGR2GRAY)``,
            float32 levels).

    Returns:
        (H, W) or (H, W, 3) uint8 (float32 for ``cv2:bgr-float-grey``), as the library returns it.

    Raises:
        RgbtError: missing, corrupt or 16-bit file (the scripts read 8-bit images).
    """
    path = Path(path)
    img = _decode(path)  # every check read_image makes, with our one-line messages
    if img.dtype != np.uint8:
        raise RgbtError(
            f"{short(path)} is 16-bit; --official reads 8-bit images as the authors' script does: convert it to "
            "8 bits first, or drop --official (rgbt fuse --norm16 scales 16-bit images)"
        )
    if reader.startswith("pil:"):
        from PIL import Image, UnidentifiedImageError

        try:
            with quiet_stderr(), Image.open(io.BytesIO(path.read_bytes())) as im:
                return np.array(im.convert(reader[4:]))
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
            raise RgbtError(f"{short(path)}: PIL cannot decode this image; replace or remove it") from None
    buf = np.fromfile(path, dtype=np.uint8)
    if reader == "cv2:grey":
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if reader == "cv2:bgr":
        return bgr
    if reader == "cv2:bgr-float-grey":
        return cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY)
    raise ValueError(f"unknown reader {reader!r}; one of {READERS}")


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luminance with the BT.601 weights used by YCbCr."""
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, decoding it fully (so corrupt files are caught here too)."""
    img = _decode(Path(path))
    return img.shape[0], img.shape[1]


def to_uint(x: torch.Tensor, bits: int = 8) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) float in [0, 1] -> (H, W) or (H, W, C) uint8/uint16 in RGB order."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if not torch.isfinite(x).all():
        raise NonFiniteOutput("image contains NaN or infinite values")
    peak = 255 if bits == 8 else 65535
    a = (x.detach().float().clamp(0, 1) * peak).round().cpu().numpy()
    a = a.astype(np.uint8 if bits == 8 else np.uint16)
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (os.umask can only read it by setting it)


def probe_writable(folder: str | Path, what: str) -> None:
    """Fail with one line unless a file can be created in ``folder`` (or its nearest existing parent); checked
    by creating and removing a temporary file, since permission bits do not tell root about /proc or a
    read-only mount."""
    folder = Path(folder)
    base = next((q for q in [folder, *folder.parents] if q.exists()), Path("."))
    if not base.is_dir():
        raise RgbtError(f"{what}: {short(base)} is a file, not a folder; choose another location")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise RgbtError(f"{what}: cannot write in {short(base)} ({e.strerror}); choose a writable location") from None


def csv_bytes(columns, rows) -> bytes:
    """A CSV file's bytes: the header ``columns``, then ``rows`` (``\\n`` line ends, for byte-identical reruns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue().encode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise RgbtError(f"{short(path.parent)} is a file, not a folder; choose another output path")
    path.parent.mkdir(parents=True, exist_ok=True)  # creating a folder overwrites nothing
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, x: torch.Tensor, bits: int = 8) -> None:
    """Write a (1, C, H, W) or (C, H, W) float image in [0, 1] as an 8- or 16-bit PNG, atomically.

    Values are clamped to [0, 1] and rounded; no contrast stretch is applied.
    """
    a = to_uint(x, bits)
    write_png_array(path, a[:, :, ::-1] if a.ndim == 3 else a)  # RGB -> BGR for OpenCV


def write_png_array(path: str | Path, a: np.ndarray) -> None:
    """Write a (H, W) or (H, W, 3) uint8/uint16 array in BGR order as a PNG, atomically."""
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise RgbtError(f"{short(path)}: PNG encoding failed")
    atomic_write_bytes(path, enc.data)
