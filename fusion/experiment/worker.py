"""The Lightning predict loop that spreads an experiment's items over processes, GPUs or nodes."""

from __future__ import annotations

import logging
import re
import warnings

import torch
from pytorch_lightning import LightningModule, Trainer
from torch.utils.data import DataLoader

from fusion.errors import RgbtError
from fusion.experiment.work import Work
from fusion.perf import tune_allocator
from fusion.train.base import CloseProcessGroup
from fusion.train.cli import quiet_lightning


def _quiet() -> None:
    """Lightning's banners and warnings that say nothing to an experiment's user; run on import, so that in
    every spawned worker too (it imports this module to unpickle its task)."""
    quiet_lightning()
    for name in ("lightning_fabric.utilities.distributed", "pytorch_lightning.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*predict returned None.*")


_quiet()


class ExperimentWorker(LightningModule):
    """Does one item of ``work`` per predict step (fuse what is missing, score); learned methods are built once
    per process, on its device."""

    def __init__(self, work: Work):
        super().__init__()
        self.work, self.models = work, {}

    def on_predict_start(self) -> None:
        torch.set_num_threads(1)  # scores independent of the split (see fusion.experiment.run)
        tune_allocator()  # as the rgbt command does: spawned workers start afresh

    def predict_step(self, batch, batch_idx):
        for i in batch:
            line = self.work.do(self.work.items[int(i)], self.models, self.device)
            prefix = f"[rank {self.global_rank}] " if self.trainer.world_size > 1 else ""
            print(f"{prefix}{line}", flush=True)


def run_items(work: Work, todo: list[int], accelerator: str, devices: int, num_nodes: int) -> None:
    """Do the items ``todo`` (indices into ``work.items``) with ``devices`` processes per node on
    ``num_nodes`` nodes; Lightning's distributed sampler gives each process its share."""
    world = devices * num_nodes
    strategy = "auto" if world == 1 else ("ddp_spawn" if num_nodes == 1 else "ddp")
    trainer = Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[CloseProcessGroup()],
    )
    loader = DataLoader(todo, batch_size=1, collate_fn=list)
    try:
        with warnings.catch_warnings():
            _quiet()
            trainer.predict(ExperimentWorker(work), loader, return_predictions=False)
    except RgbtError:
        raise
    except Exception as e:  # a spawned worker's RgbtError comes back as text: keep its one line
        found = re.search(r"RgbtError: (.*)", str(e))
        if found:
            raise RgbtError(found.group(1)) from None
        raise
