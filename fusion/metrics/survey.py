"""The metrics the TPAMI 2024 survey's code adds to the usual set, by their papers' definitions: NMI, QNCIE, TE, Qy,
MS-SSIM. (``fusion.metrics.ivifzoo`` has the survey code's own versions, quirks included.)

Inputs are (B, 1, H, W) float64 grey levels on the 0-255 scale; outputs have shape (B,).

- NMI: Hossny, Nahavandi and Creighton, Electronics Letters 44(18), 2008:
  2 [MI(A, F) / (H(A) + H(F)) + MI(B, F) / (H(B) + H(F))], 256-bin histograms of the rounded levels; a term whose
  two images are both flat is 1/2, the limit of identical images.
- QNCIE: Wang, Shen and Zhang, "Performance evaluation of image fusion techniques", 2008 (nonlinear correlation
  information entropy): each pair's nonlinear correlation coefficient NCC = 2 + sum p_ij log_b p_ij over a b x b
  joint histogram of rank bins (each image's pixels sorted into b = 256 bins of equal count), then
  1 + sum_i (l_i / 3) log_b (l_i / 3) over the eigenvalues l_i of the 3 x 3 NCC matrix.
- TE: Cvejic, Canagarajah and Bull, Electronics Letters 42(11), 2006 (Tsallis entropy): I_q(A, F) + I_q(B, F) with
  q = 1.85 (Cvejic's constant) and the Tsallis mutual information
  I_q(X, Y) = (1 - sum p(x, y)^q / (p(x) p(y))^(q - 1)) / (1 - q), the form Liu's metric toolbox computes (which
  multiplies the marginals the wrong way round; here p(x) p(y) belong to the joint bin's own x and y).
- Qy: Yang, Zhang, Wang and Li, Information Fusion 9(2), 2008: per 7 x 7 Gaussian window (sigma 1.5, 'valid'),
  where SSIM(A, B) >= 0.75 the variance-weighted SSIM(A, F) and SSIM(B, F), elsewhere their maximum; the mean.
- MS-SSIM: Wang, Simoncelli and Bovik, Asilomar 2003: five scales (2 x 2 averaging between them), weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11 x 11 Gaussian (sigma 1.5), L = 255, contrast-structure terms below 0
  taken as 0; fewer scales (weights renormalised) where the image is too small for five; the mean over A and B.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusion.metrics._kernels import entropy_of, filter_valid, gaussian_window, histogram, joint_histogram


def _lv(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255)


def nmi(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    fl, al, bl = _lv(f), _lv(a), _lv(b)
    hf, ha, hb = entropy_of(histogram(fl)), entropy_of(histogram(al)), entropy_of(histogram(bl))

    def term(x: torch.Tensor, hx: torch.Tensor) -> torch.Tensor:
        mi = hx + hf - entropy_of(joint_histogram(x, fl), dims=(1, 2))
        # Two flat images determine each other: the limit of identical images (1/2), as sklearn's NMI gives 1.
        return (mi / (hx + hf)).where(hx + hf > 0, torch.full_like(mi, 0.5))

    return 2 * (term(al, ha) + term(bl, hb))


def _rank_bins(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """(B, 1, H, W) -> the same shape of rank bins 0..bins-1, equal counts (ties broken by position)."""
    flat = x.flatten(1)
    order = torch.argsort(flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=x.device).expand_as(order))
    return (ranks * bins // flat.shape[1]).view_as(x).to(torch.float64)


def qncie(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bins: int = 256) -> torch.Tensor:
    rf, ra, rb = (_rank_bins(x, bins) for x in (f, a, b))

    def ncc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        j = joint_histogram(x, y, bins)
        p = j / j.sum(dim=(1, 2), keepdim=True)
        return 2 + (p * torch.log(p.where(p > 0, torch.ones_like(p)))).sum(dim=(1, 2)) / math.log(bins)

    ab, af, bf = ncc(ra, rb), ncc(ra, rf), ncc(rb, rf)
    one = torch.ones_like(ab)
    r = torch.stack(
        [torch.stack([one, ab, af], -1), torch.stack([ab, one, bf], -1), torch.stack([af, bf, one], -1)], -2
    )
    lam = (torch.linalg.eigvalsh(r) / 3).clamp_min(0)
    return 1 + (lam * torch.log(lam.where(lam > 0, torch.ones_like(lam)))).sum(-1) / math.log(bins)


def tsallis(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, q: float = 1.85) -> torch.Tensor:
    fl, al, bl = _lv(f), _lv(a), _lv(b)

    def p(h: torch.Tensor) -> torch.Tensor:
        return h / h.sum(dim=tuple(range(1, h.ndim)), keepdim=True)

    def i_q(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pxy, px, py = p(joint_histogram(x, y)), p(histogram(x)), p(histogram(y))
        prod = px[:, :, None] * py[:, None, :]
        t = pxy**q / prod.where(pxy > 0, torch.ones_like(prod)) ** (q - 1)
        return (1 - t.where(pxy > 0, torch.zeros_like(t)).sum(dim=(1, 2))) / (1 - q)

    return i_q(al, fl) + i_q(bl, fl)


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, c1: float, c2: float):
    """(SSIM map, contrast-structure map, var x, var y) over 'valid' windows of ``g``."""
    m = filter_valid(torch.cat([x, y, x * x, y * y, x * y], 1), g)
    mx, my = m[:, 0:1], m[:, 1:2]
    vx, vy, cxy = m[:, 2:3] - mx * mx, m[:, 3:4] - my * my, m[:, 4:5] - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs, cs, vx, vy


def qy(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    size = max(1, min(7, 2 * ((min(f.shape[-2:]) - 1) // 2) + 1))
    g, c1, c2 = gaussian_window(size, 1.5, device=f.device), (0.01 * 255) ** 2, (0.03 * 255) ** 2
    sab, _, va, vb = _ssim_maps(a, b, g, c1, c2)
    saf, sbf = _ssim_maps(a, f, g, c1, c2)[0], _ssim_maps(b, f, g, c1, c2)[0]
    va, vb = va.clamp_min(0), vb.clamp_min(0)
    lam = (va / (va + vb)).where(va + vb > 0, torch.full_like(va, 0.5))
    q = torch.where(sab >= 0.75, lam * saf + (1 - lam) * sbf, torch.maximum(saf, sbf))
    return q.flatten(1).mean(1)


MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    g, c1, c2 = gaussian_window(11, 1.5, device=x.device), (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scales = max(1, min(len(MS_WEIGHTS), 1 + int(math.log2(max(1, min(x.shape[-2:]) // 11)))))
    w = torch.tensor(MS_WEIGHTS[:scales], dtype=torch.float64, device=x.device)
    w = w / w.sum()
    out = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for j in range(scales):
        if min(x.shape[-2:]) < 11:  # a tiny image: one window over what there is
            gj = gaussian_window(2 * ((min(x.shape[-2:]) - 1) // 2) + 1, 1.5, device=x.device)
        else:
            gj = g
        s, cs = _ssim_maps(x, y, gj, c1, c2)[:2]
        term = (s if j == scales - 1 else cs).flatten(1).mean(1).clamp_min(0)
        out = out * term ** w[j]
        if j < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def ms_ssim(f: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (_ms_ssim(a, f) + _ms_ssim(b, f))
