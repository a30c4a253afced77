"""A training sampler and loader that resume mid-epoch with nothing lost or repeated.

Lightning saves the state of any dataloader that has ``state_dict``/``load_state_dict`` in its checkpoints.
:class:`ResumableLoader` records the epoch and how many batches the training loop has processed in it (read from
the trainer, not from the loader, whose prefetching runs ahead); on resume its :class:`ResumableSampler` replays
the same epoch's permutation from that point. Together with :class:`fusion.data.PatchDataset`, whose crops are a
function of (seed, epoch, index), a run killed mid-epoch and resumed sees exactly the batches an uninterrupted run
would have seen.

Under DDP the sampler shards the permutation itself (rank r takes every world-th index), so the trainer must run
with ``use_distributed_sampler: false`` (the configs in ``experiments/`` set it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ResumableSampler(Sampler[int]):
    """Seeded permutation per epoch, sharded across DDP ranks, that can start part-way through.

    Args:
        n: dataset length.
        seed: base seed; epoch e uses ``seed + e``.
        on_epoch: called with the epoch number when Lightning sets it (e.g. the dataset's ``set_epoch``).
    """

    def __init__(self, n: int, seed: int = 0, on_epoch: Callable[[int], None] | None = None):
        self.n, self.seed, self.on_epoch = n, seed, on_epoch
        self.epoch, self.resume_epoch, self.start = 0, None, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.on_epoch:
            self.on_epoch(epoch)

    def _indices(self) -> list[int]:
        rank, world = _rank_world()
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return perm[: self.n // world * world][rank::world].tolist()  # equal shares so ranks stay in step

    def __iter__(self) -> Iterator[int]:
        idx = self._indices()
        start = self.start if self.resume_epoch == self.epoch else 0
        self.resume_epoch, self.start = None, 0  # a resume point applies once
        return iter(idx[start:])

    def __len__(self) -> int:
        return self.n // _rank_world()[1]


class ResumableLoader(DataLoader):
    """``DataLoader`` over a :class:`ResumableSampler` with Lightning's stateful-loader interface.

    Args:
        progress: returns how many batches of the current epoch the training loop has processed.
    """

    def __init__(self, dataset, sampler: ResumableSampler, progress: Callable[[], int], **kwargs):
        super().__init__(dataset, sampler=sampler, drop_last=True, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": int(self.progress())}

    def load_state_dict(self, state: dict) -> None:
        if 0 < state["batches"] < len(self):  # an epoch that had finished restarts cleanly at the next one
            self.sampler.resume_epoch = state["epoch"]
            self.sampler.start = state["batches"] * self.batch_size
