"""Training: LightningModules (one per procedure), the shared validation base and the ``rgbt fit`` CLI."""

from fusion.train.base import FusionTask
from fusion.train.ddcgan_authors import DDcGANAuthorsModule
from fusion.train.ema import EMA
from fusion.train.modules import AutoencoderModule, CDDFuseModule, FusionModule, GANFusionModule

__all__ = [
    "EMA",
    "AutoencoderModule",
    "CDDFuseModule",
    "DDcGANAuthorsModule",
    "FusionModule",
    "FusionTask",
    "GANFusionModule",
]
