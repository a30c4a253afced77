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

from fusion.errors import RgbtError


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
            if cols < 2 or rows < 2 or square <= 0:
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
