"""Calibration boards and their detection in visible and thermal images (OpenCV).

A board gives its object points (board frame, millimetres, z = 0) and a detector that returns sub-pixel
image corners in the same order. Thermal images are tried through a preprocessing chain (16-bit
normalisation, inversion, CLAHE) because a heated or cooled board can appear with either polarity and
low contrast.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fusion.errors import RgbtError, short
from fusion.io import imdecode_file

MAX_CORNERS = 200  # corners (or circles) along one side of a board
MAX_MM = 10_000  # a square of 10 m


@dataclass(frozen=True)
class Chessboard:
    """A chessboard with ``cols`` x ``rows`` inner corners and ``square`` mm squares."""

    cols: int
    rows: int
    square: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Chessboard:
        """``chessboard:COLSxROWS[:SQUARE_MM]``, e.g. ``chessboard:9x6:25``."""
        parts = text.split(":")
        try:
            if parts[0] != "chessboard" or len(parts) not in (2, 3):
                raise ValueError
            cols, rows = (int(v) for v in parts[1].lower().split("x"))
            square = float(parts[2]) if len(parts) == 3 else 1.0
            if not (2 <= cols <= MAX_CORNERS and 2 <= rows <= MAX_CORNERS and 0 < square < MAX_MM):  # NaN fails too
                raise ValueError
        except ValueError:
            raise RgbtError(
                f"board '{text}': write it as chessboard:COLSxROWS:SQUARE_MM, e.g. chessboard:9x6:25"
            ) from None
        return cls(cols, rows, square)

    @property
    def pattern_size(self) -> tuple[int, int]:
        return self.cols, self.rows

    def object_points(self) -> np.ndarray:
        """(N, 3) float32 corner coordinates, row by row, in millimetres."""
        grid = np.mgrid[0 : self.cols, 0 : self.rows].T.reshape(-1, 2)
        return np.hstack([grid * self.square, np.zeros((grid.shape[0], 1))]).astype(np.float32)


def imread(path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """An image as OpenCV reads it (uint8/uint16, BGR), or a one-line error naming the file."""
    try:
        img = imdecode_file(path, flags)
    except (OSError, ValueError, cv2.error):
        img = None
    if img is None:
        raise RgbtError(f"{short(path)}: missing or not a readable image; check the path, replace or remove the file")
    return img


def to_gray8(img: np.ndarray) -> np.ndarray:
    """Any 8/16-bit grey or BGR image -> 8-bit grey, 16-bit stretched between its 0.5 and 99.5 percentiles."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint16:
        lo, hi = np.percentile(img, [0.5, 99.5])
        img = np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    return img


def thermal_variants(gray: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The preprocessing chain tried on thermal images, in order."""
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(gray)
    stretched = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)
    out = [("raw", gray), ("inverted", 255 - gray), ("clahe", clahe), ("clahe-inverted", 255 - clahe)]
    out += [("stretched", stretched), ("stretched-inverted", 255 - stretched)]
    return out


def _refine(gray: np.ndarray, corners: np.ndarray, board: Chessboard) -> np.ndarray:
    # Search window scaled to the apparent square size: a third of the smallest corner spacing, 2..11 px
    # (on OpenCV's stereo samples this gives 0.18 px RMS; half the spacing 0.25-0.36, a fixed 11x11 0.41-0.46).
    corners = corners.reshape(-1, 1, 2)
    grid = corners.reshape(board.rows, board.cols, 2)
    spacing = min(
        np.linalg.norm(np.diff(grid, axis=1), axis=2).min(), np.linalg.norm(np.diff(grid, axis=0), axis=2).min()
    )
    win = int(np.clip(spacing / 3, 2, 11))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-3)
    return cv2.cornerSubPix(gray, corners.astype(np.float32), (win, win), (-1, -1), crit)


def _canonical(corners: np.ndarray) -> np.ndarray:
    """(N, 1, 2) float32, ordered so the first corner is nearer the image's top-left than the last: a
    chessboard's corner order is otherwise ambiguous up to a 180-degree turn, which breaks stereo pairing."""
    c = corners.reshape(-1, 1, 2).astype(np.float32)
    if c[0, 0].sum() > c[-1, 0].sum():
        c = c[::-1].copy()
    return c


def detect_chessboard(img: np.ndarray, board: Chessboard, thermal: bool = False) -> tuple[np.ndarray | None, str]:
    """Find the board's inner corners.

    Tries OpenCV's sector-based detector, then the classic one, each followed by sub-pixel refinement with a
    window scaled to the square size, on the image and, for thermal images, on each variant of
    :func:`thermal_variants`.

    Returns:
        ``(corners, how)``: (N, 1, 2) float32 corners in board order or None, and which variant and detector
        found them.
    """
    gray = to_gray8(img)
    variants = thermal_variants(gray) if thermal else [("raw", gray)]
    for name, g in variants:
        ok, corners = cv2.findChessboardCornersSB(g, board.pattern_size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
        if ok:  # the sector-based detector's corners are ~0.2-0.9 px off; refinement brings them to ~0.1-0.2
            return _canonical(_refine(g, corners, board)), f"{name}/sb"
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        ok, corners = cv2.findChessboardCorners(g, board.pattern_size, flags=flags)
        if ok:
            return _canonical(_refine(g, corners, board)), f"{name}/classic"
    return None, "not found"


@dataclass(frozen=True)
class CircleGrid:
    """A symmetric (``circles``) or asymmetric (``acircles``) circle grid, ``cols`` x ``rows`` circles."""

    cols: int
    rows: int
    spacing: float = 1.0
    asymmetric: bool = False

    def object_points(self) -> np.ndarray:
        """OpenCV's layout: asymmetric grids offset every other row by half a spacing (x = (2c + r % 2) s)."""
        pts = [
            ((2 * c + r % 2) * self.spacing if self.asymmetric else c * self.spacing, r * self.spacing, 0.0)
            for r in range(self.rows)
            for c in range(self.cols)
        ]
        return np.array(pts, np.float32)


def detect_circles(img: np.ndarray, board: CircleGrid, thermal: bool = False) -> tuple[np.ndarray | None, str]:
    """Circle centres in board order (dark circles on a light board; thermal images also try the chain)."""
    gray = to_gray8(img)
    flags = cv2.CALIB_CB_ASYMMETRIC_GRID if board.asymmetric else cv2.CALIB_CB_SYMMETRIC_GRID
    for name, g in thermal_variants(gray) if thermal else [("raw", gray)]:
        for f in (flags, flags | cv2.CALIB_CB_CLUSTERING):
            ok, centres = cv2.findCirclesGrid(g, (board.cols, board.rows), flags=f)
            if ok:
                return centres.reshape(-1, 1, 2).astype(np.float32), f"{name}/circles"
    return None, "not found"


@dataclass(frozen=True)
class Charuco:
    """A ChArUco board: ``squares_x`` x ``squares_y`` squares, ``square`` and ``marker`` sides in mm."""

    squares_x: int
    squares_y: int
    square: float
    marker: float
    dictionary: str = "DICT_4X4_50"

    def board(self) -> cv2.aruco.CharucoBoard:
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square, self.marker, d)

    @property
    def cols(self) -> int:
        return self.squares_x - 1

    @property
    def rows(self) -> int:
        return self.squares_y - 1

    def object_points(self) -> np.ndarray:
        return self.board().getChessboardCorners().astype(np.float32)


def detect_charuco(img: np.ndarray, board: Charuco, thermal: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """ChArUco corners and their ids (partial boards allowed): ``(corners (N, 1, 2), ids (N,), how)``."""
    gray = to_gray8(img)
    det = cv2.aruco.CharucoDetector(board.board())
    best = (np.zeros((0, 1, 2), np.float32), np.zeros(0, int), "not found")
    for name, g in thermal_variants(gray) if thermal else [("raw", gray)]:
        corners, ids, _, _ = det.detectBoard(g)
        if ids is not None and len(ids) > len(best[1]):
            best = (corners.reshape(-1, 1, 2).astype(np.float32), ids.ravel().astype(int), f"{name}/charuco")
    return best


def parse_board_spec(text: str):
    """``chessboard:COLSxROWS:MM``, ``circles:COLSxROWS:MM``, ``acircles:COLSxROWS:MM`` or
    ``charuco:SQXxSQY:SQUARE_MM:MARKER_MM[:DICT_4X4_50]``."""
    kind = text.split(":")[0]
    try:
        if kind in ("circles", "acircles"):
            _, size, mm = text.split(":")
            cols, rows = (int(v) for v in size.lower().split("x"))
            if not (2 <= cols <= MAX_CORNERS and 2 <= rows <= MAX_CORNERS and 0 < float(mm) < MAX_MM):
                raise ValueError
            return CircleGrid(cols, rows, float(mm), kind == "acircles")
        if kind == "charuco":
            parts = text.split(":")
            sx, sy = (int(v) for v in parts[1].lower().split("x"))
            sq, mk = float(parts[2]), float(parts[3])
            if not (3 <= sx <= MAX_CORNERS and 3 <= sy <= MAX_CORNERS and 0 < mk < sq < MAX_MM):
                raise ValueError
            spec = Charuco(sx, sy, float(parts[2]), float(parts[3]), parts[4] if len(parts) > 4 else "DICT_4X4_50")
            spec.board()  # validates the dictionary name
            return spec
    except (ValueError, IndexError, AttributeError):
        raise RgbtError(
            f"board '{text}': write circles:COLSxROWS:MM, acircles:COLSxROWS:MM or "
            "charuco:SQXxSQY:SQUARE_MM:MARKER_MM[:DICT_4X4_50]"
        ) from None
    return Chessboard.parse(text)
