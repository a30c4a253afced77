"""Boxes drawn on images for logging and `rgbt detect predict`: predictions in a colour per class, ground
truth in white."""

from __future__ import annotations

import torch

from detection.coco import Detections, Target

COLOURS = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.3, 0.5, 1.0], [1.0, 1.0, 0.2], [1.0, 0.3, 1.0]])


def _rect(img: torch.Tensor, box: torch.Tensor, colour: torch.Tensor, width: int = 2) -> None:
    h, w = img.shape[-2:]
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1 - 1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1 - 1, h - 1))
    c = colour.view(3, 1, 1)
    for t in range(width):
        img[:, min(y0 + t, y1) : min(y0 + t, y1) + 1, x0 : x1 + 1] = c.expand(3, 1, x1 - x0 + 1)
        img[:, max(y1 - t, y0) : max(y1 - t, y0) + 1, x0 : x1 + 1] = c.expand(3, 1, x1 - x0 + 1)
        img[:, y0 : y1 + 1, min(x0 + t, x1) : min(x0 + t, x1) + 1] = c.expand(3, y1 - y0 + 1, 1)
        img[:, y0 : y1 + 1, max(x1 - t, x0) : max(x1 - t, x0) + 1] = c.expand(3, y1 - y0 + 1, 1)


def draw_detections(
    image: torch.Tensor,
    dets: Detections | None,
    target: Target | None = None,
    classes: list[str] | None = None,
    score: float = 0.3,
) -> torch.Tensor:
    """(C, H, W) image in [0, 1] -> (3, H, W) RGB with boxes: ground truth white (1 px), detections with score
    above ``score`` in their class colour (2 px). A 4-channel RGB-T input is drawn on its RGB part."""
    img = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    img = img.detach().float().cpu().clone().clamp(0, 1)
    if target is not None:
        for b in target.boxes:
            _rect(img, b, torch.ones(3), 1)
    if dets is not None:
        for b, s, lab in zip(dets.boxes.cpu(), dets.scores.cpu(), dets.labels.cpu(), strict=True):
            if s >= score:
                _rect(img, b, COLOURS[int(lab) % len(COLOURS)], 2)
    return img
