"""IFCNN: a general image fusion framework based on a convolutional neural network.

Zhang, Liu, Sun, Yan, Zhao and Zhang, "IFCNN: A general image fusion framework based on convolutional neural
network", Information Fusion 54, 2020.

Layout (the authors' ``model.py``): each source, as three channels, through ResNet-101's first conv (7x7, 3->64, no
bias, stride 1, replicate padding 3; frozen ImageNet weights saved in the file) and a 3x3 conv 64->64 with batch
norm and ReLU (replicate padding); the feature maps fused element-wise by one rule (MAX, SUM or MEAN, one trained
file each); a second 3x3 conv block 64->64 and a 1x1 conv 64->3. 83,843 values in the authors' state_dict (saved
before PyTorch kept batch-norm counters; they are added as zeros).

Grey inputs: the authors' script reads both images as RGB, so a grey image enters as three equal channels and
the output is converted to grey (OpenCV's RGB2GRAY). Our fast path computes that directly: the first conv's
weights summed over the three equal channels, the last conv's three outputs combined with the BT.601 weights
into one (``exact=True`` keeps the authors' three-channel arithmetic bit for bit), batch norms folded into the
convolutions, both sources in one batch, channels-last maps and no padded copies (:mod:`fusion.models._fast`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv, fold_bn
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, add_batch_counters, has_keys, near_boundary, to_input

RULES = ("max", "sum", "mean")
BT601 = (0.299, 0.587, 0.114)


class ConvBlock(nn.Module):
    """Replicate-padded 3x3 conv (no bias), batch norm, ReLU."""

    def __init__(self, c: int = 64):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), "replicate"))), inplace=True)


def fuse_maps(maps: list[torch.Tensor], rule: str) -> torch.Tensor:
    """Element-wise fusion of feature maps, in the authors' order of operations."""
    out = maps[0]
    for m in maps[1:]:
        out = torch.max(out, m) if rule == "max" else out + m
    return out / len(maps) if rule == "mean" else out


class IFCNN(nn.Module):
    """IFCNN for infrared-visible fusion.

    Args:
        rule: ``"max"`` (the authors' choice for infrared-visible images), ``"sum"`` or ``"mean"``; each has its
            own trained file.
        exact: the authors' arithmetic on three-channel inputs; otherwise the grey fast path (see the module
            docstring), the same function up to float rounding.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 4.
        ``forward_rgb(vis, ir)``: (B, 3, H, W) x 2 -> (B, 3, H, W), unclamped (the authors' network).
    """

    name = "ifcnn"

    def __init__(self, rule: str = "max", exact: bool = False):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"IFCNN rule must be one of {RULES}, got {rule!r}")
        self.rule, self.exact = rule, exact
        self.config = {"rule": rule, "exact": exact}
        self.conv1 = nn.Conv2d(3, 64, 7, bias=False)  # ResNet-101's conv1, stride and padding removed
        self.conv2 = ConvBlock()
        self.conv3 = ConvBlock()
        self.conv4 = nn.Conv2d(64, 3, 1)

    def forward_rgb(self, *images: torch.Tensor) -> torch.Tensor:
        """The authors' forward: each (B, 3, H, W) image through conv1 and conv2, fused, then conv3 and conv4."""
        maps = [self.conv2(self.conv1(F.pad(x, (3, 3, 3, 3), "replicate"))) for x in images]
        return self.conv4(self.conv3(fuse_maps(maps, self.rule)))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        if self.exact or self.training:
            rgb = self.forward_rgb(vis.expand(-1, 3, -1, -1), ir.expand(-1, 3, -1, -1))
            return clamp01((rgb * rgb.new_tensor(BT601).view(1, 3, 1, 1)).sum(1, keepdim=True))
        return self._fast(vis, ir)

    def _fast(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        b = vis.shape[0]
        x = torch.cat((vis, ir))  # three equal input channels: one channel, conv1's weights summed over them
        x = conv(x, self.conv1.weight.sum(1, keepdim=True), None, 3, pad_mode="replicate")
        x = conv(x, *fold_bn(self.conv2.conv, self.conv2.bn), 1, act="relu", pad_mode="replicate")
        f = fuse_maps([x[:b], x[b:]], self.rule)
        f = conv(f, *fold_bn(self.conv3.conv, self.conv3.bn), 1, act="relu", pad_mode="replicate")
        grey = self.conv4.weight.new_tensor(BT601)  # the RGB output's luminance, folded into the 1x1 conv
        w4 = (self.conv4.weight * grey.view(3, 1, 1, 1)).sum(0, keepdim=True)
        return clamp01(conv(f, w4, (self.conv4.bias * grey).sum().view(1))).contiguous()


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "conv1.weight", "conv2.conv.weight", "conv3.bn.running_var", "conv4.bias") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    state = {k.removeprefix("module."): v for k, v in parts[""].items()}
    return add_batch_counters(state, IFCNN())


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """uzeful/IFCNN ``Code/IFCNN_Main.py``, infrared-visible branch: both images read by PIL ``convert('RGB')``,
    ``ToTensor`` (mean 0, std 1), ``model(visible, infrared)``, clamp to [0, 1], times 255, truncated to uint8, then
    OpenCV's RGB2GRAY: a grey PNG."""
    from fusion.io import read_as

    vis, ir = to_input(read_as(vis_path, "pil:RGB")), to_input(read_as(ir_path, "pil:RGB"))
    res = model.forward_rgb(vis, ir)[0].clamp(0, 1) * 255
    levels = res.numpy()
    img = levels.astype("uint8").transpose([1, 2, 0])
    return OfficialImage(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), near_boundary(levels, "trunc").any(0))


FAMILY = Family(
    name="ifcnn",
    model=IFCNN,
    formats="IFCNN-MAX/MEAN/SUM.pth (a state_dict with conv1.weight, conv2.conv.weight ... conv4.bias)",
    detect=_detect,
    convert=_convert,
    official=official,
)
