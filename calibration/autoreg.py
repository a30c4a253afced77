"""Automatic IR-to-RGB registration: a global search, block matching, a polish, and a confidence that can say no.

Infrared and visible intensities are not comparable, their edges are, so everything here works on structure maps
(:func:`structure`: gradient magnitude saturated at its 90th percentile, zero-mean):

1. **Scale prior.** The source is first mapped onto the target frame by the ratio of the image sizes (a thermal
   640x512 image onto a 1280x1024 RGB grid starts at scale 2), or by an earlier registration (``init``). Frames of
   different aspect ratios start from square pixels as well (:func:`priors`).
2. **Global search** at a working resolution of about 192 px: for each rotation (default ±20°, 2.5° steps) and
   scale (0.70-1.43 around the prior, 13 log steps), every translation up to a quarter of the frame is scored by
   the correlation of the high-passed maps over the whole target frame (:func:`frame_ncc`, ``cv2.matchTemplate``).
3. **Block matching** (:mod:`calibration.blockmatch`) from the start and the best distinct candidates: blocks of
   the target found in the warped source give control points; the model, or a simpler one when the points do not
   support its extra terms, is fitted to them robustly, at about 320, 640 and 960 px. The correlation over the
   overlap is then maximised around that fit (:func:`polish`). The candidate with the highest frame correlation
   wins.
4. **Confidence** (recorded in ``info["confidence"]``): the correlation reached over the overlap, the share of
   the target frame the source covers, how many blocks, and what
   share, agree on the fit, how much of the frame they span, how far they sit from it, and whether another start
   ended elsewhere with nearly the same score. :func:`assess` turns them into a verdict; the command line exits
   with code 3 and writes nothing when it fails.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import optimize

from calibration.align import corner_shift, gradient_magnitude, masked_ncc
from calibration.blockmatch import DOF, antialias, grid, refine_blocks, vertex
from calibration.registration import Registration

SEARCH_SIDE = 192
ROTATIONS = tuple(np.arange(-20.0, 20.01, 2.5))
SCALES = tuple(np.exp(np.arange(-6, 7) * 0.06))  # 0.70-1.43, 1 included
TOP = 4  # distinct candidates refined by block matching (with one start: the start and the search's 3 best)
SHIFT = 0.25  # translations searched: up to this share of the image's long side
HP_SIGMA = 2.0  # px at the working scale: what the high-pass keeps (edge positions, not the density of texture)
AMBIGUITY = 0.97  # another solution within 3 % of the best score, more than 1 % of the long side away, is a tie
MIN_NCC = 0.11  # correlation of the high-passed structure maps over the overlap: wrong fits reach 0.05-0.10 (bench)
MIN_COVERAGE = 0.25  # share of the target frame the warped source must cover: less is too little to judge
MIN_INLIERS = 6  # blocks that must agree with the fitted model: enough to determine an affine
MAX_RESIDUAL = 0.01  # RMS distance of the agreeing blocks from the model, as a share of the long side


def structure(img: np.ndarray) -> np.ndarray:
    """The map both modalities are compared on.

    Gradient magnitude, saturated at the 90th percentile (``g / sqrt(g^2 + p90^2)``): infrared and visible agree on
    where edges are, not on their contrast, and without the saturation a few lamps at night or a hot engine would
    outweigh the rest of the scene. The map is zero-mean and of unit RMS over the image, so that 0 stands for
    "no information": the padding of a warped or rectified image (exact zeros connected to the border, whose
    step is no edge of the scene) and, after warping, whatever the source does not cover.
    """
    g = gradient_magnitude(img)
    e = max(float(np.percentile(g, 90)), 1e-6)
    s = g / np.sqrt(g * g + e * e)
    grey = img if img.ndim == 2 else img.max(axis=2)
    valid = np.ones(s.shape, bool)
    zero = (grey == 0).astype(np.uint8)
    if zero.any():
        n, labels = cv2.connectedComponents(zero, connectivity=4)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        pad = np.isin(labels, border[border > 0])
        if pad.any():
            valid = cv2.dilate(pad.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    if not valid.any():
        return np.zeros_like(s)
    s -= s[valid].mean()
    s /= max(float(s[valid].std()), 1e-6)
    s[~valid] = 0
    return s


def prior(source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """The 3x3 map of the source frame onto the target frame (the same field of view): per-axis size ratios."""
    (sw, sh), (tw, th) = source_size, target_size
    return np.diag([tw / sw, th / sh, 1.0])


def priors(source_size: tuple[int, int], target_size: tuple[int, int]) -> list[np.ndarray]:
    """The starts that the image sizes suggest: :func:`prior` (one image resized to the other's frame) and, when
    the aspect ratios differ, square pixels, centre on centre, at the widths' ratio and at the heights' ratio.
    A 640x512 thermal camera beside a 1024x1024 RGB one sees a different share of the scene along each axis:
    stretching it by 1.6 x 2.0 puts every edge outside the search's reach. Which axis the two cameras share is
    not known, and the search reaches 0.70-1.43 of a start's scale, so both ratios start a search (1.6 and 2.0;
    483x227 beside 227x227: 0.47 and 1)."""
    (sw, sh), (tw, th) = source_size, target_size
    P = prior(source_size, target_size)
    if abs(math.log(P[0, 0] / P[1, 1])) < 0.02:  # the same aspect ratio (to rounding): one start
        return [P]
    cx, cy = (tw - 1) / 2, (th - 1) / 2
    square = [
        np.array([[s, 0, cx - s * (sw - 1) / 2], [0, s, cy - s * (sh - 1) / 2], [0, 0, 1]]) for s in np.diag(P)[:2]
    ]
    return [P, *square]


def _about_centre(theta_deg: float, scale: float, cx: float, cy: float) -> np.ndarray:
    """3x3 rotation by ``theta_deg`` and uniform ``scale`` about (cx, cy)."""
    M = cv2.getRotationMatrix2D((cx, cy), -theta_deg, scale)  # OpenCV's angle is counter-clockwise on screen
    return np.vstack([M, [0, 0, 1]])


def frame_ncc(warped: np.ndarray, target: np.ndarray) -> float:
    """Correlation of a warped source map with the target's over the whole target frame.

    Both are :func:`structure` maps (zero mean, 0 where the source does not reach). The source is normalised by
    its RMS where it lands and the frame's size, as if it covered the whole frame: target edges the source leaves
    uncovered count against a fit, so that no warp scores by shrinking the overlap to a few well-matching edges.
    For full coverage this is the plain normalised cross-correlation.
    """
    x, y = warped, target - target.mean()
    on = x != 0
    rms = math.sqrt(float((x[on] ** 2).mean())) if on.any() else 0.0
    return float((x * y).sum() / max(rms * math.sqrt(y.size * float((y * y).sum())), 1e-12))


def search(source: np.ndarray, target: np.ndarray, start: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Candidates ``(ncc, H)``, best first, from rotations x scales about the target centre after ``start``
    (a source -> target 3x3), each at the translation that maximises :func:`frame_ncc`.

    Every translation up to :data:`SHIFT` of the working frame is scored exactly: the source's structure map is
    warped onto a canvas that pads the target frame by that much on every side, and normalised cross-correlation
    of each frame-sized window with the target map (``cv2.matchTemplate``, FFT inside) is the frame NCC of that
    shift, the source being zero where it does not reach."""
    th, tw = target.shape[:2]
    k = SEARCH_SIDE / max(tw, th)
    K = np.diag([k, k, 1.0])
    size = (max(8, round(tw * k)), max(8, round(th * k)))
    gt = _highpass(cv2.resize(target, size, interpolation=cv2.INTER_AREA))
    gt -= gt.mean()
    # The source's map at about the working scale first (area averaging), then the small residual warps.
    s0 = k * math.sqrt(abs(np.linalg.det(start[:2, :2])))
    pre = cv2.resize(source, None, fx=s0, fy=s0, interpolation=cv2.INTER_AREA)
    rms = math.sqrt(float((pre[pre != 0] ** 2).mean())) if pre.any() else 1.0
    norm = max(rms * math.sqrt(gt.size * float((gt * gt).sum())), 1e-12)
    Pre = np.diag([pre.shape[1] / source.shape[1], pre.shape[0] / source.shape[0], 1.0])
    base = K @ start @ np.linalg.inv(Pre)  # pre-scaled source -> working target grid
    pad = round(SHIFT * max(size))
    canvas = (size[0] + 2 * pad, size[1] + 2 * pad)
    Pad = np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1.0]])
    cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    out = []
    for theta in ROTATIONS:
        for s in SCALES:
            M = _about_centre(theta, s, cx, cy) @ base
            w = _highpass(cv2.warpPerspective(pre, Pad @ M, canvas, flags=cv2.INTER_LINEAR))
            r = cv2.matchTemplate(w, gt, cv2.TM_CCORR) / norm  # (2 pad + 1)^2: r[y, x] is the shift (pad-x, pad-y)
            y, x = np.unravel_index(int(r.argmax()), r.shape)
            dx, dy = pad - x - vertex(r[y, x - 1 : x + 2]), pad - y - vertex(r[y - 1 : y + 2, x])
            M = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ M
            H = np.linalg.inv(K) @ M @ Pre  # source -> target at full resolution
            out.append((float(r[y, x]), H))
    out.sort(key=lambda c: -c[0])
    return out


def _highpass(m: np.ndarray) -> np.ndarray:
    return m - cv2.GaussianBlur(m, (0, 0), HP_SIGMA)


def _distinct(cands: list[tuple[float, np.ndarray]], size: tuple[int, int], n: int, px: float) -> list:
    keep: list[tuple[float, np.ndarray]] = []
    for c in cands:
        reg = Registration(c[1], "homography", size, (1, 1))
        if all(corner_shift(reg, Registration(k[1], "homography", size, (1, 1))) > px for k in keep):
            keep.append(c)
        if len(keep) == n:
            break
    return keep


def _scorer(gs: np.ndarray, gt: np.ndarray, scale: float, overlap: bool = False):
    """H -> :func:`frame_ncc` of the high-passed structure maps, compared at ``scale`` times the target's size; with
    ``overlap``, H -> (their correlation over the part of the target the source covers, the share it covers)."""
    S, size = grid(gt.shape, scale)
    src = antialias(gs, scale)
    t = _highpass(cv2.warpPerspective(antialias(gt, scale), S, size))
    ones, k = np.ones(gs.shape[:2], np.uint8), np.ones((5, 5), np.uint8)

    def score(H: np.ndarray):
        w = _highpass(cv2.warpPerspective(src, S @ H, size, flags=cv2.INTER_LINEAR))
        if not overlap:
            return frame_ncc(w, t)
        on = cv2.erode(cv2.warpPerspective(ones, S @ H, size, flags=cv2.INTER_NEAREST), k) > 0
        if on.sum() < 64:
            return 0.0, float(on.mean())
        return masked_ncc(w, t, on), float(on.mean())

    return score


def _correction(p: np.ndarray, model: str, size: tuple[int, int]) -> np.ndarray:
    """3x3 correction in the target frame from parameters in pixels of displacement at the frame's corners:
    shift (2), then scale and rotation (similarity), then the two shears (affine), then perspective (homography)."""
    w, h = size
    c = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1.0]])  # about the frame's centre
    r = math.hypot(w, h) / 2  # a unit of a linear term moves the corners by about a pixel
    L = np.eye(3)
    L[0, 2], L[1, 2] = p[0], p[1]
    if len(p) >= 4:
        L[:2, :2] += np.array([[p[2], -p[3]], [p[3], p[2]]]) / r
    if len(p) >= 6:
        L[:2, :2] += np.array([[p[4], p[5]], [p[5], -p[4]]]) / r
    if len(p) >= 8:
        L[2, :2] = np.array([p[6], p[7]]) / (r * r)
    return np.linalg.inv(c) @ L @ c


def polish(score, H: np.ndarray, value: float, model: str, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Maximise ``score`` (the correlation over the overlap; ``value`` at ``H``) over the model's parameters
    around ``H`` (Powell's method, to 0.02 px at the corners): a well-defined optimum, reached from any nearby
    start, so that the same scene gives the same answer however it was warped.
    Returns the better of the two and its score."""
    n = DOF[model]
    res = optimize.minimize(
        lambda p: -score(_correction(p, model, size) @ H),
        np.zeros(n),
        method="Powell",
        options={"xtol": 0.02, "ftol": 1e-7, "maxfev": 200 * n},
    )
    return (_correction(res.x, model, size) @ H, float(-res.fun)) if -res.fun >= value else (H, value)


def auto_register(
    source: np.ndarray, target: np.ndarray, model: str = "affine", init: Registration | None = None
) -> Registration:
    """Register ``source`` (IR) onto ``target`` (RGB) without control points; see the module docstring.

    Args:
        source, target: images (grey or BGR, any dtype); their sizes may differ.
        model: translation, similarity, affine or homography.
        init: an earlier registration of this rig to start from (default: the size priors, :func:`priors`).

    Returns:
        The registration, with ``info["confidence"]`` (see :func:`assess`) and ``info["refinement"]``.
    """
    sh, sw = source.shape[:2]
    th, tw = target.shape[:2]
    starts = [init.H] if init is not None else priors((sw, sh), (tw, th))
    k = math.sqrt(abs(np.linalg.det(starts[0][:2, :2])))  # the stretched prior's: the others' geometric mean
    if abs(math.log(k)) > math.log(1.25):  # another resolution: resample the source to the target's scale first
        small = cv2.resize(source, (max(8, round(sw * k)), max(8, round(sh * k))), interpolation=cv2.INTER_CUBIC)
        U = np.array([[small.shape[1] / sw, 0, 0], [0, small.shape[0] / sh, 0], [0, 0, 1.0]])
        U[:2, 2] = (np.diag(U)[:2] - 1) / 2  # pixel centres: x' = (x + 0.5) f - 0.5
        reg = _register(small, target, model, [S @ np.linalg.inv(U) for S in starts])
        out = Registration(reg.H @ U, model, (sw, sh), (tw, th), info=reg.info)
        out.info["resampled_source"] = f"{sw}x{sh} -> {small.shape[1]}x{small.shape[0]} (the target's scale)"
        return out
    return _register(source, target, model, starts)


def _register(source: np.ndarray, target: np.ndarray, model: str, starts: list[np.ndarray]) -> Registration:
    """:func:`auto_register` once the source is at about the target's scale, from ``starts`` (source -> target)."""
    sh, sw = source.shape[:2]
    th, tw = target.shape[:2]
    gs, gt = structure(source), structure(target)
    long = max(tw, th)
    # block matching at about 320, 640 and 960 px: coarse passes reach far, the fine one is precise
    passes = [(min(1.0, side / long), radius) for side, radius in ((320, 10), (640, 6), (960, 4))]
    passes = [p for i, p in enumerate(passes) if i == 0 or p[0] > passes[i - 1][0]]
    score = _scorer(gs, gt, min(1.0, 480 / long))
    agree = _scorer(gs, gt, min(1.0, 480 / long), overlap=True)
    scored = sorted(((score(S), S) for S in starts), key=lambda c: -c[0])
    start = scored[0][1]  # the better size prior: what the gain is measured from
    # the starts themselves compete too: an aligned pair must be able to stay where it is
    found = [c for S in starts for c in search(gs, gt, S)]
    # every start, and the search's best: a second size prior takes no place from the search
    n = TOP - 1 + len(starts)
    cands = _distinct([*scored, *sorted(found, key=lambda c: -c[0])], (sw, sh), n, px=0.04 * long)
    results = []
    for _, H in cands:
        fit = refine_blocks(gs, gt, H, model, passes)
        if fit is not None:
            results.append((score(fit.H), fit))
    results.sort(key=lambda r: -r[0])
    for i, (_, fit) in enumerate(results):
        # then the correlation over the overlap, maximised around the blocks' fit: every pixel counts, not only the
        # blocks' peaks, and its optimum is one point whatever the start (ECC here stopped short of it by pixels,
        # at different places for the same scene warped differently). Not the frame score: that one rewards a fit
        # for covering more of the frame, a bias that moved fits of a source covering part of the frame by pixels.
        polished, better = polish(lambda H: agree(H)[0], fit.H, agree(fit.H)[0], model, (tw, th))
        if better >= MIN_NCC:  # below, the correlation is too weak for its optimum to mean much
            fit.H, results[i] = polished, (score(polished), fit)
    if not results:  # nothing matched: assess says so for zero blocks
        reg = Registration(start, model, (sw, sh), (tw, th))
        reg.info["confidence"] = assess(0.0, agree(start)[0], 0, 0, 0.0, 0.0, long)
        return reg
    results.sort(key=lambda r: -r[0])
    best, fit = results[0]
    reg = Registration(fit.H, model, (sw, sh), (tw, th))
    rivals = [
        corner_shift(reg, Registration(f.H, model, (sw, sh), (tw, th))) for v, f in results[1:] if v >= AMBIGUITY * best
    ]
    reg.info["refinement"] = (
        f"global search ({len(ROTATIONS)} rotations x {len(SCALES)} scales x translations), then {model} fitted "
        f"to matched blocks of the structure maps from the {len(cands)} best starts, the correlation over the "
        "overlap maximised"
    )
    inl = fit.inliers
    extent = _extent(fit.dst[inl], (tw, th))
    ncc, cover = agree(fit.H)
    reg.info["confidence"] = assess(
        ncc, agree(start)[0], int(inl.sum()), fit.blocks, fit.residual_px, max(rivals, default=0.0), long, extent, cover
    )
    reg.info["confidence"]["frame_ncc"] = round(best, 4)
    reg.info["confidence"]["corner_sigma_px"] = round(fit.corner_sigma_px, 3)
    return reg


def _extent(pts: np.ndarray, size: tuple[int, int]) -> float:
    """Share of the frame's area that the convex hull of the control points covers."""
    if len(pts) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(pts.astype(np.float32)))) / (size[0] * size[1])


def assess(
    ncc: float,
    start_ncc: float,
    inliers: int,
    blocks: int,
    residual_px: float,
    rival_px: float,
    long_side: float,
    extent: float = 1.0,
    coverage: float = 1.0,
) -> dict:
    """The confidence record of a fit: the figures and a verdict.

    ``ok`` is false when the correlation ``ncc`` of the high-passed structure maps over the overlap stays under
    :data:`MIN_NCC`: the two images share too little structure for its optimum to mean much, typically a dark
    visible image at night (on the benchmark's public pairs every trusted fit was within 2.5 px of consistency,
    while most refused ones were off). It is false too when fewer than :data:`MIN_INLIERS` blocks agree with the
    fitted model (it is not determined); when they sit further than :data:`MAX_RESIDUAL` of the long side from it
    (RMS); or when another start ends at a solution more than 1 % of the long side away, scoring within 3 %
    (ambiguous), or when the source covers less than :data:`MIN_COVERAGE` of the target frame. The share of blocks
    that agree and their ``extent`` are recorded, not judged: the polished fit rests on the whole overlap, and
    refusing fits on them refused only right ones on the benchmark. The correlation is judged over the overlap, not
    the frame: a thermal camera with a narrower field of view than the RGB one covers part of its frame only.
    """
    reasons = []
    share = inliers / max(blocks, 1)
    if blocks == 0:
        reasons.append(
            "no part of the images could be matched (too small, flat, or different scenes?): register a daylight pair "
            "of the same rig and apply it"
        )
    elif ncc < MIN_NCC:
        reasons.append(
            f"the images' structure correlates only {ncc:.3f} (< {MIN_NCC}) at the best fit (a night or dark image, "
            "or different scenes?): register a daylight pair of the same rig and apply it"
        )
    elif coverage < MIN_COVERAGE:
        reasons.append(
            f"the source covers only {coverage:.0%} of the target frame at the best fit (< {MIN_COVERAGE:.0%}): "
            "give control points or start from an earlier registration (--init)"
        )
    elif inliers < MIN_INLIERS:
        reasons.append(f"only {inliers} of {blocks} image blocks agree on one transform")
    if inliers >= MIN_INLIERS and residual_px > MAX_RESIDUAL * long_side:
        reasons.append(f"blocks sit {residual_px:.1f} px from the fitted model on average")
    if rival_px > 0.01 * long_side:
        reasons.append(f"another solution {rival_px:.0f} px away scores within {100 * (1 - AMBIGUITY):.0f} %")
    value = min(1.0, share * 2) * max(0.0, min(1.0, (ncc - MIN_NCC) / MIN_NCC))
    value *= 0.0 if reasons else 1.0
    return {
        "ok": not reasons,
        "value": round(value, 3),
        "structure_ncc": round(ncc, 4),
        "gain_over_start": round(ncc - start_ncc, 4),
        "blocks_agreeing": inliers,
        "blocks_with_structure": blocks,
        "block_extent": round(extent, 3),
        "coverage": round(coverage, 3),
        "block_residual_px": round(residual_px, 3),
        "rival_solution_px": round(rival_px, 2),
        "reasons": reasons,
    }
