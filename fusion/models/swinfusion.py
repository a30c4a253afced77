"""SwinFusion: cross-domain long-range learning for general image fusion via Swin Transformer.

Ma, Tang, Fan, Huang, Mei and Ma, IEEE/CAA Journal of Automatica Sinica 9(7), 2022.

Layout (as the official ``network_swinfusion1.py`` builds it, defaults embed 60, window 8, 6 heads, MLP ratio 2):

1. shallow features: 3x3 conv 1->30, 3x3 conv 30->60, leaky ReLU 0.2 (one stem, applied to both sources);
2. intra-domain: per source, 4 Swin blocks (regular / shifted windows alternate, relative position bias,
   shift masks) and a LayerNorm;
3. cross-domain: 2 stages, each 2 Swin blocks per source followed by 2 cross-attention blocks in which the queries
   of one source attend to the keys/values of the other, both directions; LayerNorm; concatenate; 3x3 conv
   120->60, leaky ReLU;
4. reconstruction: 4 Swin blocks, LayerNorm, 3x3 convs 60->30->15->1 (leaky ReLU between).

965,251 parameters: the official model reports 973,681 because it builds a second stem that ``forward`` never uses
(8,430 parameters); we leave it out so every parameter is trained. Stochastic depth 0.1 as in the official code.
Inputs are reflect-padded to a multiple of the window and the output cropped back; the output is clamped to
[0, 1] (the official code returns the last conv unclamped).

Attention goes through ``F.scaled_dot_product_attention`` with the position bias and shift mask added as one
float mask, which is much faster on CPU than the explicit softmax of the official code.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fusion.models._util import clamp01
from fusion.models.official import Family, OfficialImage, apply_rules, grey_result, has_keys, to_input, unwrap


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, w*w, C)."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // w) * (wd // w), w * w, c)


def window_reverse(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """(B, nW, w*w, C) -> (B, H, W, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, c)


@functools.lru_cache(maxsize=4)  # shared by every block: one mask per (size, device), not one per block
def shift_mask(h: int, w: int, win: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) additive mask: -100 between tokens that the cyclic shift brought from different regions."""
    img = torch.zeros(1, h, w, 1, device=device)
    cnt = 0
    for hs in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
        for ws in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    m = window_partition(img, win)[0, :, :, 0]  # (nW, N)
    diff = m[:, None, :] - m[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        # timm's draw (uniform, then floor): the same random numbers as the authors' training for a given seed
        keep = (1 - self.p + torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=x.dtype, device=x.device)).floor_()
        return x.div(1 - self.p) * keep


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias.

    Self-attention when called with one input; cross-attention (queries from ``x``, keys and values from ``y``)
    when ``cross=True``. Input (B, nW, N, C), mask (nW, N, N) or None.
    """

    def __init__(self, dim: int, window: int, heads: int, cross: bool = False):
        super().__init__()
        self.heads, self.window, self.cross = heads, window, cross
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2) in [0, 2w-2]
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)
        if cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._cache: tuple | None = None

    def _bias(self, mask: torch.Tensor | None, b: int) -> torch.Tensor:
        """Position bias (+ shift mask) for SDPA: (1, h, N, N), or (B*nW, h, N, N) with a mask.

        At inference (no grad) the small unmasked bias is cached until the table changes; the masked one is
        rebuilt per call, since caching it would hold hundreds of MB per block on large images.
        """
        table = self.relative_position_bias_table
        if not torch.is_grad_enabled() and self._cache is not None and self._cache[0] == table._version:
            bias = self._cache[1]
        else:
            bias = table[self.relative_position_index].permute(2, 0, 1)[None]  # (1, h, N, N)
            self._cache = None if torch.is_grad_enabled() else (table._version, bias)
        if mask is None:
            return bias
        nw, n = mask.shape[0], mask.shape[-1]  # one mask per window, repeated over the batch (a view when b == 1)
        return (mask[:, None] + bias).expand(b, nw, self.heads, n, n).reshape(b * nw, self.heads, n, n)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        b, nw, n, c = x.shape
        hd = c // self.heads
        # q, k, v stay strided views (B*nW, h, N, hd) of the projections: SDPA reads them without copies
        if self.cross:
            q = self.q(x).view(b * nw, n, self.heads, hd).transpose(1, 2)
            k, v = self.kv(y).view(b * nw, n, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(b * nw, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(mask, b).to(q.dtype))  # (B*nW, h, N, hd)
        return self.proj(out.transpose(1, 2).reshape(b, nw, n, c))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SwinBlock(nn.Module):
    """One Swin Transformer block on a token map (B, H*W, C); ``cross=True`` makes it a cross-domain block
    that updates two token maps, each attending to the other."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float, cross=False):
        super().__init__()
        self.window, self.shift, self.cross = window, shift, cross
        branches = 2 if cross else 1
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(branches))
        self.attn = nn.ModuleList(WindowAttention(dim, window, heads, cross) for _ in range(branches))
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(branches))
        self.mlp = nn.ModuleList(Mlp(dim, hidden) for _ in range(branches))
        self.drop_path = DropPath(drop_path)

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        return shift_mask(h, w, self.window, self.shift, device) if self.shift else None

    def _windows(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x.view(x.shape[0], h, w, -1)
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), (1, 2))
        return window_partition(x, self.window)

    def _merge(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = window_reverse(x, self.window, h, w)
        if self.shift:
            x = torch.roll(x, (self.shift, self.shift), (1, 2))
        return x.reshape(x.shape[0], h * w, -1)

    def forward(self, xs: list[torch.Tensor], h: int, w: int) -> list[torch.Tensor]:
        mask = self._mask(h, w, xs[0].device)
        wins = [self._windows(norm(x), h, w) for norm, x in zip(self.norm1, xs, strict=True)]
        if self.cross:  # source A queries B and B queries A
            att = [self.attn[0](wins[0], wins[1], mask), self.attn[1](wins[1], wins[0], mask)]
        else:
            att = [self.attn[0](wins[0], mask=mask)]
        out = []
        for i, x in enumerate(xs):
            x = x + self.drop_path(self._merge(att[i], h, w))
            out.append(x + self.drop_path(self.mlp[i](self.norm2[i](x))))
        return out


def _blocks(n: int, dim: int, heads: int, window: int, mlp_ratio: float, dpr: list[float], cross: bool = False):
    return nn.ModuleList(
        SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, dpr[i], cross) for i in range(n)
    )


def _run(blocks: nn.ModuleList, xs: list[torch.Tensor], h: int, w: int) -> list[torch.Tensor]:
    for blk in blocks:
        xs = blk(xs, h, w)
    return xs


class SwinFusion(nn.Module):
    """SwinFusion for infrared-visible fusion (grey / Y channel).

    Args:
        embed_dim, window, heads, mlp_ratio: transformer width, window side, attention heads, MLP expansion.
        extract_depth, fusion_depths, recon_depth: Swin blocks per stage (official: 4, (2, 2), 4).
        drop_path: stochastic-depth rate, spread linearly over each stage's blocks.
        official: pad as the official test script does (symmetric, bottom and right, up to the next multiple of the
            window strictly above the size: always 1 to ``window`` pixels) instead of reflecting to a multiple.

    Shape:
        ``forward(vis, ir)``: (B, 1, H, W) x 2 in [0, 1] -> (B, 1, H, W) in [0, 1], any H, W >= 2.
    """

    name = "swinfusion"

    def __init__(
        self,
        embed_dim: int = 60,
        window: int = 8,
        heads: int = 6,
        mlp_ratio: float = 2.0,
        extract_depth: int = 4,
        fusion_depths: tuple[int, ...] = (2, 2),
        recon_depth: int = 4,
        drop_path: float = 0.1,
        official: bool = False,
    ):
        super().__init__()
        self.official = official
        self.config = {
            "embed_dim": embed_dim, "window": window, "heads": heads, "mlp_ratio": mlp_ratio,
            "extract_depth": extract_depth, "fusion_depths": list(fusion_depths), "recon_depth": recon_depth,
            "drop_path": drop_path, "official": official,
        }  # fmt: skip
        d, half = embed_dim, embed_dim // 2
        self.window = window
        act = nn.LeakyReLU(0.2, inplace=True)
        self.stem = nn.Sequential(nn.Conv2d(1, half, 3, 1, 1), act, nn.Conv2d(half, d, 3, 1, 1), act)
        self.embed_norm = nn.LayerNorm(d)  # the official PatchEmbed norm, shared by every stage

        def dpr(n: int) -> list[float]:
            return [drop_path * i / max(n - 1, 1) for i in range(n)]  # linspace, kept off any device

        self.extract = nn.ModuleList(
            _blocks(extract_depth, d, heads, window, mlp_ratio, dpr(extract_depth)) for _ in "ab"
        )
        self.extract_norm = nn.ModuleList(nn.LayerNorm(d) for _ in "ab")
        rates = dpr(sum(fusion_depths))
        self.fusion = nn.ModuleList()
        for i, n in enumerate(fusion_depths):
            r = rates[sum(fusion_depths[:i]) : sum(fusion_depths[: i + 1])]
            self.fusion.append(
                nn.ModuleDict({
                    "intra_a": _blocks(n, d, heads, window, mlp_ratio, r),
                    "intra_b": _blocks(n, d, heads, window, mlp_ratio, r),
                    "cross": _blocks(n, d, heads, window, mlp_ratio, r, cross=True),
                })
            )  # fmt: skip
        self.fusion_norm = nn.ModuleList(nn.LayerNorm(d) for _ in "ab")
        self.merge = nn.Conv2d(2 * d, d, 3, 1, 1)
        self.recon = _blocks(recon_depth, d, heads, window, mlp_ratio, dpr(recon_depth))
        self.recon_norm = nn.LayerNorm(d)
        self.head = nn.Sequential(
            nn.Conv2d(d, half, 3, 1, 1), act, nn.Conv2d(half, half // 2, 3, 1, 1), act, nn.Conv2d(half // 2, 1, 3, 1, 1)
        )
        self.act = act
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if self.official:  # test_swinfusion.py: (h // 8 + 1) * 8 - h, the flipped image appended (numpy 'symmetric')
            ph, pw = (H // self.window + 1) * self.window - H, (W // self.window + 1) * self.window - W
            x = torch.cat([x, x.flip(-2)[..., :ph, :]], -2)
            return torch.cat([x, x.flip(-1)[..., :pw]], -1)
        ph, pw = (-H) % self.window, (-W) % self.window
        return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return clamp01(self.forward_raw(vis, ir))

    def forward_raw(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The last conv's output, cropped to the input size and not clamped (as the official model returns it)."""
        H, W = vis.shape[-2:]
        x = self._pad(torch.cat([ir, vis]))  # source A = infrared, B = visible, one pass through the shared stem
        h, w = x.shape[-2:]
        b = vis.shape[0]
        t = self.embed_norm(self.stem(x).flatten(2).transpose(1, 2))  # (2B, h*w, C)
        a, v = t[:b], t[b:]
        a = self.extract_norm[0](_run(self.extract[0], [a], h, w)[0])
        v = self.extract_norm[1](_run(self.extract[1], [v], h, w)[0])
        a, v = self.embed_norm(a), self.embed_norm(v)
        for stage in self.fusion:
            a = _run(stage["intra_a"], [a], h, w)[0]
            v = _run(stage["intra_b"], [v], h, w)[0]
            a, v = _run(stage["cross"], [a, v], h, w)
        f = torch.cat([self.fusion_norm[0](a), self.fusion_norm[1](v)], 2)  # (B, h*w, 2C)
        f = self.act(self.merge(f.transpose(1, 2).reshape(b, -1, h, w)))
        t = self.recon_norm(_run(self.recon, [self.embed_norm(f.flatten(2).transpose(1, 2))], h, w)[0])
        out = self.head(t.transpose(1, 2).reshape(b, -1, h, w))
        return out[..., :H, :W]


# the authors' files: KAIR's ``<iter>_E.pth``, a bare state_dict of 448 keys (408 parameters, 40 buffers), or the same
# under ``params``; ours recomputes the buffers and leaves out the second stem that the authors' forward never uses
_BLOCK = [(r"norm1\.", "norm1.0."), (r"attn\.", "attn.0."), (r"norm2\.", "norm2.0."),
          (r"mlp\.fc1\.", "mlp.0.0."), (r"mlp\.fc2\.", "mlp.0.2.")]  # fmt: skip
_CROSS = [(r"norm1_A\.", "norm1.0."), (r"norm1_B\.", "norm1.1."), (r"attn_A\.", "attn.0."), (r"attn_B\.", "attn.1."),
          (r"norm2_A\.", "norm2.0."), (r"norm2_B\.", "norm2.1."), (r"mlp_A\.fc1\.", "mlp.0.0."),
          (r"mlp_A\.fc2\.", "mlp.0.2."), (r"mlp_B\.fc1\.", "mlp.1.0."), (r"mlp_B\.fc2\.", "mlp.1.2.")]  # fmt: skip
_TOP = {"conv_first1_A": "stem.0", "conv_first2_A": "stem.2", "patch_embed.norm": "embed_norm",
        "norm_Ex_A": "extract_norm.0", "norm_Ex_B": "extract_norm.1", "norm_Fusion_A": "fusion_norm.0",
        "norm_Fusion_B": "fusion_norm.1", "conv_after_body_Fusion": "merge", "norm_Re": "recon_norm",
        "conv_last1": "head.0", "conv_last2": "head.2", "conv_last3": "head.4"}  # fmt: skip


def _rename(rest: str, table) -> str:
    for pat, rep in table:
        if re.match(pat, rest):
            return re.sub("^" + pat, rep, rest)
    return rest


_RULES = [
    (r"(.+)\.(weight|bias)", lambda m: f"{_TOP[m[1]]}.{m[2]}" if m[1] in _TOP else None),
    (r"layers_Ex_([AB])\.0\.residual_group\.blocks\.(\d+)\.(.+)",
     lambda m: f"extract.{'AB'.index(m[1])}.{m[2]}.{_rename(m[3], _BLOCK)}"),
    (r"layers_Fusion\.(\d+)\.residual_group_([AB])\.blocks\.(\d+)\.(.+)",
     lambda m: f"fusion.{m[1]}.intra_{m[2].lower()}.{m[3]}.{_rename(m[4], _BLOCK)}"),
    (r"layers_Fusion\.(\d+)\.residual_group\.blocks\.(\d+)\.(.+)",
     lambda m: f"fusion.{m[1]}.cross.{m[2]}.{_rename(m[3], _CROSS)}"),  # the cross-attention blocks
    (r"layers_Re\.0\.residual_group\.blocks\.(\d+)\.(.+)", lambda m: f"recon.{m[1]}.{_rename(m[2], _BLOCK)}"),
]  # fmt: skip


def _drop(k: str) -> bool:
    """The unused second stem (``conv_first*_B``) and the buffers (``relative_position_index``, ``attn_mask``,
    which our network recomputes for every size)."""
    return k.endswith(("relative_position_index", "attn_mask")) or k.startswith(("conv_first1_B", "conv_first2_B"))


def _detect(obj) -> str | None:
    sd = unwrap(obj, "params")
    return "" if has_keys(sd, "conv_first1_A.weight", "layers_Ex_A.0.residual_group.blocks.0.attn.qkv.weight") else None


def _convert(parts: dict) -> dict[str, torch.Tensor]:
    return apply_rules(unwrap(parts[""], "params"), _RULES, _drop)


@torch.no_grad()
def official(model: nn.Module, ir_path: Path, vis_path: Path) -> OfficialImage:
    """Linfeng-Tang/SwinFusion ``test_swinfusion.py``: source A = infrared, B = visible, each read by
    ``cv2.imread(p, 0)`` and divided by 255; the script's symmetric padding (``official=True``); the output cropped,
    ``clamp(0, 1) * 255`` rounded half to even: a grey PNG."""
    from fusion.io import read_as

    ir, vis = to_input(read_as(ir_path, "cv2:grey")), to_input(read_as(vis_path, "cv2:grey"))
    return grey_result(model.forward_raw(vis, ir).clamp(0, 1)[0, 0].numpy() * 255.0, "round")


FAMILY = Family(
    name="swinfusion",
    model=SwinFusion,
    formats="SwinFusion's <iter>_E.pth (a state_dict with conv_first1_A.weight, or the same under 'params')",
    detect=_detect,
    convert=_convert,
    exact={"official": True},
    official=official,
)
