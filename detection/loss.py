"""FCOS training objective: sigmoid focal loss, GIoU box loss and centre-ness BCE, with centre sampling.

A location is positive for a ground-truth box when it lies inside the box, within ``radius`` strides of its
centre (centre sampling), and the box's largest ltrb distance falls in the level's size range; a location
claimed by several boxes takes the smallest. Losses are normalised by the number of positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detection.boxes import giou_loss
from detection.model import points


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Element-wise focal loss (Lin et al., ICCV 2017) of logits against 0/1 targets; summed by the caller."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return ce * (1 - pt) ** gamma * (alpha * target + (1 - alpha) * (1 - target))


def fcos_targets(
    pts: torch.Tensor,
    strides: torch.Tensor,
    ranges: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    radius: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign one image's boxes to locations.

    Args:
        pts: (P, 2) location centres (x, y) over all levels; strides, ranges: (P,) and (P, 2) per location.
        boxes: (N, 4) xyxy; labels: (N,).

    Returns:
        ``(label, box)``: (P,) class index or -1 for background, (P, 4) the assigned box (xyxy).
    """
    p = pts.shape[0]
    if boxes.numel() == 0:
        return torch.full((p,), -1, dtype=torch.long, device=pts.device), pts.new_zeros(p, 4)
    x, y = pts[:, 0:1], pts[:, 1:2]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)  # (P, N, 4)
    inside = ltrb.min(-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = strides[:, None] * radius
    centre = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    reach = ltrb.max(-1).values
    in_range = (reach >= ranges[:, 0:1]) & (reach <= ranges[:, 1:2])
    ok = inside & centre & in_range
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(p, -1)
    area = area.masked_fill(~ok, float("inf"))
    best, j = area.min(1)
    label = labels[j].masked_fill(best.isinf(), -1)
    return label, boxes[j]


class FCOSLoss(nn.Module):
    """FCOS objective; ``forward(outputs, targets)`` returns ``{"cls", "box", "ctr", "total"}``.

    Args:
        w_cls, w_box, w_ctr: weights of the focal, GIoU and centre-ness terms.
        radius: centre-sampling radius in strides.
        ranges: per-level limits of the largest ltrb distance (pixels) for strides 8, 16, 32.
    """

    def __init__(
        self,
        w_cls: float = 1.0,
        w_box: float = 1.0,
        w_ctr: float = 1.0,
        radius: float = 1.5,
        ranges: tuple[float, ...] = (0.0, 64.0, 128.0),
    ):
        super().__init__()
        self.w_cls, self.w_box, self.w_ctr, self.radius, self.ranges = w_cls, w_box, w_ctr, radius, ranges

    def forward(self, outputs, targets, strides=(8, 16, 32)) -> dict[str, torch.Tensor]:
        dev = outputs[0][0].device
        pts, st, rg = [], [], []
        for k, ((cls, _, _), s) in enumerate(zip(outputs, strides, strict=True)):
            p = points(cls.shape[-2:], s, dev)
            hi = self.ranges[k + 1] if k + 1 < len(self.ranges) else float("inf")
            pts.append(p), st.append(torch.full((len(p),), float(s), device=dev))
            rg.append(torch.tensor([self.ranges[k], hi], device=dev).expand(len(p), 2))
        pts, st, rg = torch.cat(pts), torch.cat(st), torch.cat(rg)
        # (B, P, K), (B, P, 4), (B, P)
        cls = torch.cat([c.flatten(2) for c, _, _ in outputs], 2).transpose(1, 2)
        reg = torch.cat([r.flatten(2) for _, r, _ in outputs], 2).transpose(1, 2)
        ctr = torch.cat([c.flatten(2) for _, _, c in outputs], 2)[:, 0]
        labels, boxes = zip(
            *(fcos_targets(pts, st, rg, t.boxes.to(dev), t.labels.to(dev), self.radius) for t in targets), strict=True
        )
        labels, boxes = torch.stack(labels), torch.stack(boxes)
        pos = labels >= 0
        npos = max(1.0, float(pos.sum()))
        onehot = F.one_hot(labels.clamp_min(0), cls.shape[-1]).to(cls.dtype) * pos[..., None]
        l_cls = sigmoid_focal_loss(cls, onehot).sum() / npos
        p = pts.expand(len(targets), -1, -1)[pos]
        d = reg[pos]
        pred = torch.cat([p - d[:, :2], p + d[:, 2:]], 1)
        gt = boxes[pos]
        t_ltrb = torch.cat([p - gt[:, :2], gt[:, 2:] - p], 1)
        lr, tb = t_ltrb[:, 0::2], t_ltrb[:, 1::2]
        t_ctr = ((lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)).clamp_min(0).sqrt()
        if pos.any():
            l_box = (giou_loss(pred, gt) * t_ctr).sum() / t_ctr.sum().clamp_min(1e-6)
            l_ctr = F.binary_cross_entropy_with_logits(ctr[pos], t_ctr, reduction="sum") / npos
        else:  # keep the graph connected: zero terms that still reach every head parameter
            l_box, l_ctr = reg.sum() * 0, ctr.sum() * 0
        total = self.w_cls * l_cls + self.w_box * l_box + self.w_ctr * l_ctr
        return {"cls": l_cls, "box": l_box, "ctr": l_ctr, "total": total}
