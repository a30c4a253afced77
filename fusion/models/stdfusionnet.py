"""STDFusionNet: an infrared and visible image fusion network based on salient target detection.

Ma, Tang, Xu, Zhang, Fan and Jiang, "STDFusionNet: An Infrared and Visible Image Fusion Network Based on Salient
Target Detection", IEEE Transactions on Instrumentation and Measurement 70, 2021.

Layout (the authors' TensorFlow 1 ``STDFusion_model``, ``test_network.py``), zero padding, leaky ReLU of slope 0.2:
- per source (visible, infrared), a 5x5 conv 1->16 and three residual blocks (1x1 conv, 3x3 conv, 1x1 conv, plus
  the input or a bias-free 1x1 projection of it): 16->16, 16->32, 32->64, each ending in leaky ReLU;
- the two 64-channel encodings stacked [visible, infrared] and four such blocks 128->64->32->16->1, ending in ELU,
  ELU, leaky ReLU and tanh: the fused image on [-1, 1].
282,513 values in the checkpoint (``Fusion.model-29``). Inputs are ``level / 127.5 - 1``; the output
``(x + 1) x 127.5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, has_keys, visible_chroma_rgb
from fusion.models.sdnet import y_inputs

PREFIX = "STDFusion_model/"
ACTS = {"lrelu": lambda x: F.leaky_relu(x, 0.2), "elu": F.elu, "tanh": torch.tanh}


class ResBlock(nn.Module):
    """1x1 conv, leaky ReLU, 3x3 conv, leaky ReLU, 1x1 conv; plus the input (or its bias-free 1x1 projection when the
    width changes); then ``act``."""

    def __init__(self, cin: int, cout: int, act: str = "lrelu"):
        super().__init__()
        self.act = act
        self.conv1, self.conv2 = nn.Conv2d(cin, cin, 1), nn.Conv2d(cin, cin, 3, padding=1)
        self.conv3 = nn.Conv2d(cin, cout, 1)
        self.identity = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if fast:  # each conv with its activation, or with the skip added, in one oneDNN kernel (channels-last)
            y = conv(x, self.conv1.weight, self.conv1.bias, act="leaky_relu", slope=0.2)
            y = conv(y, self.conv2.weight, self.conv2.bias, 1, act="leaky_relu", slope=0.2)
            skip = x if self.identity is None else conv(x, self.identity.weight)
            act = {"lrelu": "leaky_relu", "tanh": "tanh"}.get(self.act, "none")
            z = conv(y, self.conv3.weight, self.conv3.bias, act=act, slope=0.2, add=skip)
            return F.elu(z) if self.act == "elu" else z
        y = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        skip = x if self.identity is None else self.identity(x)
        return ACTS[self.act](self.conv3(y) + skip)


class Extractor(nn.Module):
    """One source's features: (B, 1, H, W) -> (B, 64, H, W)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.blocks = nn.Sequential(ResBlock(16, 16), ResBlock(16, 32), ResBlock(32, 64))

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if fast:
            x = conv(x, self.conv1.weight, self.conv1.bias, 2, act="leaky_relu", slope=0.2)
        else:
            x = F.leaky_relu(self.conv1(x), 0.2)
        for block in self.blocks:
            x = block(x, fast)
        return x


class STDFusionNet(nn.Module):
    """STDFusionNet: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        exact: the plain ops; otherwise (in eval mode) fused oneDNN kernels on channels-last maps (the same values up
            to float rounding).
    """

    name = "stdfusionnet"

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        self.vi, self.ir = Extractor(), Extractor()
        self.reconstruction = nn.Sequential(
            ResBlock(128, 64, "elu"), ResBlock(64, 32, "elu"), ResBlock(32, 16), ResBlock(16, 1, "tanh")
        )

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The tanh output on [-1, 1], from inputs already on [-1, 1]."""
        fast = not (self.exact or self.training)
        x = torch.cat([self.vi(vis, fast), self.ir(ir, fast)], dim=1)
        for block in self.reconstruction:
            x = block(x, fast)
        return x.contiguous()

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5)


def _detect(obj) -> str | None:
    keys = (PREFIX + "vi_extraction_network/conv1/w", PREFIX + "reconstruction_network/block4/conv3/w")
    return "" if has_keys(obj, *keys) else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = parts[""]
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, scope: str, bias: bool = True) -> None:
        state[f"{ours}.weight"] = torch.as_tensor(tf[f"{PREFIX}{scope}/w"]).permute(3, 2, 0, 1).contiguous()
        if bias:
            state[f"{ours}.bias"] = torch.as_tensor(tf[f"{PREFIX}{scope}/b"])

    def block(ours: str, scope: str, projected: bool) -> None:
        for c in ("conv1", "conv2", "conv3"):
            put(f"{ours}.{c}", f"{scope}/{c}")
        if projected:
            put(f"{ours}.identity", f"{scope}/identity_conv", bias=False)

    for s, net in (("vi", "vi_extraction_network"), ("ir", "ir_extraction_network")):
        put(f"{s}.conv1", f"{net}/conv1")
        for i in range(3):
            block(f"{s}.blocks.{i}", f"{net}/block{i + 1}", projected=i > 0)
    for i in range(4):
        block(f"reconstruction.{i}", f"reconstruction_network/block{i + 1}", projected=True)
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``STDFusionNet/STDFusionNet.py`` (the authors' ``test_network.py``): both images read as the Y
    of PIL's YCbCr (float64), ``x / 127.5 - 1``; the output ``(x + 1) x 127.5`` saved with ``scipy.misc.imsave``
    (min-max stretch), then the visible image's chroma."""
    vis, ir = y_inputs(ir_path, vis_path, lambda x: x / 127.5 - 1.0)
    out = (model.forward_raw(vis, ir)[0, 0].numpy() + np.float32(1)) * np.float32(127.5)
    return visible_chroma_rgb(out, vis_path)


FAMILY = Family(
    name="stdfusionnet",
    model=STDFusionNet,
    formats="STDFusionNet's TensorFlow 1 checkpoint Fusion.model-29 (.index + .data-*: STDFusion_model/...)",
    detect=_detect,
    convert=_convert,
    exact={},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
