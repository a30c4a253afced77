"""LightningModule and DataModule for the detector: one training procedure for every input mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from detection.coco import Detections, Target, coco_map
from detection.data import DetectionSet, collate
from detection.draw import draw_detections
from detection.loss import FCOSLoss
from fusion.data import KNOWN_DATASETS, resolve_data_root
from fusion.errors import RgbtError
from fusion.train.base import log_panel


class DetectionModule(pl.LightningModule):
    """Trains a detector (:class:`detection.model.FCOS` or ``TwoStreamFCOS``) with the FCOS objective.

    Logs ``train/<term>``, and per validation/test epoch COCO ``val/mAP50``, ``val/mAP`` and per-class AP,
    plus ``panels`` images with predicted (colour by class) and ground-truth (white) boxes.

    Args:
        model: the detector; its ``num_classes`` must match the data.
        loss: objective (default :class:`FCOSLoss`).
        lr, weight_decay: AdamW; the learning rate follows a cosine decay over the run after ``warmup`` steps.
        classes: class names for logging (default: ``class0``...).
        panels: validation images drawn and logged per epoch.
        predict_out: folder where ``predict`` writes each image with its boxes (PNG) and ``detections.json``
            (COCO-style results, boxes in the image file's pixels).
        overwrite: let ``predict`` write into a ``predict_out`` that already holds files.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup: int = 50,
        classes: list[str] | None = None,
        panels: int = 2,
        predict_out: str | None = None,
        overwrite: bool = False,
    ):
        super().__init__()
        # predict_out is a run setting, not a hyperparameter: a checkpoint's value must not replace the command's
        self.save_hyperparameters(ignore=["model", "loss", "predict_out", "overwrite"])
        self.predict_out, self.overwrite = predict_out, overwrite
        self.model, self.loss = model, loss if loss is not None else FCOSLoss()
        self.classes = classes or [f"class{k}" for k in range(model.num_classes)]
        self._outputs: list[tuple[Target, Detections]] = []
        self.last_scores: dict[str, float] = {}

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, targets = batch
        terms = self.loss(self.model(x), targets)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=len(targets), prog_bar=False)
        return terms["total"]

    def _eval_step(self, batch, batch_idx, stage: str):
        x, targets = batch
        dets = self.model.predict(x)
        self._outputs += list(zip(targets, dets, strict=True))
        if batch_idx == 0 and self.hparams.panels:
            for k in range(min(self.hparams.panels, len(targets))):
                img = draw_detections(x[k], dets[k], targets[k], self.classes)
                log_panel(self.trainer, f"{stage}/boxes{k}", img[None], self.global_step)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test")

    def predict_step(self, batch, batch_idx):
        x, targets = batch
        dets = self.model.predict(x)
        out = Path(self.predict_out) if self.predict_out else None
        if out is not None:
            from fusion.io import write_png

            for img, t, d in zip(x, targets, dets, strict=True):
                write_png(out / f"{t.name}.png", draw_detections(img, d, None, self.classes)[None])
                self._predictions.append((t.name, d))
        return dets

    def on_predict_epoch_start(self):
        self._predictions: list[tuple[str, Detections]] = []
        out = Path(self.predict_out) if self.predict_out else None
        if out is not None and out.is_dir() and any(out.iterdir()) and not self.overwrite:
            raise RgbtError(
                f"{out}: already holds files; choose another --model.init_args.predict_out "
                "or pass --model.init_args.overwrite true"
            )

    def on_predict_epoch_end(self):
        if not self.predict_out:
            return
        from fusion.io import atomic_write_bytes

        dm = getattr(self.trainer, "datamodule", None)
        scale = float(getattr(dm, "hparams", {}).get("scale", 1.0)) if dm is not None else 1.0
        rows = []
        for name, d in self._predictions:  # boxes back to the image file's pixels
            for b, s, lab in zip((d.boxes / scale).tolist(), d.scores.tolist(), d.labels.tolist(), strict=True):
                rows.append(
                    {
                        "image": name,
                        "category": self.classes[lab],
                        "category_id": lab + 1,
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        "score": s,
                    }
                )
        atomic_write_bytes(Path(self.predict_out) / "detections.json", json.dumps(rows, indent=1).encode())

    def _eval_end(self, stage: str):
        if not self._outputs:
            return
        t, d = zip(*self._outputs, strict=True)
        scores = coco_map(list(t), list(d), self.classes)
        self._outputs.clear()
        self.last_scores = scores
        self.log_dict({f"{stage}/{k}": (0.0 if math.isnan(v) else v) for k, v in scores.items()})

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def on_test_epoch_end(self):
        self._eval_end("test")

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.AdamW(self.model.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)

        def factor(step: int) -> float:
            if step < h.warmup:
                return (step + 1) / h.warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - h.warmup) / max(1, total - h.warmup))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class DetectionDataModule(pl.LightningDataModule):
    """Train/val/test splits of a labelled RGB-T set for one input mode.

    Args:
        root: dataset folder (a name from the shared data such as ``msrs``, or a path).
        mode, labels, view, fused, scale: see :class:`detection.data.DetectionSet`.
        train, val, test: image names of each split (default: all images in every split, for smoke runs).
        batch_size, num_workers: loader settings.
        data: data root for dataset names (``--data``, ``$RGBT_DATA``, ``./data``, ``../shared/data``).
    """

    def __init__(
        self,
        root: str = "msrs",
        mode: str = "vis",
        labels: str | None = None,
        view: str | None = None,
        fused: str | None = None,
        scale: float = 0.5,
        train: list[str] | None = None,
        val: list[str] | None = None,
        test: list[str] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        data: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        path = Path(root)
        if not path.is_dir():
            path = resolve_data_root(data) / KNOWN_DATASETS.get(root, root)
        self.root = path

    def _set(self, names, augment: bool) -> DetectionSet:
        h = self.hparams
        return DetectionSet(self.root, h.mode, h.labels, h.view, h.fused, names, h.scale, augment, h.seed)

    def _loader(self, names, train: bool) -> DataLoader:
        ds = self._set(names, train)
        g = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=train,
            collate_fn=collate,
            generator=g,
            num_workers=self.hparams.num_workers,
            drop_last=train and len(ds) > self.hparams.batch_size,
        )

    def train_dataloader(self):
        return self._loader(self.hparams.train, True)

    def val_dataloader(self):
        return self._loader(self.hparams.val, False)

    def test_dataloader(self):
        return self._loader(self.hparams.test, False)

    def predict_dataloader(self):
        return self._loader(self.hparams.test, False)
