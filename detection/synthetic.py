"""A synthetic detection set for tests and smoke runs: shapes on noise, in both modalities.

Class 0 are filled squares, class 1 hollow squares, class 2 wide bars. The visible image shows the shapes
dark on a textured background, the infrared image bright on a smooth one, so both modalities and their fusion
carry the objects.
"""

from __future__ import annotations

import torch

from detection.coco import Target


def synthetic_pair(seed: int, h: int = 96, w: int = 128, max_objects: int = 3):
    """One (vis (3, h, w), ir (1, h, w), Target) sample, float32 in [0, 1], deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    vis = 0.6 + 0.15 * torch.rand(3, h, w, generator=g)
    ir = 0.2 + 0.05 * torch.rand(1, h, w, generator=g)
    boxes, labels = [], []
    n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
    for _ in range(30):  # rejection sampling of non-overlapping boxes
        if len(boxes) == n:
            break
        k = int(torch.randint(0, 3, (1,), generator=g))
        s = int(torch.randint(14, 30, (1,), generator=g))
        bw, bh = (2 * s, max(6, s // 2)) if k == 2 else (s, s)
        if bw >= w - 2 or bh >= h - 2:
            continue
        x0 = int(torch.randint(1, w - bw - 1, (1,), generator=g))
        y0 = int(torch.randint(1, h - bh - 1, (1,), generator=g))
        box = torch.tensor([x0, y0, x0 + bw, y0 + bh], dtype=torch.float32)
        if any(((torch.minimum(box[2:], b[2:]) - torch.maximum(box[:2], b[:2])) > -2).all() for b in boxes):
            continue
        m = torch.zeros(h, w, dtype=torch.bool)
        m[y0 : y0 + bh, x0 : x0 + bw] = True
        if k == 1:
            t = max(2, s // 6)
            m[y0 + t : y0 + bh - t, x0 + t : x0 + bw - t] = False
        vis[:, m] = 0.15 + 0.1 * torch.rand(3, 1, generator=g)
        ir[:, m] = 0.8 + 0.1 * torch.rand(1, generator=g)
        boxes.append(box)
        labels.append(k)
    return vis, ir, Target(torch.stack(boxes), torch.tensor(labels), (h, w))
