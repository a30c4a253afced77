"""A network of your own, trained by rgbt fit and scored by rgbt experiment (docs/training.md)."""

import torch
from torch import nn


class MyNet(nn.Module):
    """forward(vis, ir) -> fused: (B, 1, H, W) in [0, 1], any H and W; a residual on the brighter source."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.config = {"width": width}  # the arguments rgbt needs to rebuild it from a checkpoint
        self.body = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1, padding_mode="reflect"),
            nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1, padding_mode="reflect"),
        )

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        base = torch.logit(torch.maximum(vis, ir).clamp(1e-3, 1 - 1e-3))  # start from the max rule
        return torch.sigmoid(base + self.body(torch.cat([vis, ir], dim=1)))
