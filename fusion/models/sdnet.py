"""SDNet: a versatile squeeze-and-decomposition network for real-time image fusion.

Zhang and Ma, "SDNet: A Versatile Squeeze-and-Decomposition Network for Real-Time Image Fusion", International
Journal of Computer Vision 129, 2021.

Layout (the authors' TensorFlow 1 ``fusion_model``, the infrared-visible model ``IRVIS.model-10``), zero ('SAME')
padding, leaky ReLU ``max(x, 0.2 x)``:
- per source, a 5x5 conv 1->16 and three 3x3 convs of 16 maps, each seeing every earlier map of its source
  (16, 32, 48 channels in);
- the squeeze: the eight maps interleaved [ir1, vi1, ir2, vi2, ir3, vi3, ir4, vi4] (128 channels), a 1x1 conv to one
  channel and tanh: the fused image on [-1, 1];
- the decomposition (used in training only): a 1x1 conv 1->128 and, per source, 3x3 convs 128->16->4->1 with tanh.
  Its weights load with the rest and are not run.
67,091 values in the checkpoint. Inputs are ``(level - 127.5) / 127.5``; the output ``x 127.5 + 127.5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import channels_last, conv
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, has_keys, visible_chroma_rgb

SOURCES = ("ir", "vi")


def _branch() -> nn.ModuleList:
    return nn.ModuleList([nn.Conv2d(1, 16, 5, padding=2)] + [nn.Conv2d(16 * i, 16, 3, padding=1) for i in (1, 2, 3)])


class SDNet(nn.Module):
    """SDNet's fusion network: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        exact: the plain ops; otherwise (in eval mode) each conv runs with its activation in one oneDNN kernel on
            channels-last maps (the same values up to float rounding).
    """

    name = "sdnet"
    unused = ("sept", "decompose")  # the decomposition branch: in the authors' file, not in fusing

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        self.ir, self.vi = _branch(), _branch()
        self.fuse = nn.Conv2d(128, 1, 1)
        # the decomposition branch: trained with the rest, not part of fusing
        self.sept = nn.Conv2d(1, 128, 1)
        self.decompose = nn.ModuleDict(
            {s: nn.Sequential(nn.Conv2d(128, 16, 3, padding=1), nn.Conv2d(16, 4, 3, padding=1),
                              nn.Conv2d(4, 1, 3, padding=1)) for s in SOURCES}
        )  # fmt: skip

    def _features(self, x: torch.Tensor, branch: nn.ModuleList, fast: bool) -> list[torch.Tensor]:
        maps: list[torch.Tensor] = []
        for layer in branch:
            inp = x if not maps else torch.cat(maps, dim=1)
            if fast:
                maps.append(conv(inp, layer.weight, layer.bias, layer.padding[0], act="leaky_relu", slope=0.2))
            else:
                maps.append(F.leaky_relu(layer(inp), 0.2))
        return maps

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The squeeze's tanh output on [-1, 1], from inputs already on [-1, 1]."""
        fast = not (self.exact or self.training)
        f_ir, f_vi = self._features(ir, self.ir, fast), self._features(vis, self.vi, fast)
        x = torch.cat([m for pair in zip(f_ir, f_vi, strict=True) for m in pair], dim=1)  # ir1, vi1, ir2, ...
        if fast:
            return conv(channels_last(x), self.fuse.weight, self.fuse.bias, act="tanh").contiguous()
        return torch.tanh(self.fuse(x))

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis * 2 - 1, ir * 2 - 1) / 2 + 0.5)


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "fusion_model/layer1_ir/w1_ir", "fusion_model/layer5_fuse/w5_fuse") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = parts[""]

    def put(ours: str, scope: str, n: str) -> None:
        state[f"{ours}.weight"] = torch.as_tensor(tf[f"fusion_model/{scope}/w{n}"]).permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.bias"] = torch.as_tensor(tf[f"fusion_model/{scope}/b{n}"])

    state: dict[str, torch.Tensor] = {}
    for s in SOURCES:
        for i in range(4):
            put(f"{s}.{i}", f"layer{i + 1}_{s}", f"{i + 1}_{s}")
        for i in range(3):
            put(f"decompose.{s}.{i}", f"layer{i + 7}_{s}", f"{i + 7}_{s}")
    put("fuse", "layer5_fuse", "5_fuse")
    put("sept", "layer6_sept", "6_sept")
    return state


def _read_y(path: Path) -> np.ndarray:
    """``scipy.misc.imread(path, flatten=True, mode='YCbCr')``: PIL's YCbCr conversion, then its ``F`` of that (the
    Y plane as float32), as old SciPy's ``fromimage`` did."""
    from PIL import Image

    from fusion.io import read_as

    read_as(path, "pil:L")  # every check our reader makes (missing, corrupt, 16-bit), with its one-line messages
    with Image.open(path) as im:
        return np.array(im.convert("YCbCr").convert("F"))


def y_inputs(ir_path: Path, vis_path: Path, scale) -> tuple[torch.Tensor, torch.Tensor]:
    """(vis, ir) as (1, 1, H, W) float32: each image's Y (:func:`_read_y`) as float64 levels put through ``scale``,
    the script's own expression (``(x - 127.5) / 127.5`` and ``x / 127.5 - 1`` can round apart), then cast as
    TensorFlow casts the fed array."""
    return tuple(torch.from_numpy(scale(_read_y(p).astype(np.float64)).astype(np.float32))[None, None]
                 for p in (vis_path, ir_path))  # fmt: skip


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``SDNet/SDNet.py`` (the authors' ``test`` code with VIF-Benchmark's ``img2RGB``): both images
    read as the Y of PIL's YCbCr (float64), ``(x - 127.5) / 127.5``; the output ``x 127.5 + 127.5`` saved with
    ``scipy.misc.imsave`` (min-max stretch), then the visible image's chroma. PMGI's, FusionGAN's and GANMcC's
    scripts (the same group's) do exactly this around their networks."""
    vis, ir = y_inputs(ir_path, vis_path, lambda x: (x - 127.5) / 127.5)
    out = model.forward_raw(vis, ir)[0, 0].numpy() * np.float32(127.5) + np.float32(127.5)
    return visible_chroma_rgb(out, vis_path)


FAMILY = Family(
    name="sdnet",
    model=SDNet,
    formats="SDNet's TensorFlow 1 checkpoint IRVIS.model-10 (.index + .data-*: fusion_model/layer1_ir/w1_ir ...)",
    detect=_detect,
    convert=_convert,
    exact={},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
