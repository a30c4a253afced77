"""The evaluation code of the TPAMI 2024 survey (RollingPlain/IVIF_ZOO, ``Metric/eval_torch.py``), as it computes.

Liu, Wu, Liu, Wang, Jiang, Ma, Zhong, Fan and Liu, "Infrared and Visible Image Fusion: From Data Compatibility to
Task Adaption", IEEE TPAMI 2024. Its code reads the three images with PIL's ``convert('L')`` and scores each image
on its own: the tensor metrics in float32 (torch, on the CPU here), Qabf and Nabf in numpy, MI and NMI with
Python loops over a 256 x 256 joint histogram. Every function below takes (B, 1, H, W) float64 grey levels
(0-255, rounded) as the ``ivifzoo`` convention makes them, ``f`` fused, ``a`` visible, ``b`` infrared, computes
each image in the code's own precision and order of operations, and returns (B,) float64. ``docs/metrics.md``
lists each quirk beside the standard definition. Where the code divides zero by zero (a flat image: QNCIE, Qcb,
CC, SCD, Nabf) or stops (MS_SSIM on a side of 160 pixels or less, AG on a side of 1) the value is NaN, and
``rgbt evaluate`` says so.

The repository's two versions: ``Metric/`` of 2024-09-28 (14 metrics) and ``Metric/Metric/`` of 2024-10-07 (moved
back to ``Metric/``, commit 2fc8473), which adds CE, NMI, QNCIE, TE, EI, Qy and Qcb and computes the 14 others
with the same code. The survey (arXiv 2501.10761, January 2025) postdates both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d


def per_image(fn: Callable[..., float]) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Score (B, 1, H, W) batches with ``fn(f, vis, ir)`` on one (H, W) float32 image at a time, as the code does."""

    def run(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        vals = [float(fn(*(x[i, 0].to(torch.float32).cpu() for x in (f, a, b)))) for i in range(f.shape[0])]
        return torch.tensor(vals, dtype=torch.float64)

    run.__name__ = fn.__name__
    return run


# --- information ---------------------------------------------------------------------------------------------


def en(f, a, b):
    """``torch.histc`` with 256 bins over [0, 255] (bin width 255/256), log2 with 1e-7 added, float32."""
    h = torch.histc(f, bins=256, min=0, max=255)
    h = h / h.sum()
    return -torch.sum(h * torch.log2(h + 1e-7))


def _hab(x: np.ndarray, y: np.ndarray) -> float:
    """The code's ``Hab``: MI in bits from the joint histogram (its loops, vectorised: the same sums)."""
    h = np.bincount((x.astype(np.int64) * 256 + y).ravel(), minlength=256 * 256).reshape(256, 256).astype(np.float64)
    h = h / np.sum(h)
    m1, m2 = np.sum(h, axis=0), np.sum(h, axis=1)
    hx = np.sum(m1[m1 != 0] * np.log2(m1[m1 != 0])) + np.sum(m2[m2 != 0] * np.log2(m2[m2 != 0]))
    hxy = np.sum(h[h != 0] * np.log2(h[h != 0]))
    return float(hxy - hx)


def _ints(*xs: torch.Tensor) -> list[np.ndarray]:
    return [x.numpy().astype(np.int32) for x in xs]


def mi(f, a, b):
    """MI(ir, F) + MI(vis, F), bits."""
    fi, ai, bi = _ints(f, a, b)
    return _hab(bi, fi) + _hab(ai, fi)


def _np_entropy(x: np.ndarray) -> float:
    hist, _ = np.histogram(x, bins=256, range=(0, 256), density=True)
    return float(-np.sum(hist * np.log2(hist + 1e-10)))


def nmi(f, a, b):
    """2 (MI(ir, F) + MI(vis, F)) / (H(ir) + H(vis)): the sources' entropies, not the fused image's."""
    fi, ai, bi = _ints(f, a, b)
    return 2 * (_hab(bi, fi) + _hab(ai, fi)) / (_np_entropy(bi) + _np_entropy(ai) + 1e-10)


def te(f, a, b):
    """ "Tsallis entropy" with q = 1, i.e. Shannon: H(ir) + H(vis) - H(F), each with ``histc`` (256 bins over
    [0, 255]) and 1e-10 added inside the log."""

    def h(x: torch.Tensor) -> float:
        p = torch.histc(x.reshape(-1), bins=256, min=0, max=255)
        p = p / torch.sum(p)
        return (-torch.sum(p * torch.log2(p + 1e-10))).item()

    return h(b) + h(a) - h(f)


def ce(f, a, b):
    """Binary cross entropy between sigmoid(F) and (sigmoid(ir) + sigmoid(vis)) / 2, on grey levels 0-255 (where
    the sigmoid is 1 for nearly every level), both clamped to [1e-7, 1 - 1e-7]."""
    eps = 1e-7
    fs = torch.clamp(torch.sigmoid(f), eps, 1.0 - eps)
    t = torch.clamp((torch.sigmoid(b) + torch.sigmoid(a)) / 2, eps, 1.0 - eps)
    return F.binary_cross_entropy(fs, t)


def qncie(f, a, b):
    """Nonlinear correlation information entropy from Pearson correlations of the min-max normalised images (not the
    rank-based nonlinear correlation of the metric's paper), eigenvalues of the 3 x 3 matrix in float32."""

    def norm(x):
        return (x - x.min()) / (x.max() - x.min())

    def ncc(x, y):
        mx, my = torch.mean(x), torch.mean(y)
        num = torch.sum((x - mx) * (y - my))
        return num / (torch.sqrt(torch.sum((x - mx) ** 2) * torch.sum((y - my) ** 2)) + 1e-10)

    ir, vi, fu = norm(b), norm(a), norm(f)
    xy, xf, yf = ncc(ir, vi), ncc(ir, fu), ncc(vi, fu)
    m = torch.tensor([[1, xy, xf], [xy, 1, yf], [xf, yf, 1]], dtype=torch.float32)
    if not torch.isfinite(m).all():  # a flat image: 0/0 (LAPACK's eigvals must not see NaN: it crashes)
        return float("nan")
    r = torch.linalg.eigvals(m).real
    hr = -torch.sum(r * torch.log2(r / 3) / 3) / np.log2(256)
    return 1 - hr.item()


# --- gradient ------------------------------------------------------------------------------------------------


def ei(f, a, b):
    """Mean Sobel magnitude, zero padding, float32."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    ky = torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3)
    x = f[None, None]
    gx, gy = F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)
    return torch.mean(torch.sqrt(gx**2 + gy**2)).item()


def sf(f, a, b):
    rf, cf = f[1:, :] - f[:-1, :], f[:, 1:] - f[:, :-1]
    return torch.sqrt(torch.sqrt(torch.mean(rf**2)) ** 2 + torch.sqrt(torch.mean(cf**2)) ** 2)


def ag(f, a, b):
    """``torch.gradient`` (central differences, one-sided at the borders), divided by H W (not (H-1)(W-1)); NaN
    for a side of 1 pixel, where ``torch.gradient`` stops."""
    if min(f.shape) < 2:
        return float("nan")
    gy, gx = torch.gradient(f)
    return torch.sum(torch.sqrt((gx**2 + gy**2) / 2)) / (f.shape[0] * f.shape[1])


def sd(f, a, b):
    return torch.sqrt(torch.sum((f - torch.mean(f)) ** 2) / (f.shape[0] * f.shape[1]))


def _qabf_sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    pad = np.pad(img, ((1, 1), (1, 1)), "constant", constant_values=(0, 0))
    sx = convolve2d(pad, np.flip(h3), mode="valid")
    sy = convolve2d(pad, np.flip(h1), mode="valid")
    g = np.sqrt(np.multiply(sx, sx) + np.multiply(sy, sy))
    ang = np.zeros(img.shape)  # float64, from float32 arctangents
    zero = sx == 0
    ang[~zero] = np.arctan(sy[~zero] / sx[~zero])
    ang[zero] = np.pi / 2
    return g, ang


def qabf(f, a, b):
    """Xydeas-Petrovic, the code's ``get_Qabf`` on float32 levels 0-255 (strengths in float32, angles in float64)."""
    ga, aa = _qabf_sobel(b.numpy())
    gb, ab = _qabf_sobel(a.numpy())
    gf, af = _qabf_sobel(f.numpy())

    def q(ax, gx):
        gaf = np.where(gx > gf, gf / gx, np.where(gx == gf, gf, gx / gf))
        aaf = 1 - np.abs(ax - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (gaf - 0.5))) * (0.9879 / (1 + np.exp(-22 * (aaf - 0.8))))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = np.sum(np.multiply(q(aa, ga), ga) + np.multiply(q(ab, gb), gb))
        return num / np.sum(ga + gb)


def _ext(x: np.ndarray) -> np.ndarray:
    """``per_extn_im_fn`` for a 3 x 3 window: the border rows and columns copy the second row and column."""
    p, q = x.shape
    out = np.zeros((p + 2, q + 2))
    out[1 : p + 1, 1 : q + 1] = x
    out[0:1, :] = out[2, :].reshape(1, -1)
    out[p + 1 : p + 2, :] = out[-3, :].reshape(1, -1)
    out[:, 0:1] = out[:, 2].reshape(-1, 1)
    out[:, q + 1 : q + 2] = out[:, -3].reshape(-1, 1)
    return out


def nabf(f, a, b):
    """Kumar's modified Nabf, the code's ``get_Nabf`` (float64; Sobel /8 on a reflected border)."""
    vt = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    ht = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8

    def grads(x):
        e = _ext(x.numpy().astype(np.float64))
        gv, gh = convolve2d(e, vt, mode="valid"), convolve2d(e, ht, mode="valid")
        with np.errstate(divide="ignore", invalid="ignore"):
            ang = np.where((gv == 0) & (gh == 0), 0, np.arctan(gv / gh))
        return np.sqrt(gh**2 + gv**2), ang

    (ga, aa), (gb, ab), (gf, af) = grads(b), grads(a), grads(f)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):

        def q(gx, ax):
            r = np.zeros(gx.shape)
            m = (gx == 0) | (gf == 0)
            r[~m] = np.where(gx > gf, gf / gx, gx / gf)[~m]
            aaf = np.abs(np.abs(ax - af) - np.pi / 2) * 2 / np.pi
            qg = 0.9999 / (1 + np.exp(-19 * (r - 0.5)))
            qa = 0.9995 / (1 + np.exp(-22 * (aaf - 0.5)))
            return np.sqrt(qg * qa)

        qaf, qbf = q(ga, aa), q(gb, ab)
        wa, wb = np.where(ga >= 2, ga**1.5, 0), np.where(gb >= 2, gb**1.5, 0)
        na = np.where((gf > ga) & (gf > gb), 1, 0)
        return np.sum(na * ((1 - qaf) * wa + (1 - qbf) * wb)) / np.sum(wa + wb)


# --- structural ----------------------------------------------------------------------------------------------


def _corr(x, y):
    x, y = x - torch.mean(x), y - torch.mean(y)
    return torch.sum(x * y) / torch.sqrt(torch.sum(x * x) * torch.sum(y * y))


def cc(f, a, b):
    def r(s):
        return torch.sum((s - torch.mean(s)) * (f - torch.mean(f))) / torch.sqrt(
            torch.sum((s - torch.mean(s)) ** 2) * torch.sum((f - torch.mean(f)) ** 2)
        )

    return torch.mean(torch.tensor([r(b), r(a)]))


def scd(f, a, b):
    return _corr(f - a, b) + _corr(f - b, a)


def _window(n: int, sigma: float) -> torch.Tensor:
    """The code's Gaussian: ``linspace(-n // 2, n // 2, n)``, so for odd n its points run from -(n + 1)/2 to (n - 1)/2,
    spaced (n + 0)/(n - 1) apart: off-centre and slightly stretched."""
    x = torch.linspace(-n // 2, n // 2, n)
    x, y = torch.meshgrid(x, x, indexing="ij")
    g = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    return g / g.sum()


def _same(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, k, padding=n // 2)`` on one (H, W) float32 image, with the same float32 products and sums.

    Windows of 9 and 17 taps: PyTorch computes such a convolution as one matrix product over the image's n x n
    neighbourhoods (im2col); here the same product runs on strips of rows, which is the same arithmetic for every
    pixel (each output is one row of the window times one column of neighbourhoods) without the 289-fold copy of
    the whole image. The float32 sums matter: VIF subtracts squared means from means of squares, and the cancellation
    leaves float32 rounding at 1e-5 of the result, so only the same arithmetic gives the code's value."""
    n, p = k.shape[-1], k.shape[-1] // 2
    if n < 9:
        return F.conv2d(x[None, None], k[None, None], padding=p)[0, 0]
    h, w = x.shape
    xp = F.pad(x[None, None], (p, p, p, p))
    out, row = torch.empty(h, w), k.reshape(1, -1)
    step = max(1, (1 << 22) // (n * n * w))  # about 16 MB of neighbourhoods at a time
    for r0 in range(0, h, step):
        r1 = min(r0 + step, h)
        out[r0:r1] = (row @ F.unfold(xp[..., r0 : r1 + 2 * p, :], n)[0]).view(r1 - r0, w)
    return out


def _sep_same(t: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """'Same' zero-padded filtering of (N, H, W) float64 maps by the separable window ``col`` x ``row`` (odd
    lengths): each pass one matrix product over a strided view of the padded maps (float64 BLAS, where
    ``F.conv2d`` on doubles takes a slow path); equal to the 2-D 'same' convolution to about 1e-15."""
    pc, pr = col.numel() // 2, row.numel() // 2
    t = F.pad(t, (0, 0, pc, pc)).unfold(1, col.numel(), 1) @ col  # (N, H, W)
    return F.pad(t, (pr, pr)).unfold(2, row.numel(), 1) @ row


def _vif_terms(ref, dist, stats, win, scale):
    """One scale of ``vifp_mscale`` for a source, with the fused image's own filtering (``stats``) done once."""
    mu1, mu2 = _same(ref, win), stats["mu"]
    s1 = _same(ref * ref, win) - mu1 * mu1
    s2 = stats["sq"] - mu2 * mu2
    s12 = _same(ref * dist, win) - mu1 * mu2
    s1[s1 < 0] = 0
    s2[s2 < 0] = 0
    g = s12 / (s1 + 1e-10)
    sv = s2 - g * s12
    g[s1 < 1e-10] = 0
    sv[s1 < 1e-10] = s2[s1 < 1e-10]
    s1[s1 < 1e-10] = 0
    g[s2 < 1e-10] = 0
    sv[s2 < 1e-10] = 0
    sv[g < 0] = s2[g < 0]
    g[g < 0] = 0
    sv[sv <= 1e-10] = 1e-10
    return torch.sum(torch.log10(1 + g**2 * s1 / (sv + 2))), torch.sum(torch.log10(1 + s1 / 2))


def vif(f, a, b):
    """Multiscale pixel VIF with 'same' zero-padded filtering and the off-centre window of :func:`_window`, summed
    over the two sources (ir first). The fused image's filtering is shared by the two sources' terms."""
    refs, dist = [b, a], f
    num, den = [0, 0], [0, 0]
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _window(n, n / 5)
        if scale > 1:
            refs = [_same(r, win)[::2, ::2] for r in refs]
            dist = _same(dist, win)[::2, ::2]
        stats = {"mu": _same(dist, win), "sq": _same(dist * dist, win)}
        for i, ref in enumerate(refs):
            nu, de = _vif_terms(ref, dist, stats, win, scale)
            num[i], den[i] = num[i] + nu, den[i] + de
    return num[0] / den[0] + num[1] / den[1]


def mse(f, a, b):
    """On [0, 1] (levels / 255), the mean of the two sources' MSE."""
    a1, b1, f1 = a / 255.0, b / 255.0, f / 255.0
    return 0.5 * torch.mean((f1 - b1) ** 2) + 0.5 * torch.mean((f1 - a1) ** 2)


def psnr(f, a, b):
    """20 log10(255 / sqrt(MSE on [0, 1])): the usual PSNR plus 48.13 dB."""
    return 20 * torch.log10(255 / torch.sqrt(mse(f, a, b)))


def _ssim_yang(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The code's ``ssim_yang`` (float64): a 7 x 7 window whose every row is the 1-D Gaussian (sigma 1.5), so it
    sums to 7, 'same' zero padding (filtered here in two passes: the same values to 1e-15), and C1 = 0.01^2,
    C2 = 0.03^2 on levels 0-255. Returns (map, var x, var y)."""
    g = torch.tensor([np.exp(-((i - 3) ** 2) / float(2 * 1.5**2)) for i in range(7)], dtype=torch.float64)
    g = g / g.sum()
    # The window is ones(7) x g: a box down the columns, g along the rows; the five maps in one pass.
    mu1, mu2, xx, yy, xy = _sep_same(torch.cat([x, y, x.pow(2), y.pow(2), x * y])[:, 0], torch.ones_like(g), g)
    s1 = xx - mu1.pow(2)
    s2 = yy - mu2.pow(2)
    s12 = xy - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * (mu1 * mu2) + c1) * (2 * s12 + c2)) / ((mu1.pow(2) + mu2.pow(2) + c1) * (s1 + s2 + c2))
    return m, s1, s2


def qy(f, a, b):
    """Yang et al.'s metric with the code's :func:`_ssim_yang`: where SSIM(ir, vis) >= 0.75, the sources' SSIM with
    F weighted by their variances; elsewhere the larger of the two."""
    ir, vi, fu = (x[None, None].double() for x in (b, a, f))  # (1, 1, H, W): maps come back (H, W)
    m1, v1, v2 = _ssim_yang(ir, vi)
    m2, m3 = _ssim_yang(ir, fu)[0], _ssim_yang(vi, fu)[0]
    mask = (m1 >= 0.75).double()
    lam = v1 / (v1 + v2 + 1e-10)
    return ((lam * m2 + (1 - lam) * m3) * mask + torch.max(m2, m3) * (1 - mask)).mean().item()


def qcb(f, a, b):
    """Chen-Blum, the code's version (float64): each image min-max normalised to [0, 1], the contrast-sensitivity
    filter applied in the frequency domain (``fftfreq`` scaled by the size / 30), local contrast from unnormalised
    31 x 31 Gaussians (sigma 2 and 4, 'same' zero padding; separable, so filtered here in two passes: the same
    values to 1e-15)."""
    ir, vi, fu = ((x.double() - x.double().min()) / (x.double().max() - x.double().min()) for x in (b, a, f))
    hang, lie = ir.shape[-2:]
    u, v = torch.meshgrid(torch.fft.fftfreq(hang), torch.fft.fftfreq(lie), indexing="ij")
    u, v = u * (hang / 30), v * (lie / 30)
    r = torch.sqrt(u**2 + v**2)
    sd_ = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    xs = torch.arange(-15, 16, dtype=torch.double)
    # The 31 x 31 Gaussians exp(-(x^2 + y^2) / 2 s^2) / (2 pi s^2), s = 2 and 4, 'same', as 1-D passes.
    e2, e4 = (torch.exp(-(xs**2) / (2 * s**2)) for s in (2, 4))

    # The three images' contrast maps together: (3, H, W).
    x = torch.fft.ifft2(torch.fft.fft2(torch.stack([ir, vi, fu])) * sd_).real
    c = _sep_same(x, e2, e2 / (8 * torch.pi)) / (_sep_same(x, e4, e4 / (32 * torch.pi)) + 1e-10) - 1
    c1, c2, cf = (torch.abs(c) ** 3) / (torch.abs(c) ** 2 + 0.0001)

    def q(cx):
        m = (cx < cf).double()
        return (cx / cf) * m + (cf / cx) * (1 - m)

    l1 = (c1**2) / (c1**2 + c2**2 + 1e-10)
    l2 = (c2**2) / (c1**2 + c2**2 + 1e-10)
    return (l1 * q(c1) + l2 * q(c2)).mean().item()


def _gauss_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    c = torch.arange(size, dtype=torch.float32)
    c -= size // 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    g /= g.sum()
    return g.view(1, 1, 1, -1)


def _gfilter(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering along each side at least as long as the window (the code skips shorter ones)."""
    out = x
    if x.shape[2] >= win.shape[-1]:
        out = F.conv2d(out, win.permute(0, 1, 3, 2))
    if x.shape[3] >= win.shape[-1]:
        out = F.conv2d(out, win)
    return out


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = _gfilter(x, win), _gfilter(y, win)
    s1 = 1.0 * (_gfilter(x * x, win) - mu1.pow(2))
    s2 = 1.0 * (_gfilter(y * y, win) - mu2.pow(2))
    s12 = 1.0 * (_gfilter(x * y, win) - mu1 * mu2)
    cs = (2 * s12 + c2) / (s1 + s2 + c2)
    m = ((2 * (mu1 * mu2) + c1) / (mu1.pow(2) + mu2.pow(2) + c1)) * cs
    return torch.flatten(m, 2).mean(-1), torch.flatten(cs, 2).mean(-1)


def _scaled(x: torch.Tensor) -> torch.Tensor:
    """The code's ``TF.to_tensor(X) * 255``: a float array is not divided by 255, so the levels are multiplied by
    255 (values up to 65,025 against a data range of 255, which makes the constants negligible)."""
    return x[None, None] * 255.0


def ssim(f, a, b):
    """Wang's SSIM, 11 x 11 separable Gaussian (sigma 1.5), 'valid', on levels x 255, data range 255; the sum over
    the two sources."""
    win = _gauss_1d()
    return (_ssim_cs(_scaled(b), _scaled(f), win)[0].mean() + _ssim_cs(_scaled(a), _scaled(f), win)[0].mean()).item()


MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if min(x.shape[-2:]) <= 160:  # the code asserts this and stops: not defined here (NaN)
        return torch.tensor(float("nan"))
    win, w = _gauss_1d(), torch.tensor(MS_WEIGHTS)
    mcs = []
    for i in range(len(MS_WEIGHTS)):
        s, cs = _ssim_cs(x, y, win)
        if i < len(MS_WEIGHTS) - 1:
            mcs.append(F.relu(cs))
            pad = [d % 2 for d in x.shape[2:]]
            x, y = F.avg_pool2d(x, kernel_size=2, padding=pad), F.avg_pool2d(y, kernel_size=2, padding=pad)
    stack = torch.stack([*mcs, F.relu(s)], dim=0)
    return torch.prod(stack ** w.reshape((-1, 1, 1)), dim=0).mean()


def ms_ssim(f, a, b):
    """MS-SSIM (5 scales, Wang's weights, average pooling that pads odd sides with zeros) on levels x 255, summed;
    NaN for an image of 160 pixels or less a side, on which the code stops with an assertion."""
    return (_ms_ssim(_scaled(b), _scaled(f)) + _ms_ssim(_scaled(a), _scaled(f))).item()
