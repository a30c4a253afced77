"""CDDFuse: correlation-driven dual-branch feature decomposition for multi-modality image fusion.

Zhao, Bai, Zhang, Zhang, Xu, Lin, Timofte and Van Gool, CVPR 2023.

Layout (as the official ``net.py`` builds it for infrared-visible fusion):

1. encoder (shared by both sources): 3x3 conv 1->64, four Restormer blocks (MDTA transposed attention over
   channels, 8 heads, and a gated depth-wise FFN with expansion 2), then two branches on its output:
   - base: one Lite-Transformer block (channel attention whose q, k, v come from a 1x1 then a full 3x3 conv,
     and an FFN with expansion 1 whose depth-wise conv has 2 channels per group);
   - detail: three invertible (INN) nodes, each a 1x1 "shuffle" conv and three inverted-residual blocks
     (1x1, ReLU6, reflection-padded depth-wise 3x3, ReLU6, 1x1) in an affine coupling;
2. fusion: one more Lite-Transformer block on the summed base features, one INN node on the summed details;
3. decoder: 1x1 conv 128->64 on [base, detail], four Restormer blocks, 3x3 convs 64->32 (leaky ReLU 0.01) ->1,
   plus the visible image as a residual, then a sigmoid.

1,188,272 parameters (encoder 599,144, decoder 207,936, base fusion 363,016, detail fusion 18,176), as the official
model. Parameter names inside the four parts are the official ones, so an official checkpoint loads by prefix
(:func:`convert_official`).

Differences from the official code, none of which changes the output beyond float rounding: feature maps are
channels-last and layer norms one fused kernel (``exact=True`` keeps the official arithmetic bit for bit). The
output is the sigmoid in [0, 1]; the official test script also min-max normalises each image before saving
(:mod:`fusion.models.official`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.models.official import Family, OfficialImage, grey_result, to_input


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of a (B, C, H, W) map (the official "WithBias" norm, eps 1e-5)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = _Affine(dim)  # official key names: norm.body.weight / norm.body.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if not x.is_contiguous():  # channels-last (the fast path): one fused kernel over the channel dim
            y = F.layer_norm(x.permute(0, 2, 3, 1), (c,), self.body.weight, self.body.bias, 1e-5)
            return y.permute(0, 3, 1, 2)
        # NCHW (the exact path): the statistics reduce over the same strided (B, HW, C) view as the official code,
        # so they are the same floats; the affine part is element-wise, so doing it in NCHW changes no bit.
        t = x.flatten(2).transpose(1, 2)
        mu = t.mean(-1).view(b, 1, h, w)
        var = t.var(-1, unbiased=False).view(b, 1, h, w)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.body.weight.view(1, c, 1, 1) + self.body.bias.view(1, c, 1, 1)


class _Affine(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: torch.Tensor):
    """Transposed ("MDTA") attention: heads attend across channels, so the cost is linear in the pixels.

    Args:
        q, k, v: (B, C, H, W); scale: (heads, 1, 1) learned temperature.

    Returns:
        (B, C, H, W).
    """
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * scale).softmax(-1)  # (B, heads, C/heads, C/heads)
    return (attn @ v).reshape(b, c, h, w)


class Attention(nn.Module):
    """Restormer's MDTA: 1x1 conv to q, k, v, a depth-wise 3x3 conv, channel attention, 1x1 projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, 1)
        return self.project_out(channel_attention(q, k, v, self.heads, self.temperature))


class FeedForward(nn.Module):
    """Gated FFN: 1x1 conv to 2 hidden maps, 3x3 conv with ``per_group`` channels per group, GELU(x1) * x2, 1x1.

    Restormer's GDFN is depth-wise (``per_group=1``); CDDFuse's base block has 2 channels per group.
    """

    def __init__(self, dim: int, expansion: float, per_group: int = 1):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2 // per_group, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, 1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(norm(x)), then x + GDFN(norm(x))."""

    def __init__(self, dim: int = 64, heads: int = 8, expansion: float = 2.0):
        super().__init__()
        self.norm1, self.attn = LayerNorm2d(dim), Attention(dim, heads)
        self.norm2, self.ffn = LayerNorm2d(dim), FeedForward(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class BaseAttention(nn.Module):
    """The Lite-Transformer's attention: q, k, v from a 1x1 conv and a full 3x3 conv (not depth-wise)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv2(self.qkv1(x)).chunk(3, 1)
        return self.proj(channel_attention(q, k, v, self.heads, self.scale))


class BaseFeatureExtraction(nn.Module):
    """Lite-Transformer block for the low-frequency (base) features; (B, 64, H, W) -> same."""

    def __init__(self, dim: int = 64, heads: int = 8):
        super().__init__()
        self.norm1, self.attn = LayerNorm2d(dim), BaseAttention(dim, heads)
        self.norm2, self.mlp = LayerNorm2d(dim), FeedForward(dim, 1.0, per_group=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 block without batch norm: 1x1 expand, ReLU6, reflection-padded depth-wise 3x3, ReLU6, 1x1."""

    def __init__(self, dim: int = 32, expansion: int = 2):
        super().__init__()
        hidden = dim * expansion
        self.bottleneckBlock = nn.Sequential(  # official name, kept for the checkpoint keys
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.ReLU6(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneckBlock(x)


class DetailNode(nn.Module):
    """One INN coupling: mix the halves with a 1x1 conv, then z2 += phi(z1); z1 = z1 * exp(rho(z2)) + eta(z2)."""

    def __init__(self, half: int = 32):
        super().__init__()
        self.theta_phi = InvertedResidualBlock(half)
        self.theta_rho = InvertedResidualBlock(half)
        self.theta_eta = InvertedResidualBlock(half)
        self.shffleconv = nn.Conv2d(2 * half, 2 * half, 1)  # (sic) official name

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = self.shffleconv(torch.cat([z1, z2], 1)).chunk(2, 1)
        z2 = z2 + self.theta_phi(z1)
        z1 = z1 * torch.exp(self.theta_rho(z2)) + self.theta_eta(z2)
        return z1, z2


class DetailFeatureExtraction(nn.Module):
    """``num_layers`` INN nodes for the high-frequency (detail) features; (B, 64, H, W) -> same."""

    def __init__(self, num_layers: int = 3):
        super().__init__()
        self.net = nn.Sequential(*[DetailNode() for _ in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = x.chunk(2, 1)
        for node in self.net:
            z1, z2 = node(z1, z2)
        return torch.cat([z1, z2], 1)


class _Proj(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 3, padding=1, bias=False)


class CDDFuseEncoder(nn.Module):
    """(B, 1, H, W) -> base (B, 64, H, W), detail (B, 64, H, W), shared features (B, 64, H, W)."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8):
        super().__init__()
        self.memory_format = torch.contiguous_format  # CDDFuse sets channels-last unless exact
        self.patch_embed = _Proj(dim)
        self.encoder_level1 = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(blocks)])
        self.baseFeature = BaseFeatureExtraction(dim, heads)
        self.detailFeature = DetailFeatureExtraction(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # a 1-channel input cannot carry the layout, so the stem's output sets it for every later convolution
        f = self.encoder_level1(self.patch_embed.proj(x).contiguous(memory_format=self.memory_format))
        return self.baseFeature(f), self.detailFeature(f), f


class CDDFuseDecoder(nn.Module):
    """(base, detail) features and an optional residual image -> (sigmoid output (B, 1, H, W), 64-ch features)."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8):
        super().__init__()
        self.reduce_channel = nn.Conv2d(2 * dim, dim, 1, bias=False)
        self.encoder_level2 = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(blocks)])
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False),
            nn.LeakyReLU(),
            nn.Conv2d(dim // 2, 1, 3, padding=1, bias=False),
        )

    def forward(self, residual: torch.Tensor | None, base: torch.Tensor, detail: torch.Tensor):
        f0 = self.reduce_channel(torch.cat([base, detail], 1))
        out = self.output(self.encoder_level2(f0))
        if residual is not None:
            out = out + residual
        return torch.sigmoid(out), f0


class CDDFuse(nn.Module):
    """CDDFuse for infrared-visible fusion (grey / Y channel).

    ``encoder`` and ``decoder`` are trained first as an autoencoder of single images (phase I), then
    ``base_fuse`` and ``detail_fuse`` join for fusion (phase II); see :class:`fusion.train.CDDFuseModule`.

    Args:
        dim: feature width; heads: attention heads; blocks: Restormer blocks in the encoder and the decoder.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "cddfuse"

    def __init__(self, dim: int = 64, heads: int = 8, blocks: int = 4, exact: bool = False):
        super().__init__()
        self.exact = exact
        self.config = {"dim": dim, "heads": heads, "blocks": blocks, "exact": exact}
        self.encoder = CDDFuseEncoder(dim, blocks, heads)
        self.encoder.memory_format = torch.contiguous_format if exact else torch.channels_last
        self.decoder = CDDFuseDecoder(dim, blocks, heads)
        self.base_fuse = BaseFeatureExtraction(dim, heads)
        self.detail_fuse = DetailFeatureExtraction(1)

    def encode(self, vis: torch.Tensor, ir: torch.Tensor):
        """Both sources through the shared encoder: ((V_B, V_D, V), (I_B, I_D, I)).

        One source at a time, as the official code: a batch of two rounds some convolutions differently, and one
        pass each is no slower on a CPU.
        """
        return self.encoder(vis), self.encoder(ir)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Phase I: (B, 1, H, W) -> (reconstruction, base, detail)."""
        base, detail, _ = self.encoder(x)
        return self.decoder(x, base, detail)[0], base, detail

    def fuse(self, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fused image and the decomposed features the training losses need."""
        (vb, vd, _), (ib, id_, _) = self.encode(vis, ir)
        fused = self.decoder(vis, self.base_fuse(vb + ib), self.detail_fuse(vd + id_))[0]
        return {"fused": fused.contiguous(), "vis_base": vb, "vis_detail": vd, "ir_base": ib, "ir_detail": id_}

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.fuse(vis, ir)["fused"]

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The sigmoid output (what the official code returns before its min-max normalisation)."""
        return self.forward(vis, ir)


OFFICIAL_PARTS = {"DIDF_Encoder": "encoder", "DIDF_Decoder": "decoder", "BaseFuseLayer": "base_fuse",
                  "DetailFuseLayer": "detail_fuse"}  # fmt: skip


def convert_official(ckpt: dict) -> dict[str, torch.Tensor]:
    """The official ``CDDFuse_IVF.pth`` (four DataParallel state_dicts) -> a :class:`CDDFuse` state_dict."""
    state = {}
    for part, ours in OFFICIAL_PARTS.items():
        for k, v in ckpt[part].items():
            state[f"{ours}.{k.removeprefix('module.')}"] = v
    return state


def _detect(obj) -> str | None:
    return "" if isinstance(obj, dict) and set(OFFICIAL_PARTS) <= set(obj) else None


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """Zhaozixiang1228/MMIF-CDDFuse ``test_IVF.py``: both images read by ``image_read_cv2(p, 'GRAY')`` (``cv2.imread``
    as float32, BGR2GRAY on floats, ``np.round``) and divided by 255; the sigmoid output min-max normalised,
    times 255, and saved by scikit-image's ``imsave`` of the time (imageio 2's conversion, which stretches a float
    image to 0-255 again and rounds half up): a grey PNG."""
    from fusion.io import read_as

    ir = to_input(np.round(read_as(ir_path, "cv2:bgr-float-grey")).astype(np.uint8))
    vis = to_input(np.round(read_as(vis_path, "cv2:bgr-float-grey")).astype(np.uint8))
    x = model.forward_raw(vis, ir)[0, 0]
    span = torch.max(x) - torch.min(x)  # (x - min) / (max - min) * 255 in float32
    fi = ((x - torch.min(x)) / span if span > 0 else torch.zeros_like(x)) * 255
    fi = fi.numpy().astype(np.float64)  # imageio's image_as_uint, in float64
    lo, hi = fi.min(), fi.max()
    levels = (fi - lo) / (hi - lo) * 255 + 0.499999999 if hi > lo else np.zeros(fi.shape)
    return grey_result(levels, "trunc")


FAMILY = Family(
    name="cddfuse",
    model=CDDFuse,
    formats="CDDFuse_IVF.pth (DIDF_Encoder, DIDF_Decoder, BaseFuseLayer, DetailFuseLayer)",
    detect=_detect,
    convert=lambda parts: convert_official(parts[""]),
    official=official,
)
