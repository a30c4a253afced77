"""DATFuse: infrared and visible image fusion via a dual attention transformer.

Tang, He, Liu, Duan and Si, "DATFuse: Infrared and Visible Image Fusion via Dual Attention Transformer", IEEE
Transactions on Circuits and Systems for Video Technology 33(7), 2023.

Layout (the authors' ``Networks/network.py`` ``MODEL(in_channel=2)``), 16 channels:
- [infrared, visible] stacked, a replicate-padded 5x5 conv 2->16 with batch norm and ReLU;
- a feature module applied twice with the same weights (replicate-padded 3x3 conv, batch norm, ReLU, the same conv
  and batch norm again), then channel attention (global mean, 1x1 convs 16->4, ReLU, 4->16, sigmoid) and spatial
  attention (3x3 convs 16->4 with batch norm and ReLU, 4->1 with batch norm and sigmoid) on its output;
  encoding = ReLU(f * channel + f * spatial + the first conv's map);
- two transformer blocks (:mod:`fusion.models._flatblock`);
- the same feature module and attentions again, f * channel + f * spatial + f, and a 1x1 conv 16->1 with tanh.
10,840 values in the authors' state_dict (a patch-embedding norm is saved but unused, as in their forward).

The blocks read memory in runs of 16 values and the channel attention averages the whole map: above 1024 px a
side, where images are fused in tiles, each tile is computed as an image of its own (see ``ydtr.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import channels_last, conv, fold_bn
from fusion.models._flatblock import FlatLayer, PatchNorm
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, grey_result, has_keys, to_input
from fusion.models.ydtr import ConvBNReLU, _Seq


class FeatureModule(nn.Module):
    """The authors' ``Fem``: pad, conv, bn, ReLU, pad, the same conv, the same bn."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if fast:
            w, b = fold_bn(self.conv, self.bn)
            x = conv(F.pad(x, (1, 1, 1, 1), "replicate"), w, b, act="relu")
            return conv(F.pad(x, (1, 1, 1, 1), "replicate"), w, b)
        x = F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), "replicate"))), inplace=True)
        return self.bn(self.conv(F.pad(x, (1, 1, 1, 1), "replicate")))


class DATFuse(nn.Module):
    """DATFuse (grey / Y channel).

    Args:
        exact: the authors' arithmetic bit for bit; otherwise batch norms folded and kernels fused (the same function
            up to float rounding).

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1] (the tanh clamped), any H, W.
    """

    name = "datfuse"
    unused = ("patch_embed.", "relative_position_bias_table")  # saved, never used by the authors' forward

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        c = 16
        self.convolutional = ConvBNReLU(2, c, 5)
        self.convolutional_out = _Seq("conv", nn.Conv2d(c, 1, 1))
        self.fem = FeatureModule(c)
        self.cam = _Seq("fc", nn.Conv2d(c, c // 4, 1), nn.ReLU(inplace=True), nn.Conv2d(c // 4, c, 1))
        self.sam = _Seq(
            "body",
            nn.Conv2d(c, c // 4, 3, padding=1), nn.BatchNorm2d(c // 4), nn.ReLU(True),
            nn.Conv2d(c // 4, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Sigmoid(),
        )  # fmt: skip
        self.patch_embed = PatchNorm(96)
        self.basicLayer = FlatLayer(c, depth=2, heads=8, mlp_ratio=4.0)

    def _attend(self, f: torch.Tensor, fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(f * channel attention, f * spatial attention)."""
        cam = torch.sigmoid(self.cam.fc(F.adaptive_avg_pool2d(f, 1)))
        if not fast:
            return f * cam, f * self.sam.body(f)
        s = self.sam.body
        sam = conv(f, *fold_bn(s[0], s[1]), 1, act="relu")
        return f * cam, f * conv(sam, *fold_bn(s[3], s[4]), 1, act="sigmoid")

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output, in [-1, 1]."""
        fast = not (self.exact or self.training)
        x = torch.cat((ir, vis), 1)
        c = self.convolutional(channels_last(x) if fast else x, fast)
        f = self.fem(c, fast)
        fc, fs = self._attend(f, fast)
        t = self.basicLayer(F.relu(fc + fs + c), fast)
        f = self.fem(channels_last(t) if fast else t, fast)
        fc, fs = self._attend(f, fast)
        out = self.convolutional_out.conv
        if fast:
            return conv(fc + fs + f, out.weight, out.bias, act="tanh").contiguous()
        return torch.tanh(out(fc + fs + f))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir))


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "convolutional.conv.weight", "fem.conv.weight", "sam.body.0.weight") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in parts[""].items()}


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """tthinking/DATFuse ``Test.py``: both images read by PIL ``convert('L')``, ``ToTensor``, stacked [infrared,
    visible]; the tanh output times 255 cast with numpy's ``astype(uint8)`` (truncation; negative values wrap),
    saved with imageio: a grey image."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    result = np.squeeze(model.forward_raw(vis, ir).numpy())
    return grey_result(result * 255, "trunc")


FAMILY = Family(
    name="datfuse",
    model=DATFuse,
    formats="DATFuse's model_10.pth (a state_dict with convolutional.conv.weight, fem.conv.weight, sam.body.0.weight)",
    detect=_detect,
    convert=_convert,
    official=official,
)
