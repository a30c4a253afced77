"""A compact anchor-free detector (FCOS, Tian et al., ICCV 2019) for visible, infrared, fused or RGB-T input.

Backbone of strided conv stages (width and depth multipliers), a small FPN over strides 8, 16 and 32, and one
head shared by all levels (GroupNorm towers; class logits, ltrb distances, centre-ness). Every model takes one
(B, C, H, W) tensor in [0, 1] and stays differentiable with respect to it, so a fusion network can be trained
through the detector. ``TwoStreamFCOS`` reads (B, C_vis + C_ir, H, W), runs a stem per modality and fuses the
two at stride 8 (mid-level fusion); ``FCOS(in_channels=4)`` is early fusion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from detection.boxes import batched_nms
from detection.coco import Detections


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


def stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    """Downsample by 2, then ``depth`` residual blocks."""
    return nn.Sequential(conv_bn(cin, cout, 2), *[Residual(cout) for _ in range(depth)])


class Backbone(nn.Module):
    """Stem (stride 2) and four stages to strides 4, 8, 16, 32; returns the features at 8, 16 and 32."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 1):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width, 16 * width]
        self.early = nn.Sequential(conv_bn(in_channels, w[0], 2), stage(w[0], w[1], depth), stage(w[1], w[2], depth))
        self.s16, self.s32 = stage(w[2], w[3], depth), stage(w[3], w[4], depth)
        self.channels = (w[2], w[3], w[4])

    def late(self, c8: torch.Tensor) -> list[torch.Tensor]:
        c16 = self.s16(c8)
        return [c8, c16, self.s32(c16)]

    def forward(self, x):
        return self.late(self.early(x))


class FPN(nn.Module):
    def __init__(self, channels: tuple[int, ...], out: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out, 1) for c in channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out, out, 3, padding=1) for _ in channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(lat) - 2, -1, -1):  # top-down
            lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        return [s(x) for s, x in zip(self.smooth, lat, strict=True)]


class Head(nn.Module):
    """FCOS head shared over levels: GroupNorm conv towers, class logits, ltrb (ReLU x stride), centre-ness."""

    def __init__(self, c: int, num_classes: int, convs: int = 2, prior: float = 0.01):
        super().__init__()

        def tower():
            layers = []
            for _ in range(convs):
                layers += [nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(min(8, c), c), nn.ReLU()]
            return nn.Sequential(*layers)

        self.cls_tower, self.reg_tower = tower(), tower()
        self.cls = nn.Conv2d(c, num_classes, 3, padding=1)
        self.reg = nn.Conv2d(c, 4, 3, padding=1)
        self.ctr = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))  # focal-loss prior: start at p = 0.01

    def forward(self, x: torch.Tensor, stride: int):
        r = self.reg_tower(x)
        return self.cls(self.cls_tower(x)), F.relu(self.reg(r)) * stride, self.ctr(r)


class FCOS(nn.Module):
    """Single-stream FCOS on (B, in_channels, H, W) in [0, 1], any H and W.

    Args:
        in_channels: 1 (grey: infrared or fused Y), 3 (colour) or 4 (early fusion: RGB + T).
        num_classes: object classes.
        width: channels of the first stage (the rest double per stage); the FPN and head use 4 * width.
        depth: residual blocks per stage.
        head_convs: conv layers in each head tower.
    """

    strides = (8, 16, 32)

    def __init__(
        self, in_channels: int = 3, num_classes: int = 3, width: int = 16, depth: int = 1, head_convs: int = 2
    ):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.backbone = self._backbone(in_channels, width, depth)
        self.fpn = FPN(self.backbone.channels, 4 * width)
        self.head = Head(4 * width, num_classes, head_convs)

    def _backbone(self, in_channels: int, width: int, depth: int) -> nn.Module:
        return Backbone(in_channels, width, depth)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level (stride 8, 16, 32): class logits (B, K, h, w), ltrb distances in pixels (B, 4, h, w) and
        centre-ness logits (B, 1, h, w)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        x = (x - 0.5) / 0.25  # roughly zero-mean, unit-variance input
        return [self.head(p, s) for p, s in zip(self.fpn(self.features(x)), self.strides, strict=True)]

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, score: float = 0.05, iou: float = 0.6, max_det: int = 100, topk: int = 1000
    ) -> list[Detections]:
        """Decoded, class-aware-NMS-ed detections per image (boxes clipped to the image)."""
        outs = self(x)
        h, w = x.shape[-2:]
        results = []
        for b in range(x.shape[0]):
            boxes, scores, labels = [], [], []
            for (cls, reg, ctr), s in zip(outs, self.strides, strict=True):
                pts = points(cls.shape[-2:], s, x.device)  # (hw, 2)
                prob = (cls[b].sigmoid() * ctr[b].sigmoid()).sqrt().flatten(1).T  # (hw, K)
                idx, lab = (prob > score).nonzero(as_tuple=True)
                d = reg[b].flatten(1).T[idx]  # (n, 4) ltrb
                p = pts[idx]
                boxes.append(torch.cat([p - d[:, :2], p + d[:, 2:]], 1))
                scores.append(prob[idx, lab]), labels.append(lab)
            bx, sc, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            if sc.numel() > topk:  # NMS cost grows with the square of the candidates
                sc, o = sc.topk(topk)
                bx, lab = bx[o], lab[o]
            bx[:, 0::2] = bx[:, 0::2].clamp(0, w)
            bx[:, 1::2] = bx[:, 1::2].clamp(0, h)
            k = batched_nms(bx, sc, lab, iou)[:max_det]
            results.append(Detections(bx[k], sc[k], lab[k]))
        return results


class TwoStreamFCOS(FCOS):
    """Two-stream FCOS: a stem and the first stages per modality up to stride 8, concatenated and mixed by a
    1x1 conv (mid-level fusion), then shared deeper stages. Input (B, vis_channels + 1, H, W): visible first,
    infrared last."""

    def __init__(
        self, vis_channels: int = 3, num_classes: int = 3, width: int = 16, depth: int = 1, head_convs: int = 2
    ):
        self.vis_channels = vis_channels
        super().__init__(vis_channels + 1, num_classes, width, depth, head_convs)

    def _backbone(self, in_channels: int, width: int, depth: int) -> nn.Module:
        m = Backbone(self.vis_channels, width, depth)
        m.early_ir = Backbone(1, width, depth).early
        c = m.channels[0]
        m.mix = nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        return m

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        bb = self.backbone
        vis, ir = x[:, : self.vis_channels], x[:, self.vis_channels :]
        return bb.late(bb.mix(torch.cat([bb.early(vis), bb.early_ir(ir)], 1)))


def points(hw: tuple[int, int], stride: int, device=None) -> torch.Tensor:
    """Pixel centres of a level's locations, (h * w, 2) as (x, y), row-major."""
    h, w = hw
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return (torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5) * stride
