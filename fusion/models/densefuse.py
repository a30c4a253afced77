"""DenseFuse: a deep image fusion network for infrared and visible images.

Li and Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 28(5), 2019.

Encoder: 3x3 conv 1->16, then a dense block of three 3x3 convs (16->16, 32->16, 48->16) whose inputs are the
concatenation of every earlier output: 64 channels. Decoder: 3x3 convs 64->64->32->16->1. Every conv uses
reflection padding and ReLU except the last (a known bug in one port applies ReLU there). 74,193 parameters
(encoder 14,032 + decoder 60,161), as in the paper.

Stage 1 trains the autoencoder to reconstruct single grey images (``reconstruct``); stage 2 fuses the two
encodings with a fixed strategy and decodes (``forward``): ``"mean"`` / ``"sum"`` (the paper's addition) or
``"l1"`` (per-pixel weights from the l1-norm of each feature vector, averaged over a 3x3 window).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import conv
from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, apply_rules, grey_result, has_keys, to_input

STRATEGIES = ("mean", "sum", "l1")


def _conv(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv_reflect(x: torch.Tensor, layer: nn.Sequential, exact: bool) -> torch.Tensor:
    """Apply one ``_conv`` layer (reflection pad, 3x3 conv, optional ReLU) to (B, C, H, W), H, W >= 2.

    ``exact`` pads the map and runs conv and ReLU as one oneDNN kernel: bit for bit the layer as built. Otherwise the
    conv uses its own zero padding and only the border lines are recomputed from reflection-padded strips
    (:func:`fusion.models._fast.conv`): the same values without copying the whole map into a padded one, which took
    as long as the convolutions themselves on a CPU.
    """
    c = layer[1]
    act = "relu" if len(layer) > 2 else "none"
    if exact:
        return conv(F.pad(x, (1, 1, 1, 1), mode="reflect"), c.weight, c.bias, act=act, keep_layout=True)
    return conv(x, c.weight, c.bias, 1, act=act, pad_mode="reflect", keep_layout=x.is_contiguous())


class DenseEncoder(nn.Module):
    """(B, 1, H, W) -> (B, 64, H, W) features."""

    def __init__(self, growth: int = 16, layers: int = 3):
        super().__init__()
        self.memory_format = torch.contiguous_format  # DenseFuse sets channels-last unless exact
        self.conv1 = _conv(1, growth)
        self.dense = nn.ModuleList(_conv(growth * (i + 1), growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exact = self.memory_format == torch.contiguous_format
        # a 1-channel input cannot carry the layout, so the first conv's output sets it for the rest
        x = conv_reflect(x, self.conv1, exact).contiguous(memory_format=self.memory_format)
        for layer in self.dense:
            x = torch.cat([x, conv_reflect(x, layer, exact)], 1)  # dense connection: every output sees all earlier
        return x


class DenseDecoder(nn.Module):
    """(B, 64, H, W) features -> (B, 1, H, W) image (not clamped: the reconstruction loss sees raw values)."""

    def __init__(self, channels: tuple[int, ...] = (64, 64, 32, 16)):
        super().__init__()
        convs = [_conv(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)]
        self.body = nn.Sequential(*convs, _conv(channels[-1], 1, relu=False))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        exact = f.is_contiguous()  # NCHW in: the exact path (DenseFuse's encoder sets the layout)
        for layer in self.body:
            f = conv_reflect(f, layer, exact)
        return f


def fuse_features(f_vis: torch.Tensor, f_ir: torch.Tensor, strategy: str = "l1") -> torch.Tensor:
    """Combine two (B, C, H, W) encodings by DenseFuse's addition or l1-norm strategy."""
    if strategy == "mean":
        return (f_vis + f_ir) / 2
    if strategy == "sum":
        return f_vis + f_ir
    if strategy == "l1":
        # activity = l1-norm over channels, smoothed by a 3x3 block average (the paper's r = 1)
        act = torch.stack([f_vis.abs().sum(1, keepdim=True), f_ir.abs().sum(1, keepdim=True)])  # (2, B, 1, H, W)
        act = F.avg_pool2d(act.flatten(0, 1), 3, 1, 1, count_include_pad=False).view_as(act)
        w = act / act.sum(0).clamp_min(1e-12)
        w = torch.where(act.sum(0) > 0, w, torch.full_like(w, 0.5))  # both silent: average
        return w[0] * f_vis + w[1] * f_ir
    raise ValueError(f"DenseFuse strategy must be one of {STRATEGIES}, got {strategy!r}")


class DenseFuse(nn.Module):
    """DenseFuse autoencoder with a fixed feature-fusion strategy.

    Args:
        strategy: ``"l1"``, ``"mean"`` or ``"sum"`` (see :func:`fuse_features`); changeable after training.
        official: behave as densefuse-pytorch's test script: inputs on 0-255 and a ReLU after the last conv (its
            ``conv5`` is built without ``is_last``); the output is divided by 255 back to [0, 1].
        exact: NCHW convolutions, which give the official code's floats bit for bit (default: when ``official``);
            otherwise feature maps are channels-last, about 1.3x faster on a CPU, and differ by float rounding.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "densefuse"

    def __init__(self, strategy: str = "l1", official: bool = False, exact: bool | None = None):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"DenseFuse strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy, self.official = strategy, official
        self.exact = official if exact is None else exact
        self.scale = 255.0 if official else 1.0
        self.config = {"strategy": strategy, "official": official, "exact": exact}
        self.encoder = DenseEncoder()
        self.encoder.memory_format = torch.contiguous_format if self.exact else torch.channels_last
        self.decoder = DenseDecoder()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1: encode and decode one image; (B, 1, H, W) -> (B, 1, H, W), unclamped (``official``: after the
        release's final ReLU, as its training saw it)."""
        out = self.decoder(self.encoder(x))
        return torch.relu(out) if self.official else out

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The decoder's output before clamping, on the network's own scale (0-255 when ``official``)."""
        if self.exact:  # one source at a time, as the authors' script: a batch of two rounds some convolutions apart
            f_vis, f_ir = self.encoder(vis * self.scale), self.encoder(ir * self.scale)
        else:
            f = self.encoder(torch.cat([vis, ir]) * self.scale)  # one pass over both sources
            f_vis, f_ir = f[: vis.shape[0]], f[vis.shape[0] :]
        out = self.decoder(fuse_features(f_vis, f_ir, self.strategy))
        return torch.relu(out) if self.official else out

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir) / self.scale)


# the authors' files: densefuse-pytorch's ``*.model``, a bare state_dict of 16 keys in the legacy non-zip format
_RULES = [
    (r"conv1\.conv2d\.(\w+)", "encoder.conv1.1.{1}"),
    (r"DB1\.denseblock\.(\d+)\.dense_conv\.conv2d\.(\w+)", "encoder.dense.{1}.1.{2}"),
    (r"conv([2-5])\.conv2d\.(\w+)", lambda m: f"decoder.body.{int(m[1]) - 2}.1.{m[2]}"),  # conv2..5: the decoder
]


def _detect(obj) -> str | None:
    return "" if has_keys(obj, "conv1.conv2d.weight", "DB1.denseblock.0.dense_conv.conv2d.weight") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return apply_rules(parts[""], _RULES)


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """hli1221/densefuse-pytorch ``test_image.py``: both images read by ``scipy.misc.imread(p, mode='L')`` (PIL's
    ``convert('L')``) as floats 0-255, encoded (infrared, visible), averaged (``addition``), decoded with the final
    ReLU; ``clamp(0, 255)`` and numpy's ``astype('uint8')`` (truncation): a grey PNG."""
    from fusion.io import read_as

    # levels / 255 * 255 (inside forward_raw) gives back every level exactly in float32
    ir, vis = to_input(read_as(ir_path, "pil:L")), to_input(read_as(vis_path, "pil:L"))
    out = model.forward_raw(vis, ir) * (255.0 / model.scale)  # weights trained on [0, 1] (ours) scale up here
    return grey_result(out.clamp(0, 255)[0, 0].numpy(), "trunc")


FAMILY = Family(
    name="densefuse",
    model=DenseFuse,
    formats="densefuse-pytorch's .model (a bare state_dict with conv1.conv2d.weight and DB1.denseblock.*)",
    detect=_detect,
    convert=_convert,
    native={"strategy": "mean", "official": True, "exact": False},
    official=official,
)
