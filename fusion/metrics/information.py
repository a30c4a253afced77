"""Information-theoretic metrics: EN, MI, CE.

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).
"""

from __future__ import annotations

import torch

from fusion.metrics._kernels import entropy_of, histogram, joint_histogram, round_half_up


def _levels(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255)


def entropy(f: torch.Tensor, floor: bool = False) -> torch.Tensor:
    """EN: entropy in bits of the 256-bin histogram of round(F) (``floor=True``: floor(F), as VIFB)."""
    lv = f.floor().clamp(0, 255) if floor else _levels(f)
    return entropy_of(histogram(lv))


def _mi(x: torch.Tensor, y: torch.Tensor, log=torch.log2, saturate: bool = False) -> torch.Tensor:
    """H(x) + H(y) - H(x, y) from 256-bin histograms; ``saturate`` merges levels 254 and 255 in the joint."""
    jx, jy = (x.clamp(max=254), y.clamp(max=254)) if saturate else (x, y)
    return mi_of(histogram(x), histogram(y), joint_histogram(jx, jy), log)


def mi_of(hx: torch.Tensor, hy: torch.Tensor, hxy: torch.Tensor, log=torch.log2) -> torch.Tensor:
    """H(x) + H(y) - H(x, y) from histogram counts (B, 256), (B, 256) and the joint (B, 256, 256)."""
    return entropy_of(hx, log=log) + entropy_of(hy, log=log) - entropy_of(hxy, dims=(1, 2), log=log)


def mutual_information(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, variant: str = "standard") -> torch.Tensor:
    """MI(A, F) + MI(B, F).

    Variants:
        standard: bits, 256-bin histograms of the rounded levels.
        tang: bits; the joint histogram indexes ``uint8 + 1`` with saturation, so levels 254 and 255 of the
            source share a joint bin (the marginals keep them apart).
        cddfuse: ``sklearn.metrics.mutual_info_score`` on the levels: nats.
        vifb: nats, after min-max normalising each image to 0..255 and rounding half up (MATLAB int16).
    """
    fl, al, bl = _levels(f), _levels(a), _levels(b)
    if variant == "standard":
        return _mi(al, fl) + _mi(bl, fl)
    if variant == "cddfuse":
        return _mi(al, fl, torch.log) + _mi(bl, fl, torch.log)
    if variant == "tang":
        return _mi(al, fl, saturate=True) + _mi(bl, fl, saturate=True)
    if variant == "vifb":

        def norm(x: torch.Tensor) -> torch.Tensor:
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            span = (hi - lo).where(hi > lo, torch.ones_like(hi))
            return round_half_up((x - lo) / span * 255).where(hi > lo, torch.zeros_like(x))

        fn = norm(f)
        return _mi(norm(a), fn, torch.log) + _mi(norm(b), fn, torch.log)
    raise ValueError(f"unknown MI variant {variant}")


def cross_entropy(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """CE (VIFB): mean over the sources of sum p_src log2(p_src / p_F) over bins where both are non-zero."""
    return cross_entropy_of(*(histogram(_levels(x)) for x in (f, a, b)))


def cross_entropy_of(hf: torch.Tensor, ha: torch.Tensor, hb: torch.Tensor) -> torch.Tensor:
    """CE from the histogram counts (B, 256) of F, A and B."""
    pf = hf / hf.sum(1, keepdim=True)

    def ce(hs: torch.Tensor) -> torch.Tensor:
        ps = hs / hs.sum(1, keepdim=True)
        both = (ps > 0) & (pf > 0)
        one = torch.ones_like(ps)
        return (ps * torch.log2(ps.where(both, one) / pf.where(both, one))).where(both, torch.zeros_like(ps)).sum(1)

    return 0.5 * (ce(ha) + ce(hb))
