"""COCO-style scoring of detections with faster-coco-eval (mAP@0.5, mAP@0.5:0.95, per-class AP).

Ground truth and detections are plain per-image lists of tensors, so the same code scores a validation epoch,
a test set or a folder of predictions. Boxes are ``xyxy`` pixels (exclusive edges), converted to COCO's
``[x, y, w, h]``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch

from detection.boxes import xyxy_to_xywh


@dataclass
class Target:
    """Ground truth of one image: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,) class indices."""

    boxes: torch.Tensor
    labels: torch.Tensor
    size: tuple[int, int]  # (H, W)
    name: str = ""  # image name, for predictions written to disk


@dataclass
class Detections:
    """Detections of one image: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def to_coco(targets: list[Target], classes: list[str]) -> dict:
    """A COCO ground-truth dict (images, annotations, categories); category ids are class index + 1."""
    images, anns = [], []
    for i, t in enumerate(targets):
        images.append({"id": i + 1, "height": int(t.size[0]), "width": int(t.size[1])})
        for box, label in zip(xyxy_to_xywh(t.boxes.double()).tolist(), t.labels.tolist(), strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def detections_to_coco(dets: list[Detections]) -> list[dict]:
    """COCO result list (image ids 1..N in the order of ``dets``)."""
    out = []
    for i, d in enumerate(dets):
        for box, s, label in zip(
            xyxy_to_xywh(d.boxes.double()).tolist(), d.scores.tolist(), d.labels.tolist(), strict=True
        ):
            out.append({"image_id": i + 1, "category_id": int(label) + 1, "bbox": box, "score": float(s)})
    return out


def coco_map(targets: list[Target], dets: list[Detections], classes: list[str], backend: str = "faster") -> dict:
    """COCO box mAP of ``dets`` against ``targets``.

    Args:
        targets, dets: one entry per image, in the same order.
        classes: class names (index = label).
        backend: ``faster`` (faster-coco-eval) or ``pycocotools`` (the reference, for tests).

    Returns:
        ``{"mAP50": float, "mAP": float (0.5:0.95), "AP50/<class>": float, "AP/<class>": float}``; a class
        without ground truth gets NaN (COCO's -1), an image set without any ground truth 0.
    """
    if len(targets) != len(dets):
        raise ValueError(f"{len(targets)} ground-truth images but {len(dets)} detection lists")
    gt = to_coco(targets, classes)
    res = detections_to_coco(dets)
    if not gt["annotations"]:
        return (
            {"mAP50": 0.0, "mAP": 0.0}
            | {f"AP50/{c}": float("nan") for c in classes}
            | {f"AP/{c}": float("nan") for c in classes}
        )
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "faster":
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Eval
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval as Eval
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        cd = cg.loadRes(res) if res else COCO()
        if not res:
            cd.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            cd.createIndex()
        ev = Eval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = np.asarray(ev.eval["precision"])  # (iou thresholds, recall points, classes, areas, max dets)
    out = {"mAP": float(ev.stats[0]) if res else 0.0, "mAP50": float(ev.stats[1]) if res else 0.0}
    for k, name in enumerate(classes):
        p_all = prec[:, :, k, 0, -1]
        p50 = prec[0, :, k, 0, -1]
        has = (p_all > -1).any()
        out[f"AP/{name}"] = float(p_all[p_all > -1].mean()) if has else float("nan")
        out[f"AP50/{name}"] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
    return {k: max(v, 0.0) if k.startswith("mAP") else v for k, v in out.items()}
