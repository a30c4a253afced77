"""The standard metric suite on large images in bounded memory: strips of rows with halos.

``compute_metrics`` holds each image as float64 levels and every metric's full-size maps, about 100 to 400
bytes a pixel: 8.6 GB for a 24-megapixel pair. Here the images stay 8-bit (5 to 7 bytes a pixel) and every
metric runs over strips of about a million pixels:

- histograms (EN, MI, CE), sums (SD, CC, SCD, PSNR, MSE, RMSE) and neighbour stencils (SF, AG, EI, Qabf,
  Nabf) add up strip by strip, with one row of context where a stencil needs it;
- the windowed metrics (SSIM, MEF-SSIM, VIF) compute their 'valid' maps on a strip plus the rows below it that
  its windows and downsampling reach (40 and 33 rows), keep the map rows the strip owns at each scale, and
  centre on the whole image's means, as the whole-image code does;
- Qcb and Qcv filter in the frequency domain, which needs whole images: one source at a time, in the
  precision of the whole-image code, and the rest in strips.

Every pixel's levels are made by the same operations as in ``compute_metrics``; only the order of the final
sums differs (and Qcb's Gaussians are spatial here, FFT there), so the results agree to about 1e-12 relative
for the float64 metrics and 1e-6 for the float32 ones (``tests/test_metrics_streaming.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from fusion.io import rgb_to_grey
from fusion.metrics import gradient, information, perceptual, structural
from fusion.metrics._kernels import (
    entropy_of,
    filter_valid,
    histogram,
    joint_histogram,
    matlab_gradient,
    round_half_up,
    sobel,
)

STREAM_PIXELS = 2_000_000  # rgbt evaluate scores pairs this large in strips (the whole-image code needs ~0.5 KB/px)
STRIP_PIXELS = 600_000  # about 300 MB of working memory for the windowed metrics
ALIGN = 16  # strip tops are multiples of this: VIF's 8, MEF-SSIM's 4 and Qcv's 16-pixel blocks
MEF_HALO, VIF_HALO = 40, 33  # rows below a strip that the windowed metrics' maps reach (see module docstring)
# the standard convention's default set
STREAMED = ["EN", "SD", "SF", "AG", "EI", "MI", "CE", "SCD", "CC", "VIF", "Qabf", "Nabf", "SSIM", "MEF_SSIM"]
STREAMED += ["Qcb", "Qcv", "PSNR", "MSE", "RMSE"]


class Planes:
    """The fused, visible and infrared images as (1, C, H, W) tensors, 8-bit levels (uint8) or float in [0, 1]
    (16-bit files); float64 grey levels of any rows on demand, made exactly as
    :func:`fusion.metrics.compute_metrics` makes them (standard convention) from the images ``read_image``
    gives."""

    def __init__(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor):
        for x in (fused, vis, ir):
            if (
                x.dtype not in (torch.uint8, torch.float32)
                or x.ndim != 4
                or x.shape[0] != 1
                or x.shape[1] not in (1, 3)
            ):
                raise ValueError(f"expected (1, 1 or 3, H, W) uint8 or float32 images, got {x.dtype} {tuple(x.shape)}")
            if x.dtype == torch.float32 and not torch.isfinite(x).all():
                raise ValueError("images contain NaN or infinite values")
        if not (fused.shape[-2:] == vis.shape[-2:] == ir.shape[-2:]):
            raise ValueError(f"sizes differ: {tuple(fused.shape)}, {tuple(vis.shape)}, {tuple(ir.shape)}")
        self.images = (fused, vis, ir)
        self.h, self.w = fused.shape[-2:]

    def rows(self, t: int, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(F, A, B) levels of rows [t, b) clipped to the image, each (1, 1, rows, W) float64."""
        t, b = max(0, t), min(self.h, b)
        out = []
        for x in self.images:
            x = x[..., t:b, :]
            x = x.float() / 255 if x.dtype == torch.uint8 else x  # read_image's float image
            lv = x.double() * 255.0  # compute_metrics' levels
            out.append(rgb_to_grey(lv) if lv.shape[1] == 3 else lv)
        return tuple(out)


def strips(h: int, w: int, strip_pixels: int = STRIP_PIXELS) -> list[tuple[int, int]]:
    """Row ranges [t, b) covering h rows, tops on multiples of ``ALIGN``, about ``strip_pixels`` each."""
    rows = max(ALIGN, (strip_pixels // max(1, w)) // ALIGN * ALIGN)
    return [(t, min(h, t + rows)) for t in range(0, h, rows)]


def _core(x: torch.Tensor, t: int, b: int, t0: int) -> torch.Tensor:
    """Rows [t, b) of a strip that starts at image row t0."""
    return x[..., t - t0 : b - t0, :]


class _Sums:
    """Float64 accumulators keyed by name."""

    def __init__(self):
        self.v: dict[str, torch.Tensor] = {}

    def add(self, key: str, x: torch.Tensor) -> None:
        x = x.double()
        self.v[key] = self.v[key] + x if key in self.v else x.clone()

    def keep_max(self, key: str, x: torch.Tensor) -> None:
        x = x.double()
        self.v[key] = torch.maximum(self.v[key], x) if key in self.v else x.clone()

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.v[key]


def _pass_sums(p: Planes, names: set[str], bounds: list[tuple[int, int]]) -> _Sums:
    """Histograms, sums, extremes and the small-stencil metrics' sums, strip by strip."""
    s = _Sums()
    for t, b in bounds:
        t0 = max(0, t - 1)
        f, a, bb = p.rows(t - 1, b + 1)  # one row of context above and below
        fc, ac, bc = (_core(x, t, b, t0) for x in (f, a, bb))
        for k, x in (("f", fc), ("a", ac), ("b", bc)):
            s.add("sum_" + k, x.sum())
            s.keep_max("min_" + k, -x.amin())  # the minimum, as the maximum of the negated values
            s.keep_max("max_" + k, x.amax())
        lf, la, lb = (x.round().clamp(0, 255) for x in (fc, ac, bc))
        if names & {"EN", "CE", "MI"}:
            for k, x in (("f", lf), ("a", la), ("b", lb)):
                s.add("hist_" + k, histogram(x))
        if "MI" in names:
            s.add("joint_af", joint_histogram(la, lf))
            s.add("joint_bf", joint_histogram(lb, lf))
        if names & {"PSNR", "MSE", "RMSE"}:
            s.add("se_a", ((fc - ac) ** 2).sum())
            s.add("se_b", ((fc - bc) ** 2).sum())
        if "SF" in names:
            s.add("sf_x", ((fc[..., :, 1:] - fc[..., :, :-1]) ** 2).sum())
            fy = f[..., max(0, t - t0 - 1) : b - t0, :]  # row pairs (i - 1, i) for core rows i >= 1
            s.add("sf_y", ((fy[..., 1:, :] - fy[..., :-1, :]) ** 2).sum())
        if "AG" in names:
            gx, gy = matlab_gradient(f)  # one-sided only at the image's own borders: context rows are cropped
            s.add("ag", _core(torch.sqrt((gx**2 + gy**2) / 2), t, b, t0).sum())
        if "EI" in names:
            gx, gy = sobel(f, padding="replicate")
            s.add("ei", _core(torch.sqrt(gx * gx + gy * gy), t, b, t0).sum())
        if names & {"Qabf", "Nabf"}:
            x = torch.cat([f, a, bb], 1)
            if "Qabf" in names:
                sx, sy = (_core(r, t, b, t0) for r in sobel(x, "zeros"))
                num, den = gradient._qabf_sums(sx, sy, torch.float32)
                s.add("qabf_num", num)
                s.add("qabf_den", den)
            if "Nabf" in names:
                sx, sy = (_core(r, t, b, t0) for r in sobel(x, "reflect"))
                num, den = gradient._nabf_sums(sx, sy, torch.float32)
                s.add("nabf_num", num)
                s.add("nabf_den", den)
        if "MEF_SSIM" in names:  # the downsampled scales' sums, for their centring offsets
            x = torch.cat([ac, bc, fc], 1)
            for level in (1, 2):
                x = F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 2)
                s.add(f"mef{level}", x.sum(dim=(2, 3)))
    return s


def _owned(t: int, b: int, h: int, factor: int) -> tuple[int, int | None]:
    """Map rows (relative to the strip's map) that a strip [t, b) owns at a scale downsampled by ``factor``."""
    return 0, (None if b >= h else (b - t) // factor)


def _mef_sizes(h: int, w: int) -> int:
    """How many MEF-SSIM scales fit the 11x11 window."""
    n = 0
    while n < 3 and min(h, w) >= 11:
        n += 1
        h, w = (h + 1) // 2, (w + 1) // 2
    return n


def _pass_windows(p: Planes, names: set[str], bounds: list[tuple[int, int]], s: _Sums) -> dict[str, torch.Tensor]:
    """Centred moments (SD, CC, SCD) and the windowed metrics, strip by strip, with the whole image's means."""
    n = p.h * p.w
    mf, ma, mb = (s["sum_" + k] / n for k in "fab")
    acc = _Sums()
    mef_levels = _mef_sizes(p.h, p.w) if "MEF_SSIM" in names else (1 if "SSIM" in names else 0)
    offs = [(mf + ma + mb) / 3]  # structural.centre at each MEF-SSIM scale
    for level in (1, 2):
        if f"mef{level}" in s.v:
            hl, wl = math.ceil(p.h / 2**level), math.ceil(p.w / 2**level)
            offs.append(s[f"mef{level}"].sum() / (3 * hl * wl))
    vif_off = ((ma + mb) / 2 + mf) / 2
    vif_n = structural.vif_scales(p.h, p.w)
    halo = max(MEF_HALO if mef_levels else 0, VIF_HALO if "VIF" in names else 0)
    for t, b in bounds:
        f, a, bb = p.rows(t, b + halo)
        fc, ac, bc = (x[..., : b - t, :] for x in (f, a, bb))
        dfc, dac, dbc = fc - mf, ac - ma, bc - mb
        acc.add("ff", (dfc * dfc).sum())
        acc.add("aa", (dac * dac).sum())
        acc.add("bb", (dbc * dbc).sum())
        acc.add("fa", (dfc * dac).sum())
        acc.add("fb", (dfc * dbc).sum())
        if "SCD" in names:
            d1, d2 = dfc - dbc, dfc - dac  # (F - B) and (F - A), centred
            acc.add("d1d1", (d1 * d1).sum())
            acc.add("d1a", (d1 * dac).sum())
            acc.add("d2d2", (d2 * d2).sum())
            acc.add("d2b", (d2 * dbc).sum())
        if mef_levels:
            x = (a, bb, f)
            for level in range(mef_levels):
                if x[0].shape[-2] < 11:  # the last strip, too short for this scale: it owns none of its rows
                    break
                lo, hi = _owned(t, b, p.h, 2**level)
                res = perceptual._mef_ssim_scale(
                    *x, dtype=torch.float32, ssim=level == 0, off=offs[level].view(1, 1, 1, 1), reduce=False
                )
                q, ss = res if level == 0 else (res, None)
                q = q[..., lo:hi, :]
                acc.add(f"mef_q{level}", q.sum())
                acc.add(f"mef_n{level}", torch.tensor(q.numel()))
                if ss is not None:
                    acc.add("ssim", (ss[0][..., lo:hi, :].sum() + ss[1][..., lo:hi, :].sum()) / 2)
                if level + 1 < mef_levels:
                    y = F.avg_pool2d(F.pad(torch.cat(x, 1), (0, 1, 0, 1), mode="replicate"), 2, 2)
                    x = (y[:, 0:1], y[:, 1:2], y[:, 2:3])
        if "VIF" in names and vif_n:
            rows = tuple(_owned(t, b, p.h, 2**k) for k in range(vif_n))
            strip = structural.VifStrip(vif_off.view(1, 1, 1, 1), vif_n, rows)
            acc.add("vif", structural._vif_pair(torch.cat([a, bb], 1), f, torch.float32, strip=strip))
    return acc.v


def _normalised(p: Planes, s: _Sums, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """perceptual._normalize255 of F, A and B with the whole image's extremes: (1, 3, H, W) uint8 (the
    normalised levels are integers 0-255)."""
    out = torch.empty(1, 3, p.h, p.w, dtype=torch.uint8)
    for i, k in enumerate("fab"):
        lo, hi = -s["min_" + k], s["max_" + k]
        span = hi - lo if hi > lo else torch.tensor(torch.inf, dtype=torch.float64)
        for t, b in bounds:
            x = p.rows(t, b)[i]
            out[:, i : i + 1, t:b] = round_half_up((x - lo) / span * 255).to(torch.uint8)
    return out


def _filter_strips(
    rows_in: Callable[[int, int], np.ndarray],
    response: Callable[[torch.Tensor], torch.Tensor],
    sx: float,
    sy: float,
    shape: tuple[int, int],
    bounds: list[tuple[int, int]],
    rows_out: Callable[[int, int, np.ndarray], None],
    dtype: type = np.float64,
) -> None:
    """``real(ifft2(fft2(x) * S))`` of an h x w image (perceptual._freq_filter), holding only its half
    spectrum: real FFTs of row strips, the column FFTs in place, the response S (a function of the frequency
    radius, axes scaled by ``sx``, ``sy`` as in perceptual._radius) applied strip by strip, and the inverse
    likewise. ``rows_in(t, b)`` gives rows of x; ``rows_out(t, b, y)`` receives rows of the result."""
    h, w = shape
    spec = np.empty((h, w // 2 + 1), np.complex128 if dtype == np.float64 else np.complex64)
    for t, b in bounds:
        spec[t:b] = scipy.fft.rfft(rows_in(t, b).astype(dtype, copy=False), axis=1)
    scipy.fft.fft(spec, axis=0, overwrite_x=True)  # in place
    fx, fy = perceptual.radius_axes(h, w, sx, sy)
    for t, b in bounds:
        r = torch.sqrt(fx[None, :] ** 2 + fy[t:b, None] ** 2)
        spec[t:b] *= response(r).to(torch.float64 if dtype == np.float64 else torch.float32).numpy()
    scipy.fft.ifft(spec, axis=0, overwrite_x=True)
    for t, b in bounds:
        rows_out(t, b, scipy.fft.irfft(spec[t:b], n=w, axis=1))


def _qcv(norm: torch.Tensor, bounds: list[tuple[int, int]], h: int, w: int) -> torch.Tensor:
    """Qcv from the normalised levels: saliency in strips, the CSF-filtered differences one source at a time."""
    window = 16
    sal = []
    for t, b in bounds:  # strip tops are multiples of 16: the blocks are the whole image's
        t0 = max(0, t - 1)
        src = norm[:, 1:, t0 : b + 1].double()
        grad = tuple(_core(g, t, b, t0) for g in sobel(src))
        sal.append(perceptual._block_sum(perceptual.qcv_saliency(grad), window))
    sal = torch.cat(sal, dim=-2)  # (1, 2, H / 16, W / 16)
    dist = []
    for i in (1, 2):
        blocks: list[torch.Tensor] = []
        diff = norm[0, i].numpy().astype(np.int16) - norm[0, 0].numpy().astype(np.int16)  # exact, 2 bytes/pixel

        def keep(t: int, b: int, y: np.ndarray) -> None:
            d = torch.from_numpy(y)[None, None]
            blocks.append(perceptual._block_sum(d.square_(), window) / (window * window))  # noqa: B023

        _filter_strips(lambda t, b: diff[t:b], perceptual.qcv_csf, w / 8, h / 8, (h, w), bounds, keep)  # noqa: B023
        dist.append(torch.cat(blocks, dim=-2))
    dist = torch.cat(dist, 1)
    num, den = (sal * dist).sum(), sal.sum()
    return num / den if den > 0 else torch.zeros((), dtype=torch.float64)


def _qcb(norm: torch.Tensor, bounds: list[tuple[int, int]], h: int, w: int) -> torch.Tensor:
    """Qcb from the normalised levels: the DoG in the frequency domain one image at a time (float32), the two
    Gaussians (31x31, zero padding) and the quality map in strips."""
    y = torch.empty(1, 3, h, w, dtype=torch.float32)
    for i, j in enumerate((1, 2, 0)):  # A, B, F as qcb orders them

        def keep(t: int, b: int, rows: np.ndarray) -> None:
            y[0, i, t:b] = torch.from_numpy(rows)  # noqa: B023

        plane = norm[0, j].numpy()
        _filter_strips(lambda t, b: plane[t:b], perceptual.qcb_dog, w / 30, h / 30, (h, w), bounds, keep, np.float32)  # noqa: B023
    gs = perceptual.qcb_gaussians()
    total = torch.zeros((), dtype=torch.float64)
    for t, b in bounds:
        ys = F.pad(y[..., max(0, t - 15) : b + 15, :], (15, 15, max(0, 15 - t), max(0, b + 15 - h)))
        g2, g4 = (filter_valid(ys, g, torch.float32) for g in gs)
        total += perceptual.qcb_quality(g2, g4).sum(dtype=torch.float64)
    return total / (h * w)


def stream_standard(
    fused: torch.Tensor,
    vis: torch.Tensor,
    ir: torch.Tensor,
    names: list[str],
    strip_pixels: int = STRIP_PIXELS,
) -> dict[str, float]:
    """The standard convention's metrics ``names`` (a subset of :data:`STREAMED`) of one 8-bit pair, in strips.

    Args:
        fused, vis, ir: (1, 1 or 3, H, W) uint8 (or float32 in [0, 1]), as ``read_image(..., keep_uint8=True)``
            gives them.
        names: metric names.
        strip_pixels: about how many pixels a strip holds (the windowed metrics take about 600 bytes a pixel
            of a strip and its halo).

    Returns:
        ``{name: value}``, equal to ``compute_metrics(..., "standard")`` up to the order of the sums.
    """
    unknown = [n for n in names if n not in STREAMED]
    if unknown:
        raise ValueError(f"not streamed: {unknown}")
    p = Planes(fused, vis, ir)
    want = set(names)
    bounds = strips(p.h, p.w, strip_pixels)
    s = _pass_sums(p, want, strips(p.h, p.w, strip_pixels // 3))  # one row of halo: smaller strips cost nothing
    n = p.h * p.w
    out: dict[str, torch.Tensor] = {}
    if want & {"EN", "CE", "MI"}:
        hf, ha, hb = (s["hist_" + k] for k in "fab")
        out["EN"] = entropy_of(hf)
        out["CE"] = information.cross_entropy_of(hf, ha, hb)
        if "MI" in want:
            out["MI"] = information.mi_of(ha, hf, s["joint_af"]) + information.mi_of(hb, hf, s["joint_bf"])
    if want & {"PSNR", "MSE", "RMSE"}:
        ea, eb = s["se_a"] / n, s["se_b"] / n
        out["MSE"] = 0.5 * (ea + eb)
        out["RMSE"] = 0.5 * (ea.sqrt() + eb.sqrt())
        out["PSNR"] = 10 * torch.log10(255.0**2 / out["MSE"])
    if "SF" in want:
        rf = s["sf_x"] / (p.h * (p.w - 1)) if p.w > 1 else torch.zeros((), dtype=torch.float64)
        cf = s["sf_y"] / ((p.h - 1) * p.w) if p.h > 1 else torch.zeros((), dtype=torch.float64)
        out["SF"] = torch.sqrt(rf + cf)
    if "AG" in want:
        out["AG"] = s["ag"] / n
    if "EI" in want:
        out["EI"] = s["ei"] / n
    if "Qabf" in want:
        out["Qabf"] = gradient.qabf_of(s["qabf_num"], s["qabf_den"])
    if "Nabf" in want:
        out["Nabf"] = s["nabf_num"] / s["nabf_den"]
    if want & {"SD", "CC", "SCD", "SSIM", "MEF_SSIM", "VIF"}:
        m = _pass_windows(p, want, bounds, s)

        def corr(xy: str, xx: str, yy: str) -> torch.Tensor:
            return structural.corr_of(m[xy], m[xx], m[yy])

        out["SD"] = torch.sqrt(m["ff"] / n)
        out["CC"] = 0.5 * (corr("fa", "ff", "aa") + corr("fb", "ff", "bb"))
        if "SCD" in want:
            out["SCD"] = corr("d1a", "d1d1", "aa") + corr("d2b", "d2d2", "bb")
        if "ssim" in m:
            out["SSIM"] = m["ssim"] / m["mef_n0"]
        if "MEF_SSIM" in want:
            qs = [m[f"mef_q{k}"] / m[f"mef_n{k}"] for k in range(3) if f"mef_q{k}" in m]
            out["MEF_SSIM"] = perceptual.mef_combine(torch.stack(qs)[None]) if qs else 1.0
        if "VIF" in want:
            v = m["vif"][0, 0] / m["vif"][0, 1] if "vif" in m else torch.full((2,), float("nan"))
            out["VIF"] = torch.nan_to_num(v, nan=1.0).sum()
    if want & {"Qcb", "Qcv"}:
        norm = _normalised(p, s, bounds)
        if "Qcv" in want:
            out["Qcv"] = _qcv(norm, bounds, p.h, p.w)
        if "Qcb" in want:
            out["Qcb"] = _qcb(norm, bounds, p.h, p.w)
    return {k: float(torch.as_tensor(out[k]).reshape(-1)[0]) for k in names}
