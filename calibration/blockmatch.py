"""Local refinement of a registration by block matching and a robust fit of the model.

A single correlation over the whole frame is dominated by whatever has most contrast: a few lamps at night, the
sky's edge. Here the target frame is cut into a grid of blocks; each block with structure finds, by normalised
cross-correlation of :func:`calibration.autoreg.structure` maps, where it lies in the warped source, a few pixels
around the current estimate. Each found block is a control point, and the model is fitted to them by iteratively
reweighted least squares. A block without structure, or whose correlation peak is weak, flat or
repeated, is left out, so noise and repetitive texture cannot pull the fit; blocks all over the frame constrain the
corners, which a whole-frame correlation leaves loose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import stats

BLOCKS = (10, 8)  # blocks across and down a landscape frame (swapped for portrait)
HALF = 0.06  # half the side of a block, as a share of the frame's long side
MIN_PEAK = 0.25  # weakest NCC peak a block may give
UNIQUE = 0.9  # another local maximum reaching this share of the peak makes a block ambiguous


@dataclass
class BlockFit:
    """The outcome of one pass: the new 3x3 source -> target map and the control points behind it."""

    H: np.ndarray
    src: np.ndarray  # (N, 2) source pixels of the blocks found
    dst: np.ndarray  # (N, 2) target pixels (the blocks' centres)
    inliers: np.ndarray  # (N,) bool
    residual_px: float  # RMS distance of the inliers from the fitted model, in target pixels
    blocks: int  # blocks with structure that were tried
    model: str  # the model the blocks supported (select_model)
    corner_sigma_px: float  # standard error of the fit at the frame's corners (corner_sigma)


def vertex(v: np.ndarray) -> float:
    """Sub-sample offset of the peak of three samples (a parabola through them); 0 at an edge of the map."""
    if len(v) != 3:
        return 0.0
    d = v[0] - 2 * v[1] + v[2]
    return float(np.clip(0.5 * (v[0] - v[2]) / d, -0.5, 0.5)) if d < 0 else 0.0


def centred(f: float) -> np.ndarray:
    """The 3x3 map of full-resolution pixel centres onto a grid ``f`` times as fine."""
    return np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1.0]])


def grid(shape: tuple[int, ...], scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(3x3 map of full-resolution pixels onto the grid, its (w, h)) for comparing maps at ``scale`` times the
    resolution of an image of ``shape``."""
    return centred(scale), (max(16, round(shape[1] * scale)), max(16, round(shape[0] * scale)))


def antialias(m: np.ndarray, scale: float) -> np.ndarray:
    """``m`` blurred for sampling at ``scale`` times its resolution (unchanged when not coarser)."""
    return cv2.GaussianBlur(m, (0, 0), 0.5 / scale) if scale < 1 else m


def _peak(r: np.ndarray) -> tuple[float, float, float, bool]:
    """(x, y) of the peak of an NCC map with a sub-pixel parabola, its value, and whether it is unique and inside."""
    _, top, _, (x, y) = cv2.minMaxLoc(r)
    h, w = r.shape
    if not (0 < x < w - 1 and 0 < y < h - 1):
        return float(x), float(y), top, False
    # the other local maxima (not the slopes of a broad main peak) must stay clearly lower
    local = (r == cv2.dilate(r, np.ones((3, 3), np.uint8))) & (r > 0)
    local[y, x] = False
    unique = not local.any() or r[local].max() < UNIQUE * top
    return x + vertex(r[y, x - 1 : x + 2]), y + vertex(r[y - 1 : y + 2, x]), top, unique


def match_blocks(
    source: np.ndarray, target: np.ndarray, H: np.ndarray, scale: float, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Control points from the blocks of ``target`` found in ``source`` warped by ``H`` (source -> target, full
    resolution), both maps compared at ``scale`` times the target's resolution, each block searched ``radius``
    pixels (at that scale) around where ``H`` puts it. Returns (source points, target points, their NCC peaks,
    blocks tried)."""
    S, size = grid(target.shape, scale)
    t = cv2.warpPerspective(antialias(target, scale), S, size, flags=cv2.INTER_LINEAR)
    w = cv2.warpPerspective(antialias(source, scale), S @ H, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpPerspective(np.ones(source.shape[:2], np.uint8), S @ H, size, flags=cv2.INTER_NEAREST)
    covered = cv2.erode(covered, np.ones((3, 3), np.uint8))
    nx, ny = BLOCKS if size[0] >= size[1] else BLOCKS[::-1]
    p = max(6, round(HALF * max(size)))
    spread = float(t.std()) or 1.0
    xs = np.linspace(p + radius, size[0] - 1 - p - radius, nx).round().astype(int)
    ys = np.linspace(p + radius, size[1] - 1 - p - radius, ny).round().astype(int)
    pts_t, pts_w, peaks, tried = [], [], [], 0
    for y in ys:
        for x in xs:
            block = t[y - p : y + p + 1, x - p : x + p + 1]
            if block.shape != (2 * p + 1, 2 * p + 1) or block.std() < 0.5 * spread:
                continue  # no structure of its own: nothing to match
            y0, y1, x0, x1 = y - p - radius, y + p + radius + 1, x - p - radius, x + p + radius + 1
            if y0 < 0 or x0 < 0 or y1 > size[1] or x1 > size[0] or not covered[y0:y1, x0:x1].all():
                continue  # the source does not reach all around the block
            tried += 1
            r = cv2.matchTemplate(w[y0:y1, x0:x1], block, cv2.TM_CCOEFF_NORMED)
            u, v, top, unique = _peak(r)
            if top < MIN_PEAK or not unique:
                continue
            pts_t.append((x, y))
            peaks.append(top)
            pts_w.append((x + u - radius, y + v - radius))
    if not pts_t:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), tried
    Si = np.linalg.inv(S)
    dst = _apply(Si, np.array(pts_t, np.float64))
    srcp = _apply(np.linalg.inv(S @ H), np.array(pts_w, np.float64))
    return srcp, dst, np.array(peaks), tried


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.hstack([pts, np.ones((len(pts), 1))]) @ M.T
    return p[:, :2] / p[:, 2:3]


def _design(pts: np.ndarray, model: str) -> np.ndarray:
    """(2N, p) design matrix of the linear models at points (x rows, then y rows); a homography is judged by its
    affine part."""
    x, y = pts[:, :1], pts[:, 1:]
    one, zero = np.ones_like(x), np.zeros_like(x)
    if model == "translation":
        return np.vstack([np.hstack([one, zero]), np.hstack([zero, one])])
    if model == "similarity":  # u = a x - b y + tx, v = b x + a y + ty
        return np.vstack([np.hstack([x, -y, one, zero]), np.hstack([y, x, zero, one])])
    return np.vstack([np.hstack([x, y, one, zero, zero, zero]), np.hstack([zero, zero, zero, x, y, one])])


def corner_sigma(mapped: np.ndarray, dst: np.ndarray, C: np.ndarray, w: np.ndarray, model: str, size) -> float:
    """Standard error of the fitted correction at the corners of a ``size`` (w, h) frame, in pixels: the scatter of
    the blocks about the fit, propagated through the least-squares covariance. Few blocks, blocks bunched in one
    part of the frame, or blocks that disagree all make it large."""
    A = _design(mapped, model)
    ww = np.concatenate([w, w])
    r = (_apply(C, mapped) - dst).T.ravel()  # x residuals, then y
    dof = 2 * int((w > 0).sum()) - A.shape[1]
    if dof <= 0:
        return float("inf")
    N = (A * ww[:, None]).T @ A
    if np.linalg.cond(N) > 1e12:
        return float("inf")
    cov = float((ww * r * r).sum() / dof) * np.linalg.inv(N)
    corners = np.array([[0, 0], [size[0] - 1, 0], [0, size[1] - 1], [size[0] - 1, size[1] - 1]], float)
    J = _design(corners, model)  # rows: x of each corner, then y
    var = np.einsum("ij,jk,ik->i", J, cov, J)
    return float(np.sqrt(var[:4] + var[4:]).mean())


def _lsq(mapped: np.ndarray, dst: np.ndarray, w: np.ndarray, model: str) -> np.ndarray | None:
    """Weighted least-squares correction C (3x3, target frame) with ``C(mapped) ~ dst``."""
    if model == "translation":
        C = np.eye(3)
        C[:2, 2] = (w[:, None] * (dst - mapped)).sum(0) / w.sum()
        return C
    if model == "homography":
        keep = w > 0
        C, _ = cv2.findHomography(mapped[keep], dst[keep], 0)
        return C
    A = _design(mapped, model)
    rhs = np.concatenate([dst[:, 0], dst[:, 1]])
    ww = np.sqrt(np.concatenate([w, w]))
    p, *_ = np.linalg.lstsq(A * ww[:, None], rhs * ww, rcond=None)
    if model == "similarity":
        a, b, tx, ty = p
        return np.array([[a, -b, tx], [b, a, ty], [0, 0, 1.0]])
    return np.vstack([p.reshape(2, 3), [0, 0, 1.0]])


def fit_model(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, H: np.ndarray, model: str, floor: float
) -> tuple | None:
    """Robust fit of ``model`` to control points, as a correction of ``H`` in the target frame (so 'translation'
    keeps H's linear part): iteratively reweighted least squares with Tukey's biweight, its scale from the
    median residual (at least ``floor`` px), starting from the points' median shift. Deterministic, so that the
    same scene gives the same fit. Returns (new H, inlier mask, final weights) or None when the points do not
    determine the model."""
    mapped = _apply(H, src)  # where H puts the source points
    need = {"translation": 3, "similarity": 4, "affine": 6, "homography": 8}[model]
    if len(src) < need:
        return None
    C = np.eye(3)
    C[:2, 2] = np.median(dst - mapped, axis=0)
    for _ in range(20):
        r = np.linalg.norm(_apply(C, mapped) - dst, axis=1)
        sigma = max(1.4826 * float(np.median(r)), floor)
        u = r / (4.685 * sigma)
        w = weight * np.clip(1 - u**2, 0, None) ** 2
        if (w > 0).sum() < need:
            return None
        new = _lsq(mapped, dst, w, model)
        if new is None or not np.all(np.isfinite(new)):
            return None
        done = np.abs(new - C).max() < 1e-7
        C = new
        if done:
            break
    r = np.linalg.norm(_apply(C, mapped) - dst, axis=1)
    inl = r <= max(2.5 * 1.4826 * float(np.median(r)), floor)
    if inl.sum() < need:
        return None
    return C @ H, inl, w


CHAIN = ("translation", "similarity", "affine", "homography")
DOF = {"translation": 2, "similarity": 4, "affine": 6, "homography": 8}
SIGNIFICANCE = 0.999  # an extra term is kept when an F-test says it explains the blocks at this level


def select_model(
    src: np.ndarray, dst: np.ndarray, peaks: np.ndarray, H: np.ndarray, model: str, floor: float, size=(1, 1)
):
    """The simplest model up to ``model`` that the control points support: each richer model of
    translation < similarity < affine < homography must reduce the weighted residual by more than its extra
    parameters would by chance (F-test at :data:`SIGNIFICANCE`). Shear and anisotropic scale are weakly
    constrained across modalities (a scene with structure in its upper half only, parallax), and extrapolated to
    the corners they would move an aligned pair by pixels. Returns (H, inliers, model fitted, its
    :func:`corner_sigma` at the corners of the ``size`` (w, h) target frame) or None."""
    fits = {}
    for m in CHAIN[: CHAIN.index(model) + 1]:
        out = fit_model(src, dst, peaks, H, m, floor)
        if out is not None:
            fits[m] = out
    if not fits:
        return None
    rich = list(fits)[-1]
    w = fits[rich][2]  # the richest model's weights judge every model on the same points
    n = 2 * int((w > 0).sum())

    def rss(m: str) -> float:
        return float((w * ((_apply(fits[m][0], src) - dst) ** 2).sum(1)).sum())

    best = list(fits)[0]
    for m in list(fits)[1:]:
        extra, resid = DOF[m] - DOF[best], n - DOF[m]
        if resid <= 0:
            break
        f = ((rss(best) - rss(m)) / extra) / max(rss(m) / resid, 1e-12)
        if f > stats.f.ppf(SIGNIFICANCE, extra, resid):
            best = m
    Hb, inl, wb = fits[best]
    mapped = _apply(H, src)
    return Hb, inl, best, corner_sigma(mapped, dst, Hb @ np.linalg.inv(H), wb, best, size)


def refine_blocks(
    source: np.ndarray, target: np.ndarray, H: np.ndarray, model: str, passes: list[tuple[float, int]]
) -> BlockFit | None:
    """Block matching and a robust fit of ``model`` (or a simpler one, :func:`select_model`), once per
    ``(scale, radius)`` pass, each starting from the last. ``source`` and ``target`` are structure maps; ``H`` maps
    source to target pixels at full resolution. Returns the last pass's fit, or None when a pass found too few
    blocks to fit a model."""
    fit = None
    for scale, radius in passes:
        src, dst, peaks, tried = match_blocks(source, target, H, scale, radius)
        # the residual's floor: half a pixel at the matching scale
        out = select_model(src, dst, peaks, H, model, 0.5 / scale, target.shape[1::-1])
        if out is None:
            return None
        H, inl, fitted, sigma = out
        res = np.linalg.norm(_apply(H, src[inl]) - dst[inl], axis=1)
        fit = BlockFit(H, src, dst, inl, float(math.sqrt((res**2).mean())), tried, fitted, sigma)
    return fit
