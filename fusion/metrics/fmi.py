"""FMI: Haghighat's fast feature mutual information (Haghighat and Razian 2014), as the tang code runs it.

For every 3x3 window the two feature patches (a source's and the fused image's) are turned into
distributions, their joint distribution is built with Nelsen's copula between Frechet bounds, and the
normalised mutual information is averaged over windows and sources. The reference loops over pixels in
MATLAB; here all windows are processed at once (in chunks, to bound memory), including the code's quirks:

- patches are flattened column-major (MATLAB's ``x(:)``), which fixes the order of the CDFs;
- the fused patch is normalised in place while scoring the first source, so the second source's
  "identical patch" test sees the normalised patch;
- negative joint "probabilities" contribute ``real(-p log2 p) = -p log2 |p|``.

Features: ``pixel`` is the binary Sobel edge map (:func:`sobel_edges`), ``dct`` the orthonormal 2-D DCT of
the whole image; images are on the [0, 1] scale as in the code. The wavelet variant needs MATLAB's 'dmey'
filter, which differs from PyWavelets', and is not provided.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusion.metrics._kernels import sobel

_COLUMN_MAJOR = [r * 3 + c for c in range(3) for r in range(3)]
_CHUNK = 8192  # windows per step: (N, 9, 9) float64 temporaries stay in cache


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """The binary edge map ``edge(x)`` gave in the reference run, for (B, 1, H, W) in [0, 1] -> 0/1 float64.

    Sobel with replicate padding; squared strength b = gx^2 + gy^2 above 4 mean(b); thinning keeps a
    pixel that is a maximum along its dominant gradient axis (b >= left and b > right where |gx| >= |gy|,
    else b >= up and b > down), with zero beyond the border. Octave's OR-of-both-axes thinning and its
    older 2 mean(|g|) threshold were tried and do not reproduce the reference values.
    """
    # Integer Sobel on 8-bit levels: exact, so strengths that are equal stay equal (the thinning keeps
    # ties as the reference did); the scale factor cancels in the threshold and the comparisons.
    x = (x * 255).round()
    gx, gy = sobel(x, "replicate")  # the code's transposed kernel is -SOBEL_X; only magnitudes are used
    by, bx = gy.abs(), gx.abs()
    b = bx * bx + by * by
    cut = 4 * b.mean(dim=(1, 2, 3), keepdim=True)
    p = F.pad(b, (1, 1, 1, 1))
    horizontal = (b >= p[..., 1:-1, :-2]) & (b > p[..., 1:-1, 2:])
    vertical = (b >= p[..., :-2, 1:-1]) & (b > p[..., 2:, 1:-1])
    return ((b > cut) & torch.where(bx >= by, horizontal, vertical)).to(torch.float64)


def _dct_matrix(n: int, device=None) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64, device=device)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II of (B, 1, H, W) (MATLAB ``dct2``)."""
    h, w = x.shape[-2:]
    return _dct_matrix(h, x.device) @ x @ _dct_matrix(w, x.device).T


def _patches(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, N, 9) 3x3 windows in MATLAB column-major order."""
    return F.unfold(x, 3)[:, _COLUMN_MAJOR].transpose(1, 2)


def _normalise(p: torch.Tensor) -> torch.Tensor:
    lo, hi = p.amin(-1, keepdim=True), p.amax(-1, keepdim=True)
    flat = hi == lo
    return torch.where(flat, torch.ones_like(p), (p - lo) / (hi - lo).where(~flat, torch.ones_like(hi)))


def _seqsum(x: torch.Tensor) -> torch.Tensor:
    """Left-to-right sum over the last dimension, as Octave's ``sum`` loop does.

    The order matters: for a flat patch the sequential mean of nine 1/9 is 1/9 + 2.8e-17, so two flat
    patches have a tiny non-zero "covariance" of rounding noise, correlation 1, and an FMI near 1 rather
    than 0. Vectorised (pairwise) sums give exactly 0 and a different published value.
    """
    total = x[..., 0]
    for j in range(1, x.shape[-1]):
        total = total + x[..., j]
    return total


def _entropy(pdf: torch.Tensor) -> torch.Tensor:
    return _seqsum(-(pdf * torch.log2(pdf.where(pdf != 0, torch.ones_like(pdf)))))


def _nfmi(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Normalised feature MI of normalised patches a, f: (N, 9) -> (N,)."""
    apdf, fpdf = a / _seqsum(a)[:, None], f / _seqsum(f)[:, None]
    acdf, fcdf = apdf.cumsum(-1), fpdf.cumsum(-1)
    at, ft = apdf - (_seqsum(apdf) / 9)[:, None], fpdf - (_seqsum(fpdf) / 9)[:, None]
    s = _seqsum(at * ft)
    c = (s / torch.sqrt(_seqsum(at * at) * _seqsum(ft * ft))).where(s != 0, torch.zeros_like(s))
    i = torch.arange(1, 10, dtype=a.dtype, device=a.device)
    # Rounding can push a (near) one-hot patch's variance below 0: clamp (MATLAB would go complex).
    asd = torch.sqrt((_seqsum(i * i * apdf) - _seqsum(i * apdf) ** 2).clamp_min(0))
    fsd = torch.sqrt((_seqsum(i * i * fpdf) - _seqsum(i * fpdf) ** 2).clamp_min(0))
    fi, aj = fcdf[:, :, None], acdf[:, None, :]  # (N, 9, 9): rows index F, columns index A
    pos = c >= 0
    sign = torch.where(pos, 1.0, -1.0)[:, None, None].to(a.dtype)
    # Frechet upper bound min(F, A) where c >= 0, lower bound max(F + A - 1, 0) where c < 0, both
    # written as the code writes them.
    shift = torch.where(pos, 0.0, 1.0)[:, None, None].to(a.dtype)
    bound = 0.5 * (fi + aj - shift - sign * (fi - sign * aj - shift * (1 - sign) / 2).abs())
    indep = fi * aj
    degenerate = (asd == 0) | (fsd == 0) | (pos & (c == 0))
    weight = c / ((bound - indep).sum((1, 2)) / (fsd * asd))
    # A (near) one-hot patch leaves no room for dependence: 0/0 here is the degenerate case too.
    weight = weight.where(~degenerate & torch.isfinite(weight), torch.zeros_like(weight))[:, None, None]
    bp = F.pad(bound, (1, 0, 1, 0))  # zero row and column before the first index
    jbound = bp[:, 1:, 1:] - bp[:, :-1, 1:] - bp[:, 1:, :-1] + bp[:, :-1, :-1]
    jpdf = weight * jbound + (1 - weight) * fpdf[:, :, None] * apdf[:, None, :]
    joint = -(jpdf * torch.log2(jpdf.abs().where(jpdf != 0, torch.ones_like(jpdf)))).sum((1, 2))
    ea, ef = _entropy(apdf), _entropy(fpdf)
    mi = ea + ef - joint
    return (2 * mi / (ea + ef)).where(mi != 0, torch.zeros_like(mi))


def _pair_scores(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """FMI of raw patch pairs (N, 9): 1 for identical patches, else the normalised feature MI."""
    out = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
    for s in range(0, a.shape[0], _CHUNK):
        pa, pf = a[s : s + _CHUNK], f[s : s + _CHUNK]
        same = (pa == pf).all(-1)
        out[s : s + _CHUNK] = torch.where(
            same, torch.ones_like(same, dtype=torch.float64), _nfmi(_normalise(pa), _normalise(pf))
        )
    return out


def _binary_pair_scores(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """As :func:`_pair_scores` for 0/1 patches: each distinct (a, f) pattern pair is scored once."""
    bits = 2 ** torch.arange(9, device=a.device, dtype=torch.long)
    code = (a.long() * bits).sum(-1) * 512 + (f.long() * bits).sum(-1)
    uniq, inverse = torch.unique(code, return_inverse=True)
    unpack = (
        ((uniq[:, None] // 512 // bits) % 2).to(torch.float64),
        ((uniq[:, None] % 512 // bits) % 2).to(torch.float64),
    )
    return _pair_scores(*unpack)[inverse]


def _fmi_features(fa: torch.Tensor, fb: torch.Tensor, ff: torch.Tensor, binary: bool) -> torch.Tensor:
    """Mean over windows of (FMI(A, F) + FMI(B, F)) / 2 for feature maps (B, 1, H, W) -> (B,)."""
    score = _binary_pair_scores if binary else _pair_scores
    out = []
    for pa, pb, pf in zip(_patches(fa), _patches(fb), _patches(ff), strict=True):
        v_a = score(pa, pf)
        # The code normalises the fused patch in place while scoring A (unless A's patch equals it), so
        # B is compared with, and scored against, that normalised patch.
        f_seen = torch.where((pa == pf).all(-1, keepdim=True), pf, _normalise(pf))
        v_b = score(pb, f_seen)
        out.append((0.5 * (v_a + v_b)).mean())
    return torch.stack(out)


def fmi(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, feature: str = "pixel") -> torch.Tensor:
    """FMI of levels 0-255 (B, 1, H, W): ``feature`` is ``pixel`` (edge maps) or ``dct``. 1 for images
    smaller than a window."""
    if min(f.shape[-2:]) < 3:
        return torch.ones(f.shape[0], dtype=torch.float64, device=f.device)
    f, a, b = f / 255.0, a / 255.0, b / 255.0
    feat = sobel_edges if feature == "pixel" else dct2
    return _fmi_features(feat(a), feat(b), feat(f), binary=feature == "pixel")
