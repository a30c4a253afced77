"""What every fusion LightningModule shares: validation with the metric suite, image panels, model spec.

Validation runs on whole image pairs (batch size 1, any size): the network fuses the visible luminance with the
infrared image, the metric suite scores the result (``val/<metric>``), and the first few pairs are logged as
IR | visible | fused panels, to W&B when it is the logger and as PNG files in the run folder otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from fusion.metrics.module import fusion_metrics
from fusion.models import model_spec, tiled_forward


def log_panel(trainer: pl.Trainer | None, key: str, panel: torch.Tensor, step: int) -> None:
    """Log a (1, C, H, W) image in [0, 1] (C 1 or 3) to every logger: W&B images, or PNGs under the logger's
    folder."""
    if trainer is None or not trainer.is_global_zero:
        return
    from pytorch_lightning.loggers import WandbLogger

    from fusion.io import write_png

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):  # wandb.Image casts floats to uint8 as they are (0.31: no rescale)
            img = (panel[0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
            logger.log_image(key=key, images=[img.permute(1, 2, 0).squeeze(-1).numpy()], step=step)
        elif getattr(logger, "log_dir", None):
            write_png(Path(logger.log_dir) / "panels" / f"{key.replace('/', '_')}_step{step:07d}.png", panel.cpu())


class CloseProcessGroup(pl.Callback):
    """Destroy the process group when fit or predict ends. With ``strategy: ddp_spawn`` each worker process
    returns after fit; one that exits with gloo's threads still running is aborted by std::terminate
    ("terminate called without an active exception", SIGABRT), at random. Add it to ``trainer.callbacks``
    for spawned multi-process runs."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            trainer.strategy.barrier()
            torch.distributed.destroy_process_group()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.on_fit_end(trainer, pl_module)  # every process has finished its share before any returns


class FusionTask(pl.LightningModule):
    """Base LightningModule: ``self.model`` is the fusion network (``forward(vis, ir) -> fused``).

    Args:
        val_metrics: metric names scored on the validation pairs (standard convention).
        panels: how many validation pairs to log as image panels each validation.
        val_tile: fuse validation images larger than this in tiles (bounds memory on large images).
        init_weights: a weight file or checkpoint to start the network from (e.g. DenseFuse stage 1 for
            decoder fine-tuning); a resumed run's checkpoint takes precedence.
    """

    model: nn.Module

    def __init__(
        self,
        val_metrics: list[str] | None = None,
        panels: int = 2,
        val_tile: int = 1024,
        init_weights: str | None = None,
    ):
        super().__init__()
        self.init_weights = init_weights
        names = ["EN", "SD", "SF", "VIF", "Qabf", "SSIM"] if val_metrics is None else val_metrics
        self.val_metrics = fusion_metrics(names, prefix="val/")
        self.test_metrics = fusion_metrics(names, prefix="test/")
        self.panels, self.val_tile = panels, val_tile

    def setup(self, stage: str) -> None:
        if self.init_weights:  # before any checkpoint restore, which then overrides these weights
            from fusion.models import load_model

            self.model.load_state_dict(load_model(self.init_weights, expect=self.model.name).state_dict())

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.model(vis, ir)

    def _score(self, batch: dict, batch_idx: int, metrics, stage: str) -> None:
        vis, ir = batch["vis"], batch["ir"]
        fused = tiled_forward(self.model, vis, ir, self.val_tile, 32)
        metrics.update(fused, vis, ir)
        if batch_idx < self.panels:
            panel = torch.cat([ir, vis, fused], -1)
            log_panel(self.trainer, f"{stage}/panel{batch_idx}", panel, self.global_step)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, batch_idx, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), sync_dist=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, batch_idx, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.test_metrics.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # lets rgbt fuse --ckpt and load_model rebuild the network without the training config
        checkpoint["fusion_model"] = model_spec(self.model)

    def log_terms(self, terms: dict[str, torch.Tensor], prefix: str = "train/") -> None:
        """Log a loss dict as it is (``train/<term>``), the total on the progress bar."""
        self.log_dict({f"{prefix}{k}": v.detach() for k, v in terms.items()}, prog_bar=False)
        if "total" in terms:
            self.log(f"{prefix}loss", terms["total"].detach(), prog_bar=True)
