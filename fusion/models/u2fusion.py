"""U2Fusion: a unified unsupervised image fusion network.

Xu, Ma, Jiang, Guo and Ling, "U2Fusion: A Unified Unsupervised Image Fusion Network", IEEE Transactions on Pattern
Analysis and Machine Intelligence 44(1), 2022.

Layout (the authors' TensorFlow 1 ``Net.py``, 44 channels; every 3x3 conv on a reflection-padded map, no
normalisation, leaky ReLU ``max(x, 0.2 x)``):
- [infrared, visible] stacked, conv 2->44;
- a dense block of five convs, each 44 channels, whose output is put *before* its input: 88, 132, ... 264 channels;
- decoder 264->128->64->32->1, the last without leaky ReLU, then ``tanh(x) / 2 + 0.5``.
659,217 values in the authors' checkpoint (``model.ckpt``, read without TensorFlow by :mod:`fusion.models.tf1`).

The checkpoint's kernels are (kh, kw, in, out) as TensorFlow stores them; :func:`_convert` transposes them to
PyTorch's (out, in, kh, kw).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import channels_last, conv
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, has_keys, to_input, visible_chroma_rgb

WIDTH = 44
ENC, DEC = "Generator/encoder/", "Generator_1/decoder/"


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class U2Fusion(nn.Module):
    """U2Fusion's generator: ``forward(vis, ir) -> fused`` on (B, 1, H, W) in [0, 1], any size (H, W >= 2).

    Args:
        width: channels of each encoder conv (the authors': 44).
        exact: the plain ops, as the official mode runs them; otherwise (in eval mode) each conv runs with its
            padding and activation in one oneDNN kernel on channels-last maps (the same values up to float rounding).
    """

    name = "u2fusion"

    def __init__(self, width: int = WIDTH, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"width": width, "exact": exact}
        self.encoder = nn.ModuleList([_conv(2, width)] + [_conv(width * i, width) for i in range(1, 6)])
        self.decoder = nn.ModuleList([_conv(width * 6, 128), _conv(128, 64), _conv(64, 32), _conv(32, 1)])

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The network's output, ``tanh / 2 + 0.5`` of the last conv."""
        if not (self.exact or self.training):
            return self._fast(vis, ir)
        x = torch.cat([ir, vis], dim=1)  # (B, 2, H, W): SOURCE1 is the infrared image
        x = F.leaky_relu(self.encoder[0](x), 0.2)
        for layer in self.encoder[1:]:  # dense: the new 44 maps first, then everything before
            x = torch.cat([F.leaky_relu(layer(x), 0.2), x], dim=1)
        for layer in self.decoder[:-1]:
            x = F.leaky_relu(layer(x), 0.2)
        return torch.tanh(self.decoder[-1](x)) / 2 + 0.5

    def _fast(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        def run(x, c, act="leaky_relu"):
            return conv(x, c.weight, c.bias, 1, act=act, slope=0.2, pad_mode="reflect")

        x = run(channels_last(torch.cat([ir, vis], dim=1)), self.encoder[0])
        for c in self.encoder[1:]:
            x = torch.cat([run(x, c), x], dim=1)
        for c in self.decoder[:-1]:
            x = run(x, c)
        return (run(x, self.decoder[-1], "tanh") / 2 + 0.5).contiguous()

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir))


def _detect(obj) -> str | None:
    # DDcGAN's generator (the same author's code) has the same scopes, plus batch norms U2Fusion has not
    ddcgan = has_keys(obj, "Generator/encoder/b0/batch_normalization/gamma")
    return "" if has_keys(obj, ENC + "conv1_1/kernel", DEC + "conv2_4/kernel") and not ddcgan else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    """The authors' variables (TensorFlow names and layouts) as our state_dict."""
    tf = parts[""]
    names = ["conv1_1"] + [f"dense_block_conv{i}" for i in range(1, 6)]
    pairs = [(f"encoder.{i}", ENC + n) for i, n in enumerate(names)]
    pairs += [(f"decoder.{i}", DEC + f"conv2_{i + 1}") for i in range(4)]
    state = {}
    for ours, theirs in pairs:
        state[f"{ours}.weight"] = torch.as_tensor(tf[theirs + "/kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"{ours}.bias"] = torch.as_tensor(tf[theirs + "/bias"])
    return state


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark ``U2Fusion/U2Fusion.py`` (the authors publish no test script for these weights): both images
    read with ``scipy.misc.imread(mode='L')`` (PIL ``convert('L')``), divided by 255; the output saved with
    ``scipy.misc.imsave``, whose ``bytescale`` stretches it to 0-255 (min to 0, max to 255, float32, +0.5,
    truncated); then ``img2RGB``: the visible image's PIL YCbCr chroma with the fused grey as Y, back to RGB."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    return visible_chroma_rgb(model.forward_raw(vis, ir)[0, 0].numpy(), vis_path)


FAMILY = Family(
    name="u2fusion",
    model=U2Fusion,
    formats="U2Fusion's TensorFlow 1 checkpoint model.ckpt (.index + .data-*: Generator/encoder/conv1_1/kernel ...)",
    detect=_detect,
    convert=_convert,
    # TensorFlow's convolutions and ours round differently anyway: the official mode takes the fast kernels too,
    # whose values differ from the plain ops' by float noise only (tests/fixtures/zoo/README.md)
    exact={},
    official=official,
)
