"""Box utilities for the detector: conversions, IoU/GIoU, class-aware NMS (kornia) and its plain reference.

Boxes are float tensors in pixels, ``xyxy`` with exclusive right/bottom edges (area = (x2 - x1) * (y2 - y1)),
the convention of kornia's ``nms`` and of COCO's ``[x, y, w, h]``.
"""

from __future__ import annotations

import torch
from kornia.geometry.bbox import nms as kornia_nms


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre-size boxes -> (..., 4) corner boxes."""
    c, s = b[..., :2], b[..., 2:]
    return torch.cat([c - s / 2, c + s / 2], -1)


def xyxy_to_xywh(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) corner boxes -> COCO (..., 4) ``[x, y, w, h]``."""
    return torch.cat([b[..., :2], b[..., 2:] - b[..., :2]], -1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of (N, 4) and (M, 4) boxes: (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None] - inter
    return inter / union.clamp_min(1e-9)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU of matched (..., 4) boxes, element-wise (Rezatofighi et al., CVPR 2019)."""
    lt = torch.maximum(pred[..., :2], target[..., :2])
    rb = torch.minimum(pred[..., 2:], target[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = box_area(pred) + box_area(target) - inter
    iou = inter / union.clamp_min(1e-9)
    hull = (torch.maximum(pred[..., 2:], target[..., 2:]) - torch.minimum(pred[..., :2], target[..., :2])).prod(-1)
    return 1 - iou + (hull - union) / hull.clamp_min(1e-9)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float) -> torch.Tensor:
    """Class-aware NMS through kornia: boxes of different classes never suppress each other.

    Each class's boxes are moved by an offset larger than every coordinate, so one class-agnostic kornia
    ``nms`` call does all classes. Returns kept indices in descending score order.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = classes.to(boxes.dtype) * (boxes.max() - boxes.min() + 1)
    return kornia_nms(boxes + offset[:, None], scores, iou)


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float) -> torch.Tensor:
    """Straightforward greedy per-class NMS (the test reference for :func:`batched_nms`)."""
    order = scores.argsort(descending=True, stable=True).tolist()
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            if classes[i] == classes[j] and pairwise_iou(boxes[i : i + 1], boxes[j : j + 1]).item() > iou:
                ok = False
                break
        if ok:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)
