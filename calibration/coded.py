"""The coded checkerboard (MRT, Schramm et al. 2021): a chessboard whose centre is covered by an ArUco marker.

Ordinary chessboard detectors fail on it (the marker breaks the grid). Here the marker is found first with
a one-marker dictionary built from the board's own image; its four corners give a homography from the
board plane to the image (and the marker's rotation fixes the board's orientation). Every chessboard
corner is then predicted, refined to sub-pixel accuracy and kept only if it is a real X-junction; the
homography is re-fitted on the kept corners and the rest predicted again, so partial boards and boards
near the image edge still give many verified corners.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import thermal_variants, to_gray8


@dataclass(frozen=True)
class CodedBoard:
    """Geometry of the MRT coded board (defaults: the 60 x 45 cm target, 11 x 9 inner corners, 50.5 mm)."""

    cols: int = 11
    rows: int = 9
    square: float = 50.5
    # marker's outer black square, in inner-corner grid units (corner (c, r) is at (c, r) * square mm)
    marker_tl: tuple[float, float] = (3.4, 2.4)
    marker_size: float = 3.2
    marker_bits: tuple[tuple[int, ...], ...] = ()  # 3 x 3 inner bits, 1 = white, read from the board image

    def object_points(self) -> np.ndarray:
        grid = np.mgrid[0 : self.cols, 0 : self.rows].T.reshape(-1, 2)
        return np.hstack([grid * self.square, np.zeros((grid.shape[0], 1))]).astype(np.float32)

    def marker_corners_mm(self) -> np.ndarray:
        x, y, s = self.marker_tl[0], self.marker_tl[1], self.marker_size
        return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], np.float64) * self.square

    def render(self, px: int = 40) -> np.ndarray:
        """A printable uint8 image of the board, ``px`` pixels per square; inner corner (c, r) is at pixel
        ((c + 1) px, (r + 1) px). The marker sits in a white 4 x 4-square quiet zone, as on the MRT target."""
        img = np.zeros(((self.rows + 1) * px, (self.cols + 1) * px), np.uint8)
        for r in range(self.rows + 1):
            for c in range(self.cols + 1):
                if (r + c) % 2:
                    img[r * px : (r + 1) * px, c * px : (c + 1) * px] = 255
        qx, qy = int(self.marker_tl[0]) + 1, int(self.marker_tl[1]) + 1  # quiet zone starts on a square edge
        img[qy * px : (qy + 4) * px, qx * px : (qx + 4) * px] = 255
        x0, y0, cell = (self.marker_tl[0] + 1) * px, (self.marker_tl[1] + 1) * px, self.marker_size * px / 5
        for r in range(5):
            for c in range(5):
                inner = 1 <= r <= 3 and 1 <= c <= 3
                white = inner and self.marker_bits[r - 1][c - 1]
                y, x = int(round(y0 + r * cell)), int(round(x0 + c * cell))
                img[y : int(round(y0 + (r + 1) * cell)), x : int(round(x0 + (c + 1) * cell))] = 255 if white else 0
        return img

    @classmethod
    def from_image(cls, path: str | Path, **kw) -> CodedBoard:
        """Read the marker's bits from the printable board image (12 x 9 squares of 100 px, as shipped)."""
        from calibration.boards import imread

        img = imread(path, cv2.IMREAD_GRAYSCALE)
        board = cls(**kw)
        px = img.shape[1] / (board.cols + 1)  # pixels per square
        x0 = (board.marker_tl[0] + 1) * px
        y0 = board.marker_tl[1] * px + px / 2
        cell = board.marker_size * px / 5  # 3 x 3 bits inside a one-cell black border
        bits = tuple(
            tuple(int(img[int(y0 + (r + 1.5) * cell), int(x0 + (c + 1.5) * cell)] > 127) for c in range(3))
            for r in range(3)
        )
        return cls(**{**kw, "marker_bits": bits})


def _detector(board: CodedBoard) -> cv2.aruco.ArucoDetector:
    bits = np.array(board.marker_bits, np.uint8)
    dictionary = cv2.aruco.Dictionary(cv2.aruco.Dictionary.getByteListFromBits(bits), 3, 0)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    params.minMarkerPerimeterRate = 0.05
    return cv2.aruco.ArucoDetector(dictionary, params)


def x_junction_score(gray: np.ndarray, pt: np.ndarray, r: int, axes: np.ndarray | None = None) -> float:
    """How much a point looks like a chessboard X-junction: the contrast between the two diagonal pairs of
    quadrants around it, minus the disagreement within each pair, over the grey range (about 0..1).

    Args:
        axes: (2, 2) unit image directions of the board's x and y axes at ``pt`` (rows); the quadrants are taken
            along them, so the test holds at any in-plane rotation. None: the image axes.
    """
    u, v = np.eye(2) if axes is None else np.asarray(axes, np.float64)
    h, w = gray.shape
    reach = r * (abs(u) + abs(v))  # the farthest sample's offset along x and y
    if pt[0] - reach[0] < 0 or pt[1] - reach[1] < 0 or pt[0] + reach[0] >= w - 1 or pt[1] + reach[1] >= h - 1:
        return 0.0
    t = np.arange(1, r + 1, dtype=np.float64)
    a, b = np.meshgrid(t, t)
    g = gray.astype(np.float32)

    def sample(su: float, sv: float) -> np.ndarray:
        xy = pt[None, None, :] + (su * a)[..., None] * u + (sv * b)[..., None] * v  # (r, r, 2)
        return cv2.remap(g, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv2.INTER_LINEAR)

    quads = [sample(-1, -1), sample(1, -1), sample(1, 1), sample(-1, 1)]  # in order around the point
    q = [float(x.mean()) for x in quads]
    spread = max(float(np.concatenate([x.ravel() for x in quads]).std()), 1.0)
    return (abs((q[0] + q[2]) - (q[1] + q[3])) / 2 - abs(q[0] - q[2]) - abs(q[1] - q[3])) / (2 * spread)


def board_axes(H: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """(N, 2, 2) unit image directions of the board's x and y axes at each board point ``obj`` (N, 2) in mm."""
    d = 1.0  # mm
    p = cv2.perspectiveTransform(np.concatenate([obj, obj + [d, 0], obj + [0, d]]).reshape(-1, 1, 2), H)
    p = p.reshape(3, -1, 2)
    axes = np.stack([p[1] - p[0], p[2] - p[0]], 1)
    return axes / np.maximum(np.linalg.norm(axes, axis=2, keepdims=True), 1e-12)


def detect_coded(img: np.ndarray, board: CodedBoard, min_score: float = 0.4) -> tuple[np.ndarray, np.ndarray, str]:
    """Verified corners of a coded board: ``(corners (N, 1, 2) float32, ids (N,) into object_points(), how)``;
    N = 0 when the marker is not found."""
    gray0 = to_gray8(img)
    det = _detector(board)
    found = 0
    for name, gray in thermal_variants(gray0):
        corners, ids, _ = det.detectMarkers(gray)
        if ids is None or len(ids) != 1:
            continue
        found = max(found, 1)
        H, _ = cv2.findHomography(board.marker_corners_mm(), corners[0].reshape(4, 2).astype(np.float64))
        obj = board.object_points()[:, :2].astype(np.float64)
        kept: dict[int, np.ndarray] = {}
        for _ in range(3):  # predict, refine, verify; re-fit the homography on what was kept
            pred = cv2.perspectiveTransform(obj.reshape(-1, 1, 2), H).reshape(-1, 2)
            step = np.median(np.linalg.norm(np.diff(pred.reshape(board.rows, board.cols, 2), axis=1), axis=2))
            win = int(np.clip(step / 3, 2, 11))
            h, w = gray.shape
            inside = np.nonzero(
                (pred[:, 0] > win + 1)
                & (pred[:, 0] < w - win - 2)
                & (pred[:, 1] > win + 1)
                & (pred[:, 1] < h - win - 2)
            )[0]
            if not len(inside):
                break
            ref = cv2.cornerSubPix(
                gray,
                pred[inside].astype(np.float32).reshape(-1, 1, 2).copy(),
                (win, win),
                (-1, -1),
                (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.01),
            ).reshape(-1, 2)
            kept = {}
            axes = board_axes(H, obj[inside])
            for i, p, q, ax in zip(inside, pred[inside], ref, axes, strict=True):
                if np.linalg.norm(q - p) < 0.5 * step and x_junction_score(gray, q, max(2, win), ax) >= min_score:
                    kept[int(i)] = q
            if len(kept) < 8:
                break
            ids_k = np.array(sorted(kept))
            H, _ = cv2.findHomography(obj[ids_k], np.array([kept[i] for i in ids_k]), cv2.RANSAC, 2.0)
        if len(kept) >= 8:
            ids_k = np.array(sorted(kept))
            return np.array([kept[i] for i in ids_k], np.float32).reshape(-1, 1, 2), ids_k, f"{name}/aruco+grid"
        found = max(found, 1 + len(kept))
    how = "marker not found" if not found else f"marker found, only {found - 1} corners verified"
    return np.zeros((0, 1, 2), np.float32), np.zeros(0, int), how
