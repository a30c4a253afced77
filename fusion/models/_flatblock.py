"""The transformer block of YDTR and DATFuse (Tang et al.), as their code computes it.

Their ``TransformerBlock`` / ``SwinTransformerBlock`` is Swin's block with a 1x1 window, applied to an NCHW feature
map through ``x.view(B, H, W, C)``: a reinterpretation of memory, not a permute. So the "tokens" are consecutive
runs of C values of the map's memory (part of one channel's rows), not the pixels' channel vectors, and with one
token per window the attention's softmax is exactly 1: each token becomes ``proj(v)``. What remains, exactly:

    t = x's memory as rows of C;  t = t + proj(v(norm1(t)));  t = t + mlp(norm2(t));  back to (B, C, H, W)

The output therefore depends on the map's size (where the rows fall), and a tile of an image is not computed as
the whole image computes it: these networks give their authors' result on whole images only.

The saved attention parameters that cannot change the output (the 1x1 relative-position bias table and index,
q and k) load and stay unused; the fast path multiplies ``proj`` and ``v`` into one matrix and folds the layer
norms' affine parts into the next matrices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._fast import linear


class _Attention(nn.Module):
    """A 1x1-window attention's parameters under the authors' names."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(1, heads))  # one relative position
        self.register_buffer("relative_position_index", torch.zeros(1, 1, dtype=torch.long))

    def value(self, t: torch.Tensor) -> torch.Tensor:
        """The v third of ``qkv(t)`` (the same products as the full layer computes for it)."""
        c = t.shape[-1]
        return F.linear(t, self.qkv.weight[2 * c :], self.qkv.bias[2 * c :])


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class FlatBlock(nn.Module):
    """One block (see the module docstring): (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        shape, c = x.shape, x.shape[1]
        t = x.contiguous().view(-1, c)  # the authors' x.view(B, H, W, C), flattened
        if fast:
            return self._fast(t).view(shape)
        t = t + self.attn.proj(self.attn.value(self.norm1(t)))
        t = t + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(t))))
        return t.view(shape)

    def _fast(self, t: torch.Tensor) -> torch.Tensor:
        c = t.shape[1]
        n1, n2, a, m = self.norm1, self.norm2, self.attn, self.mlp
        wv, bv = a.qkv.weight[2 * c :], a.qkv.bias[2 * c :]
        w = a.proj.weight @ wv  # proj(v(y)) = y (Wp Wv)^T + (Wp bv + bp), and y = n(t) g + beta
        b = a.proj.weight @ bv + a.proj.bias + w @ n1.bias
        t = linear(F.layer_norm(t, (c,), eps=n1.eps), w * n1.weight, b, add=t)
        w1, b1 = m.fc1.weight * n2.weight, m.fc1.bias + m.fc1.weight @ n2.bias
        h = linear(F.layer_norm(t, (c,), eps=n2.eps), w1, b1, act="gelu")
        return linear(h, m.fc2.weight, m.fc2.bias, add=t)


class FlatLayer(nn.Module):
    """The authors' ``BasicLayer``: ``depth`` blocks, under the key ``blocks``."""

    def __init__(self, dim: int, depth: int = 2, heads: int = 8, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(FlatBlock(dim, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, fast)
        return x


class PatchNorm(nn.Module):
    """The authors' ``PatchEmbed``: only its layer norm (over 96 values) is saved, and their forward never uses it."""

    def __init__(self, dim: int = 96):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
