"""YDTR: infrared and visible image fusion via a Y-shape dynamic transformer.

Tang, He and Liu, "YDTR: Infrared and Visible Image Fusion via Y-shape Dynamic Transformer", IEEE Transactions
on Multimedia 25, 2023.

Layout (the authors' ``Networks/net.py`` ``MODEL(in_channel=1)``), shared by both sources:
- a replicate-padded 3x3 conv 1->64 with batch norm and ReLU;
- a dynamic filter (``DDF``): the map times a spatial gate (3x3 convs 64->8->1, no activation between) plus the
  map times a channel gate (global mean, 1x1 convs 64->8, ReLU, 8->64);
- two transformer blocks (:mod:`fusion.models._flatblock`, which explains what they compute);
then the two results are added, passed once more through the same dynamic filter and blocks, and a 1x1 conv
64->1 with tanh gives the image. 218,159 values in the authors' state_dict: two conv blocks (``conv64``, ``conv``)
and a patch-embedding norm are saved but unused by their forward, and load here unused too.

The transformer blocks read the feature map's memory in runs of 64 values and the channel gate averages the whole
map, so the output depends on the image's size: above 1024 px a side, where images are fused in tiles to bound
memory, each tile is computed as an image of its own and the result differs from a whole-image run everywhere,
not only at the seams. The fast path folds batch norms, runs both sources in one batch and fuses the block's
matrices (``exact=True``: bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv, fold_bn
from fusion.models._flatblock import FlatLayer, PatchNorm
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, grey_result, has_keys, to_input


class ConvBNReLU(nn.Module):
    """Replicate-padded conv, batch norm, ReLU (the authors' ``Convlutioanl``)."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k)
        self.bn = nn.BatchNorm2d(cout)
        self.pad = k // 2

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if fast:  # NCHW kept: the transformer blocks read the map's NCHW memory
            return conv(x, *fold_bn(self.conv, self.bn), self.pad, act="relu", pad_mode="replicate", keep_layout=True)
        return F.relu(self.bn(self.conv(F.pad(x, (self.pad,) * 4, "replicate"))), inplace=True)


class _Seq(nn.Module):
    """One module or a sequence under the authors' key (``body``, ``fc``, ``conv``)."""

    def __init__(self, key: str, *layers: nn.Module):
        super().__init__()
        setattr(self, key, layers[0] if len(layers) == 1 else nn.Sequential(*layers))


class DynamicFilter(nn.Module):
    """The authors' ``DDFPack``: x * spatial_gate(x) + x * channel_gate(x)."""

    def __init__(self, c: int = 64, r: int = 8):
        super().__init__()
        self.spatial_branch = _Seq("body", nn.Conv2d(c, c // r, 3, padding=1), nn.Conv2d(c // r, 1, 3, padding=1))
        self.channel_branch = _Seq("fc", nn.Conv2d(c, 8, 1), nn.ReLU(inplace=True), nn.Conv2d(8, c, 1))

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        channel = self.channel_branch.fc(F.adaptive_avg_pool2d(x, 1))
        if not fast:
            return x * self.spatial_branch.body(x) + x * channel
        s0, s1 = self.spatial_branch.body
        s = conv(conv(x, s0.weight, s0.bias, 1), s1.weight, s1.bias, 1)
        return x * (s + channel)


class YDTR(nn.Module):
    """YDTR (grey / Y channel).

    Args:
        exact: the authors' arithmetic bit for bit; otherwise the fast path (same function up to float rounding).

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1] (the tanh clamped), any H, W.
    """

    name = "ydtr"
    unused = ("conv64.", "conv.", "patch_embed.", "relative_position_bias_table")  # saved, never used (the authors')

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        c = 64
        self.convInput = ConvBNReLU(1, c)
        self.conv64 = ConvBNReLU(c, c)  # saved, unused (as in the authors' forward)
        self.conv = ConvBNReLU(2 * c, c)  # saved, unused
        self.convolutional_out = _Seq("conv", nn.Conv2d(c, 1, 1))
        self.DDF = DynamicFilter(c)
        self.patch_embed = PatchNorm(96)
        self.basicLayer = FlatLayer(c, depth=2, heads=8, mlp_ratio=4.0)

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output, in [-1, 1]."""
        fast = not (self.exact or self.training)
        if fast:  # one batch for both sources: the blocks' rows never cross from one image into the other
            x = self.basicLayer(self.DDF(self.convInput(torch.cat([ir, vis]), True), True).contiguous(), True)
            b = vis.shape[0]
            x = x[:b] + x[b:]
        else:
            a = self.basicLayer(self.DDF(self.convInput(ir)))
            x = a + self.basicLayer(self.DDF(self.convInput(vis)))
        x = self.basicLayer(self.DDF(x, fast), fast)
        c = self.convolutional_out.conv
        return conv(x, c.weight, c.bias, act="tanh") if fast else torch.tanh(c(x))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir))


def _detect(obj) -> str | None:
    return (
        "" if has_keys(obj, "convInput.conv.weight", "DDF.spatial_branch.body.0.weight", "conv64.conv.weight") else None
    )


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in parts[""].items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """tthinking/YDTR ``Test.py``: both images read by PIL ``convert('L')``, ``ToTensor``, ``model(ir, vis)``; the
    tanh output times 255 cast with numpy's ``astype(uint8)`` (truncation; negative values wrap around, as they do
    in the authors' saved images), saved with imageio: a grey image."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    d = np.squeeze(model.forward_raw(vis, ir).numpy())
    return grey_result(d * 255, "trunc")


FAMILY = Family(
    name="ydtr",
    model=YDTR,
    formats="YDTR's model_10.pth (a state_dict with convInput.conv.weight and DDF.spatial_branch.body.0.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
