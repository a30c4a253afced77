"""TarDAL: target-aware dual adversarial learning for infrared and visible image fusion (the generator).

Liu, Fan, Huang, Wu, Liu, Zhong and Luo, "Target-aware Dual Adversarial Learning and a Multi-scenario
Multi-Modality Benchmark to Fuse Infrared and Visible for Object Detection", CVPR 2022. The 2022 release
(JinyuanLiu-CV/TarDAL before its 2023 rewrite), whose files ``tardal.pt``, ``tardal+.pt`` and ``tardal++.pt``
VIF-Benchmark also ships.

Layout (the authors' ``Generator(dim=32, depth=3)``): [infrared, visible] stacked, a 3x3 conv 2->32 with batch norm
and ReLU, a dense block of three such convs (each sees every earlier output: 32, 64, 96 -> 32), then 3x3 convs
128->128 (ReLU, no batch norm), 128->64 and 64->32 (batch norm, ReLU) and 32->1 (tanh). 297,031 values in the
authors' state_dict.

Batch statistics: the authors' README runs ``tardal.pt`` without ``--eval``, so its batch norms normalise with
the statistics of the image itself (``batch_stats=True``); ``tardal+`` and ``tardal++`` run in eval mode. Images
larger than a tile are then fused with the statistics of the whole image, gathered tile by tile one layer at a
time (:func:`image_statistics`), so that tiles give the whole image's result.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv, fold_bn
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, has_keys, near_boundary, to_input


def _cbr(cin: int, cout: int, bn: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, 1, 1)] + ([nn.BatchNorm2d(cout)] if bn else []) + [nn.ReLU()]
    return nn.Sequential(*layers)


class TarDAL(nn.Module):
    """TarDAL's generator.

    Args:
        dim, depth: feature width and dense-block depth (the release: 32, 3).
        batch_stats: batch norms normalise with each image's own statistics (the authors' run of ``tardal.pt``).
        exact: the authors' arithmetic bit for bit; otherwise batch norms folded into the convolutions (eval
            statistics) with fused kernels on channels-last maps.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1] (the tanh clipped, as the
        authors' evaluation does), any H, W.
    """

    name = "tardal"

    def __init__(self, dim: int = 32, depth: int = 3, batch_stats: bool = False, exact: bool = False):
        super().__init__()
        self.batch_stats, self.exact = batch_stats, exact
        self.config = {"dim": dim, "depth": depth, "batch_stats": batch_stats, "exact": exact}
        self.encoder = _cbr(2, dim)
        self.dense = nn.ModuleList(_cbr(dim * (i + 1), dim) for i in range(depth))
        self.fuse = nn.Sequential(
            _cbr(dim * (depth + 1), dim * 4, bn=False),
            _cbr(dim * 4, dim * 2),
            _cbr(dim * 2, dim),
            nn.Sequential(nn.Conv2d(dim, 1, 3, 1, 1), nn.Tanh()),
        )
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # set by image_statistics for tiles

    def layers(self) -> list[nn.Sequential]:
        """Every conv layer in order (each dense layer's output is concatenated to its input)."""
        return [self.encoder, *self.dense, *self.fuse]

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """The tanh output; with ``stop``, the conv output that batch norm number ``stop`` normalises."""
        if self.batch_stats and not self.training and self.stats is None and vis.shape[0] > 1:  # each image's own
            return torch.cat([self.forward_raw(vis[i : i + 1], ir[i : i + 1], stop) for i in range(vis.shape[0])])
        fast = not (self.exact or self.training)
        x = torch.cat([ir, vis], dim=1)
        k = 0  # batch norms passed
        for i, seq in enumerate(self.layers()):
            has_bn = isinstance(seq[1], nn.BatchNorm2d)
            if has_bn and stop == k:
                return seq[0](x)
            y = self._run_layer(seq, x, self.stats[k] if has_bn and self.stats else None, fast)
            k += has_bn
            x = torch.cat([x, y], dim=1) if 1 <= i <= len(self.dense) else y
        return x

    def _run_layer(self, seq: nn.Sequential, x: torch.Tensor, stat: tuple | None, fast: bool) -> torch.Tensor:
        c, second = seq[0], seq[1]
        if self.training:
            return seq(x)
        if isinstance(second, nn.Tanh):
            return conv(x, c.weight, c.bias, 1, act="tanh") if fast else torch.tanh(c(x))
        if not isinstance(second, nn.BatchNorm2d):  # conv + ReLU: fused (bit for bit in NCHW too)
            return conv(x, c.weight, c.bias, 1, act="relu", keep_layout=not fast)
        if self.batch_stats and stat is None:  # the image's own statistics, as the authors' train-mode batch norm
            y = conv(x, c.weight, c.bias, 1) if fast else c(x)
            y = F.batch_norm(y, None, None, second.weight, second.bias, True, 0.0, second.eps)
            return y.relu_()
        if not fast:
            return seq[2](second(c(x)))
        if stat is not None:  # statistics of each whole image (B, C), gathered over its tiles (image_statistics)
            scale = second.weight / torch.sqrt(stat[1] + second.eps)
            shift = second.bias - stat[0] * scale
            if x.shape[0] == 1:  # folded into the conv
                return conv(x, c.weight * scale[0].view(-1, 1, 1, 1), c.bias * scale[0] + shift[0], 1, act="relu")
            y = conv(x, c.weight, c.bias, 1)
            return (y * scale[:, :, None, None] + shift[:, :, None, None]).relu_()
        return conv(x, *fold_bn(c, second), 1, act="relu")

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir)).contiguous()

    @contextlib.contextmanager
    def image_statistics(self, vis: torch.Tensor, ir: torch.Tensor, tile: int, overlap: int):
        """Within the block, batch norms use the statistics of each whole (1, H, W) image of the batch, gathered tile
        by tile (:func:`fusion.models.tiling.tile_windows`): each batch norm's input is computed on every tile with
        the statistics found so far for the layers before it, and its mean and variance summed over the tiles' own
        pixels in float64. Without ``batch_stats`` it changes nothing."""
        if not self.batch_stats or self.training:
            yield
            return
        from fusion.models.tiling import tile_windows

        n_bn = sum(isinstance(s[1], nn.BatchNorm2d) for s in self.layers())
        self.stats = []
        try:
            for k in range(n_bn):
                s1 = s2 = count = 0
                for (t, b, l, r), (t0, b0, l0, r0) in tile_windows(vis.shape[-2:], tile, overlap):
                    y = self.forward_raw(vis[..., t0:b0, l0:r0], ir[..., t0:b0, l0:r0], stop=k)
                    y = y[..., t - t0 : b - t0, l - l0 : r - l0].double()
                    s1, s2 = s1 + y.sum((2, 3)), s2 + (y * y).sum((2, 3))  # per image and channel: (B, C)
                    count += y.shape[2] * y.shape[3]
                mean = s1 / count
                self.stats.append((mean.float(), (s2 / count - mean * mean).clamp_min(0).float()))
            yield
        finally:
            self.stats = None


def _detect(obj) -> str | None:
    if has_keys(obj, "encoder.0.weight", "dense.0.0.weight", "fuse.0.0.weight", "fuse.3.0.weight"):
        return ""
    return None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in parts[""].items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """JinyuanLiu-CV/TarDAL ``fuse.py`` of the 2022 release with ``--color``, as its README runs each file:
    infrared read by ``cv2.imread(p, IMREAD_GRAYSCALE)``, visible by ``cv2.imread`` then BGR2GRAY, both divided by
    255 in float64 then float32; the output clipped to [0, 1], times 255, truncated to uint8, merged with the
    visible image's Cr and Cb (OpenCV's YCrCb) and converted back to BGR: a colour PNG (three equal channels for a
    grey visible image)."""
    from fusion.io import read_as

    vi_bgr = read_as(vis_path, "cv2:bgr")
    ir = to_input(read_as(ir_path, "cv2:grey"))
    vi = to_input(cv2.cvtColor(vi_bgr, cv2.COLOR_BGR2GRAY))
    levels = model.forward_raw(vi, ir).clip(0.0, 1.0)[0, 0].numpy() * 255.0
    y = levels.astype(np.uint8)
    ycrcb = np.concatenate([y[..., None], cv2.cvtColor(vi_bgr, cv2.COLOR_BGR2YCrCb)[:, :, -2:]], axis=2)
    rgb = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)[:, :, ::-1]
    return OfficialImage(np.ascontiguousarray(rgb), near_boundary(levels, "trunc"))


FAMILY = Family(
    name="tardal",
    model=TarDAL,
    formats="tardal.pt / tardal+.pt / tardal++.pt of the 2022 release (a state_dict with encoder.0.weight, "
    "dense.0.0.weight, fuse.3.0.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
