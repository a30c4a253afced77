"""Will a training step fit in this machine's memory? Checked before ``rgbt fit`` starts on the CPU.

A transformer trained on the CPU with a GPU-sized batch grows until the kernel kills it, and the user sees only
"Killed" after minutes of work (SwinFusion with the official 12 patches of 128 px: over 22 GB). Before fitting on
the CPU, the network runs forward once on one patch while autograd's saved-tensor hooks count the activations kept
for the backward pass; the activations of a batch are that many times the batch size. When that estimate does not
fit in the memory available, ``rgbt fit`` stops with one line that names a batch size that fits.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from fusion.errors import RgbtError

# The backward pass and the optimiser need more than the saved activations: the peak measured for SwinFusion,
# CDDFuse, DDcGAN and DenseFuse was 1.3-1.9 times them (docs/training.md), so plan with 2.
HEADROOM = 2.0


def activation_bytes(model: nn.Module, patch: int, channels: int = 1) -> int:
    """Bytes autograd keeps for the backward pass when ``model`` fuses one (1, C, patch, patch) pair."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()  # views of one storage count once
        return t

    vis, ir = torch.rand(1, channels, patch, patch), torch.rand(1, 1, patch, patch)
    was_training = model.training
    model.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(vis, ir)
    finally:
        model.train(was_training)
    return sum(storages.values())


def available_bytes() -> int | None:
    """Memory this process may still use: the kernel's MemAvailable, or less under a cgroup limit (containers)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            avail = min(avail or 1 << 62, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def check_cpu_batch(model: nn.Module, batch_size: int, patch: int, name: str) -> None:
    """Raise :class:`RgbtError` (one line, with a batch size that fits) when ``batch_size`` patches of ``patch``
    pixels would not fit in the available memory. ``RGBT_SKIP_MEMORY_CHECK=1`` skips the check."""
    if os.environ.get("RGBT_SKIP_MEMORY_CHECK") == "1":
        return
    avail = available_bytes()
    if avail is None:
        return
    per_patch = activation_bytes(model, patch) * HEADROOM
    if per_patch * batch_size <= avail:
        return
    fits = int(avail // per_patch)
    gb = 1 << 30
    fix = f"pass --data.batch_size {fits} (about {fits * per_patch / gb:.1f} GB)" if fits else "use smaller patches"
    raise RgbtError(
        f"training {name} on the CPU with batches of {batch_size} patches of {patch}x{patch} px needs about "
        f"{batch_size * per_patch / gb:.1f} GB, but {avail / gb:.1f} GB are available; {fix}, or train on a GPU "
        "(--trainer.accelerator gpu); RGBT_SKIP_MEMORY_CHECK=1 skips this check"
    )
