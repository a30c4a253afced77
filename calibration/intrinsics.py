"""Single-camera and stereo calibration with OpenCV, with per-view errors and automatic view rejection.

RMS convention: OpenCV's overall reprojection RMS, sqrt(sum of squared corner errors / number of corners)
over all kept views (what ``calibrateCamera`` returns), not the mean of per-view RMS values that the OpenCV
tutorial prints. Per-view values are the RMS over that view's corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.boards import Chessboard
from fusion.errors import RgbtError


@dataclass
class CameraCalibration:
    """Intrinsics of one camera and how well they fit."""

    image_size: tuple[int, int]  # (width, height)
    K: np.ndarray
    dist: np.ndarray
    rms: float  # overall RMS reprojection error, pixels
    per_view: dict[str, float]  # view name -> RMS over its corners, pixels
    rejected: dict[str, str] = field(default_factory=dict)  # view name -> reason
    rvecs: list[np.ndarray] = field(default_factory=list)
    tvecs: list[np.ndarray] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "K": self.K.tolist(),
            "dist": self.dist.ravel().tolist(),
            "rms_px": self.rms,
            "rms_definition": "sqrt(sum squared corner errors / corners), all kept views (OpenCV overall RMS)",
            "per_view_rms_px": self.per_view,
            "views_used": len(self.per_view),
            "rejected": self.rejected,
        }


def _view_errors(obj, img, K, dist, rvecs, tvecs) -> list[float]:
    errs = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, r, t, K, dist)
        errs.append(float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - i.reshape(-1, 2)) ** 2, axis=1)))))
    return errs


DUPLICATE_PX = 0.5  # views whose every corner lies this close to another view's are the same view


def near_duplicates(views: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, str]:
    """Views that repeat an earlier one (same corner ids, every corner within :data:`DUPLICATE_PX`): the same
    image copied, or a board that did not move between frames. Counting them as independent views would weight
    one pose many times and bias the intrinsics while the RMS looks better; they are set aside with the reason."""
    kept: list[tuple[str, np.ndarray, np.ndarray]] = []
    out: dict[str, str] = {}
    for name in sorted(views):
        c, ids = views[name]
        c = np.asarray(c, np.float64).reshape(-1, 2)
        twin = next(
            (k for k, kc, kids in kept if np.array_equal(kids, ids) and np.abs(kc - c).max() < DUPLICATE_PX), None
        )
        if twin is None:
            kept.append((name, c, np.asarray(ids)))
        else:
            out[name] = f"a near-duplicate of view {twin} (every corner within {DUPLICATE_PX} px): not independent"
    return out


def calibrate_camera(
    corners: dict[str, np.ndarray],
    board: Chessboard,
    image_size: tuple[int, int],
    reject_factor: float = 3.0,
    min_views: int = 4,
    min_px: float = 1.0,
    flags: int = 0,
    what: str = "the camera",
) -> CameraCalibration:
    """Calibrate intrinsics from detected corners, dropping outlier views.

    A view is rejected when its RMS exceeds ``reject_factor`` times the median view RMS and ``min_px``; the
    calibration is repeated until no view is rejected.

    Args:
        corners: view name -> (N, 1, 2) detected corners, or ``(corners, ids)`` for partial views, ids
            indexing ``board.object_points()``.
        board: the board the corners belong to (anything with ``object_points()``).
        image_size: (width, height).
    """
    views = {k: v if isinstance(v, tuple) else (v, np.arange(len(board.object_points()))) for k, v in corners.items()}
    rejected = near_duplicates(views)  # the same view twice is not two constraints: keep the first
    names = sorted(set(views) - set(rejected))
    while True:
        if len(names) < min_views:
            dups = sum("near-duplicate" in r for r in rejected.values())
            aside = f", {dups} near-duplicate views set aside" if dups else ""
            raise RgbtError(
                f"{what}: only {len(names)} usable views (need {min_views}{aside}); check the board spec and the "
                "images, or take more board images from other poses"
            )
        obj = [board.object_points()[views[n][1]] for n in names]
        img = [views[n][0].astype(np.float32) for n in names]
        rms, K, dist, rvecs, tvecs, *_ = cv2.calibrateCameraExtended(obj, img, image_size, None, None, flags=flags)
        errs = _view_errors(obj, img, K, dist, rvecs, tvecs)
        limit = max(reject_factor * float(np.median(errs)), min_px)
        worst = int(np.argmax(errs))
        if errs[worst] <= limit:
            return CameraCalibration(
                image_size, K, dist, float(rms), dict(zip(names, errs, strict=True)), rejected, list(rvecs), list(tvecs)
            )
        rejected[names[worst]] = f"view RMS {errs[worst]:.2f} px > {limit:.2f} px ({reject_factor} x median)"
        names = names[:worst] + names[worst + 1 :]


@dataclass
class StereoCalibration:
    """Extrinsics of camera 2 relative to camera 1: x2 = R x1 + T (millimetres)."""

    R: np.ndarray
    T: np.ndarray
    rms: float
    pairs: list[str]

    def to_dict(self) -> dict:
        return {
            "R": self.R.tolist(),
            "T_mm": self.T.ravel().tolist(),
            "baseline_mm": float(np.linalg.norm(self.T)),
            "rms_px": self.rms,
            "rms_definition": "OpenCV stereoCalibrate overall RMS over both cameras' corners, intrinsics fixed",
            "pairs_used": self.pairs,
        }


def align_order(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Reverse ``other``'s corner order when it runs against ``ref``'s (the chessboard's 180-degree
    ambiguity), judged by the direction from the first to the last corner; both (N, 1, 2)."""
    d1 = ref.reshape(-1, 2)[-1] - ref.reshape(-1, 2)[0]
    d2 = other.reshape(-1, 2)[-1] - other.reshape(-1, 2)[0]
    return other[::-1].copy() if float(np.dot(d1, d2)) < 0 else other


def calibrate_stereo(
    cam1: CameraCalibration,
    cam2: CameraCalibration,
    corners1: dict[str, np.ndarray],
    corners2: dict[str, np.ndarray],
    board: Chessboard,
) -> StereoCalibration:
    """Extrinsics from views seen (and kept) by both cameras, each camera's intrinsics held fixed.

    Partial views (``(corners, ids)``, e.g. the coded board) use the corners both cameras found in that view.
    """
    obj, img1, img2, pairs = [], [], [], []
    for p in sorted(set(cam1.per_view) & set(cam2.per_view)):
        a, b = corners1[p], corners2[p]
        if isinstance(a, tuple):  # ids are absolute board positions: keep those both cameras saw
            (ca, ia), (cb, ib) = a, b
            common = np.intersect1d(ia, ib)
            if len(common) < 6:
                continue
            pa, pb = {int(i): k for k, i in enumerate(ia)}, {int(i): k for k, i in enumerate(ib)}
            obj.append(board.object_points()[common])
            img1.append(ca[[pa[int(i)] for i in common]])
            img2.append(cb[[pb[int(i)] for i in common]])
        else:
            obj.append(board.object_points())
            img1.append(a)
            img2.append(align_order(a, b))
        pairs.append(p)
    if len(pairs) < 3:
        raise RgbtError(f"only {len(pairs)} board views are usable in both cameras (need 3); check the pairing")
    rms, *_, R, T, _, _ = cv2.stereoCalibrate(
        obj,
        [c.astype(np.float32) for c in img1],
        [c.astype(np.float32) for c in img2],
        cam1.K,
        cam1.dist,
        cam2.K,
        cam2.dist,
        cam1.image_size,
        flags=cv2.CALIB_FIX_INTRINSIC,
    )
    return StereoCalibration(R, T, float(rms), pairs)
