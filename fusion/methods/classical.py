"""Classical (training-free) fusion baselines.

Every method is an ``nn.Module`` with ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors in [0, 1],
exactly like the learned models, so the CLI, the metrics and the demo treat them alike.

- :class:`AverageFusion`: (V + I) / 2.
- :class:`MaxFusion`: per-pixel maximum ("choose-max").
- :class:`WeightedAverageFusion`: global weights, fixed or proportional to each source's contrast (SD).
- :class:`LaplacianPyramidFusion`: Burt and Adelson's pyramid, choose-max-abs on band-pass levels and
  averaging on the base (Burt and Kolczynski 1993), with kornia's pyramids.
- :class:`GuidedFilterFusion`: GFF, Li, Kang and Hu, "Image Fusion With Guided Filtering", TIP 2013,
  with kornia's guided filter and the paper's parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import box_blur, filter2d, gaussian_blur2d, guided_blur
from kornia.geometry.transform import pyrdown, pyrup
from torch import nn


def _check(vis: torch.Tensor, ir: torch.Tensor) -> None:
    if vis.ndim != 4 or vis.shape[1] != 1 or vis.shape != ir.shape:
        raise ValueError(
            f"expected vis and ir of the same shape (B, 1, H, W), got {tuple(vis.shape)} and {tuple(ir.shape)}"
        )


class AverageFusion(nn.Module):
    """Pixel-wise mean of the two sources."""

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        _check(vis, ir)
        return 0.5 * (vis + ir)


class MaxFusion(nn.Module):
    """Pixel-wise maximum of the two sources."""

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        _check(vis, ir)
        return torch.maximum(vis, ir)


class WeightedAverageFusion(nn.Module):
    """Global weighted average ``w * V + (1 - w) * I``.

    Args:
        w_vis: fixed visible weight in [0, 1]; ``None`` (default) weights each source by its standard
            deviation, so the source with more contrast dominates (per image in the batch).
    """

    def __init__(self, w_vis: float | None = None) -> None:
        super().__init__()
        if w_vis is not None and not 0.0 <= w_vis <= 1.0:
            raise ValueError(f"w_vis must be in [0, 1], got {w_vis}")
        self.w_vis = w_vis

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        _check(vis, ir)
        if self.w_vis is not None:
            w = torch.full((vis.shape[0], 1, 1, 1), self.w_vis, dtype=vis.dtype, device=vis.device)
        else:
            sv = vis.std(dim=(1, 2, 3), keepdim=True, correction=0)
            si = ir.std(dim=(1, 2, 3), keepdim=True, correction=0)
            # Two (nearly) flat images: fall back to the plain mean.
            flat = (sv + si) < 1e-6
            w = torch.where(flat, torch.full_like(sv, 0.5), sv / (sv + si).clamp_min(1e-6))
        return w * vis + (1 - w) * ir


class LaplacianPyramidFusion(nn.Module):
    """Laplacian-pyramid fusion: max-abs selection on band-pass levels, mean on the base level.

    Args:
        levels: number of pyramid levels including the base (reduced for tiny images).
    """

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = levels

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        _check(vis, ir)
        h, w = vis.shape[-2:]
        # keep at least 4 pixels at the coarsest level
        levels = max(1, min(self.levels, int(torch.tensor(min(h, w) / 4).log2().floor()) + 1))
        # Reflect-pad the bottom and right to a multiple of 2^(levels-1) so every level halves exactly. (kornia's
        # build_laplacian_pyramid pads to a power of two instead, and only for some sizes, which would make a
        # pixel's value depend on the image's size and forbid processing in strips.)
        m = 2 ** (levels - 1)
        x = F.pad(torch.cat([vis, ir]), (0, -w % m, 0, -h % m), mode="reflect")  # (2B, 1, H', W')
        gauss = [x]
        for _ in range(levels - 1):
            gauss.append(pyrdown(gauss[-1]))
        out = gauss[-1].chunk(2)
        out = 0.5 * (out[0] + out[1])
        for g, coarser in zip(reversed(gauss[:-1]), reversed(gauss[1:]), strict=True):
            lv, li = (g - pyrup(coarser)).chunk(2)  # band-pass level of each source
            out = pyrup(out) + torch.where(lv.abs() >= li.abs(), lv, li)
        return out[..., :h, :w].clamp(0, 1)

    def strip_context(self) -> tuple[int, int]:
        """(rows of context, row alignment) for :class:`fusion.strips.Strips`: 16 pixels at the coarsest level,
        strip tops on its grid."""
        return 16 * 2 ** (self.levels - 1), 2 ** (self.levels - 1)


class GuidedFilterFusion(nn.Module):
    """GFF (Li, Kang and Hu, TIP 2013): two-scale decomposition with guided-filtered weight maps.

    Base layers come from a 31x31 mean filter; saliency is the Gaussian-smoothed (11x11, sigma 5)
    absolute 4-neighbour Laplacian; binary winner-take-all maps are refined by guided filtering with
    each source as guide, (r1, eps1) = (45, 0.3) for the base and (r2, eps2) = (7, 1e-6) for the detail.

    Args:
        r1, eps1: guided-filter radius and regularisation for the base weights.
        r2, eps2: the same for the detail weights.
        avg_size: size of the mean filter of the two-scale decomposition.
    """

    def __init__(self, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6, avg_size: int = 31):
        super().__init__()
        self.r1, self.eps1, self.r2, self.eps2, self.avg_size = r1, eps1, r2, eps2, avg_size
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("laplacian", lap[None], persistent=False)

    def strip_context(self) -> tuple[int, int]:
        """(rows of context, row alignment) for :class:`fusion.strips.Strips`: the guided filter's weights depend
        on the winner map within twice its radius, and the winner map on the saliency filters' 6 pixels."""
        return 2 * max(self.r1, self.r2) + 7, 1

    def _guided(self, guide: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
        # Radius cannot exceed the image for reflect padding.
        r = max(1, min(r, (min(guide.shape[-2:]) - 1) // 2))
        return guided_blur(guide, p, 2 * r + 1, eps, border_type="replicate", separable=True)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        _check(vis, ir)
        src = torch.stack([vis, ir])  # (2, B, 1, H, W)
        flat = src.flatten(0, 1)  # (2B, 1, H, W)
        sal = gaussian_blur2d(
            filter2d(flat, self.laplacian, border_type="replicate").abs(), 11, (5.0, 5.0), "replicate"
        )
        winner = F.one_hot(sal.view_as(src).argmax(0), 2).movedim(-1, 0).to(vis.dtype).flatten(0, 1)  # (2B, 1, H, W)
        del sal  # temporaries are freed as soon as they are used: large images run in strips of bounded memory
        k = min(self.avg_size, 2 * ((min(vis.shape[-2:]) - 1) // 2) + 1)
        base = box_blur(flat, k, border_type="replicate")
        fused = self._blend(self._guided(flat, winner, self.r1, self.eps1), base, src)
        base = flat - base  # the detail layer, in place of the base
        fused += self._blend(self._guided(flat, winner, self.r2, self.eps2), base, src)
        return fused.clamp(0, 1)

    @staticmethod
    def _blend(weights: torch.Tensor, layer: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Sum over the sources of ``layer`` weighted by ``weights`` made non-negative and summing to one at each
        pixel (the filtered maps need not)."""
        weights = weights.clamp_min_(0).view_as(src)
        weights /= weights.sum(0).clamp_min(1e-8)
        return (weights * layer.view_as(src)).sum(0)
