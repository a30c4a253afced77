"""Exponential moving average of the weights, as KAIR-based training code keeps it (SwinFusion's ``update_E``)."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """EMA of the network's parameters, starting from the initial weights: after every optimiser step
    ``E = decay * E + (1 - decay) * W``, with ``E = W`` before the first step.

    Lightning's :class:`~pytorch_lightning.callbacks.EMAWeightAveraging` starts ``E`` from the weights after the
    first step instead; SwinFusion's training (KAIR's ``ModelPlain.update_E``: ``update_E(0)`` at set-up, then
    ``update_E(0.999)`` after each step) starts from the initial ones, which this callback does. Buffers are not
    averaged (KAIR averages ``named_parameters`` only). Validation, checkpoints and exports use the averaged
    weights, as with Lightning's callback.

    Args:
        decay: the weight of the old average (SwinFusion: 0.999).
    """

    def __init__(self, decay: float = 0.999, **kwargs):
        super().__init__(decay=decay, use_buffers=False, **kwargs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and self._average_model is not None:
            self._average_model.update_parameters(pl_module)  # the first update copies: E = W before any step
