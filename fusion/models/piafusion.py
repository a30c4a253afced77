"""PIAFusion: a progressive infrared and visible image fusion network based on illumination awareness.

Tang, Yuan, Zhang, Jiang and Ma, "PIAFusion: A progressive infrared and visible image fusion network based on
illumination aware", Information Fusion 83-84, 2022.

Layout (the authors' TensorFlow 1 ``train_network.py``, scope ``PIAFusion/``; reflect padding, leaky ReLU
``max(x, 0.2 x)``: ``train_network.py`` imports ``utils``' ``lrelu`` over ``ops``' 0.1 one):
- encoder: a 1x1 conv 1->16 per source, then four 3x3 convs shared by both sources (16->16->32->64->128), the
  first three each followed by the cross-modality differential aware fusion (CMDAF): each source gains the other's
  difference weighted by the sigmoid of its global average, ``v + sigmoid(mean(i - v)) (v - i)`` and
  ``i + sigmoid(mean(v - i)) (i - v)``;
- decoder: the two 128-channel encodings stacked [visible, infrared] through 3x3 convs 256->256->128->64->32 and a
  1x1 conv to one channel, ``tanh(x) / 2 + 0.5``.
1,076,785 values in the fusion network (the illumination classifier that trains it, saved beside it under
``classifier/``, is not read). The network fuses the visible image's Y of the studio-swing BT.601 transform the
authors use (``0.257 R + 0.564 G + 0.098 B + 16/255``); ``forward`` maps our full-range Y into that range and back.
The CMDAF means are over the whole window: images over 1024 px a side, fused in tiles, are weighted per tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv
from fusion.models.official import Family, OfficialImage, has_keys, near_boundary

ENCODER = (16, 32, 64, 128)
DECODER = (256, 128, 64, 32)
LO, SPAN = 16.0 / 255.0, 219.0 / 255.0  # studio swing: Y on [16, 235] / 255


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x)


def cmdaf(v: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-modality differential aware fusion, in the authors' order of operations."""
    vi_ir, ir_vi = v - i, i - v
    w_vi_ir = torch.sigmoid(vi_ir.mean((2, 3), keepdim=True))
    w_ir_vi = torch.sigmoid(ir_vi.mean((2, 3), keepdim=True))
    return v + w_ir_vi * vi_ir, i + w_vi_ir * ir_vi


class PIAFusion(nn.Module):
    """PIAFusion's fusion network: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size.

    Args:
        exact: the plain ops; otherwise (in eval mode) each conv with its leaky ReLU in one oneDNN kernel on
            channels-last maps (the same values up to float rounding).
    """

    name = "piafusion"

    def __init__(self, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"exact": exact}
        self.stem_ir, self.stem_vi = nn.Conv2d(1, 16, 1), nn.Conv2d(1, 16, 1)
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip((16, *ENCODER[:-1]), ENCODER, strict=True))
        self.decoder = nn.ModuleList(nn.Conv2d(a, b, 3) for a, b in zip((256, *DECODER[:-1]), DECODER, strict=True))
        self.out = nn.Conv2d(32, 1, 1)

    def _conv(self, x: torch.Tensor, layer: nn.Conv2d, fast: bool, act: bool = True) -> torch.Tensor:
        pad = layer.kernel_size[0] // 2
        if fast:
            return conv(x, layer.weight, layer.bias, pad, act="leaky_relu" if act else "none", slope=0.2,
                        pad_mode="reflect")  # fmt: skip
        y = layer(F.pad(x, (pad,) * 4, mode="reflect") if pad else x)
        return lrelu(y) if act else y

    def forward_raw(self, y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """``tanh(x) / 2 + 0.5`` from the visible studio-swing Y and the infrared image, (B, 1, H, W) on [0, 1]."""
        fast = not (self.exact or self.training)
        i, v = self._conv(ir, self.stem_ir, fast), self._conv(y, self.stem_vi, fast)
        for k, layer in enumerate(self.encoder):
            i, v = self._conv(i, layer, fast), self._conv(v, layer, fast)  # one conv for both sources
            if k < len(self.encoder) - 1:
                v, i = cmdaf(v, i)
        x = torch.cat([v, i], 1)
        for layer in self.decoder:
            x = self._conv(x, layer, fast)
        x = self._conv(x, self.out, fast, act=False)
        return (torch.tanh(x) / 2 + 0.5).contiguous()

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        out = (self.forward_raw(vis * SPAN + LO, ir) - LO) / SPAN  # our full-range Y in and out
        return out + (out.clamp(0, 1) - out).detach()


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "PIAFusion/encoder/conv5x5_ir/kernel", "PIAFusion/decoder/conv1x1/kernel") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    tf = parts[""]
    state: dict[str, torch.Tensor] = {}

    def put(ours: str, scope: str) -> None:
        state[f"{ours}.weight"] = torch.as_tensor(tf[f"PIAFusion/{scope}/kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.bias"] = torch.as_tensor(tf[f"PIAFusion/{scope}/bias"])

    put("stem_ir", "encoder/conv5x5_ir")  # 1x1 convs, whatever their scope says
    put("stem_vi", "encoder/conv5x5_vi")
    for k in range(len(ENCODER)):
        put(f"encoder.{k}", f"encoder/Conv{k + 1}/conv3x3")
    for k in range(len(DECODER)):
        put(f"decoder.{k}", f"decoder/conv{k + 1}")
    put("out", "decoder/conv1x1")
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``PIAFusion/PIAFusion.py`` (the authors' ``test`` of ``model.py``): infrared read by
    ``cv2.imread(p, 0)``, visible by ``cv2.imread(p, 1)`` to RGB, both ``/ 255``; the visible Y, Cb, Cr by the
    authors' studio-swing formulas (float32); the fused Y with the visible Cb, Cr back to RGB by their inverse,
    ``x 255`` and written by ``cv2.imwrite`` as a float image (rounded half to even, saturated); colour."""
    import cv2

    from fusion.io import read_as

    ir = torch.from_numpy(read_as(ir_path, "cv2:grey").astype(np.float64) / 255.0).float()[None, None]
    rgb = cv2.cvtColor(read_as(vis_path, "cv2:bgr"), cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255.0)
    r, g, b = (torch.from_numpy(rgb[..., c])[None, None] for c in range(3))
    lo, mid = 16.0 / 255.0, 128.0 / 255.0
    y = 0.257 * r + 0.564 * g + 0.098 * b + lo
    cb = -0.148 * r - 0.291 * g + 0.439 * b + mid
    cr = 0.439 * r - 0.368 * g - 0.071 * b + mid
    f = model.forward_raw(y, ir) - lo
    out = torch.cat([1.164 * f + 1.596 * (cr - mid), 1.164 * f - 0.392 * (cb - mid) - 0.813 * (cr - mid),
                     1.164 * f + 2.017 * (cb - mid)], 1)[0].permute(1, 2, 0).numpy() * np.float32(255.0)  # fmt: skip
    near = near_boundary(out, "round").any(-1)
    return OfficialImage(np.clip(np.rint(out), 0, 255).astype(np.uint8), near)


FAMILY = Family(
    name="piafusion",
    model=PIAFusion,
    formats="PIAFusion's TensorFlow 1 checkpoint IAFusion.model-* (.index + .data-*: PIAFusion/encoder/...)",
    detect=_detect,
    convert=_convert,
    exact={},  # TensorFlow rounds its own way: the fast kernels match it as closely as the plain ones
    official=official,
)
