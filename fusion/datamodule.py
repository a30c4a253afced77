"""The Lightning data module for training fusion networks (kept apart from :mod:`fusion.data` so that fusing and
scoring do not import Lightning)."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from fusion.data import PairDataset, PatchDataset, dataset_dir, dataset_pairs
from fusion.errors import RgbtError


class FusionDataModule(pl.LightningDataModule):
    """Training patches from some datasets, whole-image validation on others.

    Args:
        train: dataset names or folders for training (e.g. ``["roadscene/train"]``).
        val: dataset names or folders for validation (e.g. ``["roadscene/test"]``).
        data: data root (see :func:`resolve_data_root`).
        patch_size, patches_per_image, batch_size, num_workers, seed: training loader settings.
        val_limit: keep at most this many validation pairs per dataset (None: all).
    """

    def __init__(
        self,
        train: list[str] = ("roadscene/train",),
        val: list[str] = ("roadscene/test",),
        data: str | None = None,
        patch_size: int = 128,
        patches_per_image: int = 8,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        val_limit: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage in (None, "fit"):
            pairs = [p for name in h.train for p in dataset_pairs(dataset_dir(name, h.data))]
            self.train_set = PatchDataset(pairs, h.patch_size, h.patches_per_image, h.seed)
        pairs = []
        for name in h.val:
            pairs += dataset_pairs(dataset_dir(name, h.data))[: h.val_limit]
        self.val_set = PairDataset(pairs, vis_grey=True)

    def train_dataloader(self) -> DataLoader:
        from fusion.sampling import ResumableLoader, ResumableSampler

        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
            raise RgbtError("multi-process training shards its own data: set trainer.use_distributed_sampler: false")
        sampler = ResumableSampler(len(self.train_set), self.hparams.seed, on_epoch=self.train_set.set_epoch)
        sampler.set_epoch(trainer.current_epoch if trainer else 0)

        def progress() -> int:  # batches of this epoch the training loop has processed (prefetch runs ahead)
            return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer else 0

        return ResumableLoader(
            self.train_set,
            sampler,
            progress,
            batch_size=self.hparams.batch_size,
            num_workers=self.hparams.num_workers,
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader:
        # Whole images differ in size: one per batch.
        return DataLoader(self.val_set, batch_size=1, num_workers=self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
