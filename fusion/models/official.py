"""Official checkpoints in, official outputs out.

The authors' weight files load as they are; the format is detected from the keys:

- densefuse: densefuse-pytorch's ``*.model``, a bare state_dict of 16 keys (``conv1.conv2d.weight``,
  ``DB1.denseblock.*``, ``conv2`` .. ``conv5``), in the legacy non-zip torch format;
- swinfusion: KAIR's ``<iter>_E.pth``, a bare state_dict of 448 keys (408 parameters, 40 buffers), or the same
  under ``params``;
- cddfuse: ``CDDFuse_IVF.pth``, ``{DIDF_Encoder, DIDF_Decoder, BaseFuseLayer, DetailFuseLayer}``, each the
  state_dict of an ``nn.DataParallel`` (keys start with ``module.``).

Each official test script's pre- and post-processing is reproduced by ``official=True`` on the network
(:data:`OFFICIAL_CONFIG`) and :func:`official_uint8`:

- DenseFuse: 0-255 input, the final ReLU the official ``conv5`` applies, ``addition`` (mean) fusion, and
  ``clamp(0, 255)`` then uint8 truncation;
- SwinFusion: symmetric padding of 1 to 8 pixels at the bottom and right (always at least 1), the raw output
  cropped, ``clamp(0, 1) * 255`` rounded half to even;
- CDDFuse: the official float arithmetic (``exact``), then per-image min-max normalisation and imageio's
  round-half-up to uint8.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from fusion.errors import RgbtError
from fusion.models.cddfuse import convert_official

FORMATS = (
    "an rgbt weight file or rgbt fit checkpoint, densefuse-pytorch's .model (a bare state_dict with "
    "conv1.conv2d.weight), SwinFusion's <iter>_E.pth (a state_dict with conv_first1_A.weight, or under 'params') "
    "or CDDFuse_IVF.pth (DIDF_Encoder, DIDF_Decoder, BaseFuseLayer, DetailFuseLayer)"
)

# constructor overrides that make each network behave as its official test script
OFFICIAL_CONFIG: dict[str, dict] = {
    "densefuse": {"strategy": "mean", "official": True},
    "swinfusion": {"official": True},
    "cddfuse": {"exact": True},
}


def _unwrap(obj: dict) -> dict:
    """KAIR saves ``{"params": state_dict}`` as well as the bare state_dict."""
    return obj["params"] if isinstance(obj.get("params"), dict) else obj


def _strip_module(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def detect(obj) -> str | None:
    """Which official format ``obj`` (what ``torch.load`` returned) is in: a model name, or None."""
    if not isinstance(obj, dict):
        return None
    if {"DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer"} <= set(obj):
        return "cddfuse"
    obj = _unwrap(obj)
    keys = set(_strip_module(obj)) if all(isinstance(k, str) for k in obj) else set()
    if "conv_first1_A.weight" in keys and any(k.startswith("layers_Ex_A.") for k in keys):
        return "swinfusion"
    if "conv1.conv2d.weight" in keys and any(k.startswith("DB1.denseblock.") for k in keys):
        return "densefuse"
    return None


# official key -> ours: (pattern, template with {1}, {2}... for the groups; a callable gets the match)
_DENSEFUSE_RULES = [
    (r"conv1\.conv2d\.(\w+)", "encoder.conv1.1.{1}"),
    (r"DB1\.denseblock\.(\d+)\.dense_conv\.conv2d\.(\w+)", "encoder.dense.{1}.1.{2}"),
    (r"conv([2-5])\.conv2d\.(\w+)", lambda m: f"decoder.body.{int(m[1]) - 2}.1.{m[2]}"),  # conv2..5: the decoder
]
_BLOCK = [(r"norm1\.", "norm1.0."), (r"attn\.", "attn.0."), (r"norm2\.", "norm2.0."),
          (r"mlp\.fc1\.", "mlp.0.0."), (r"mlp\.fc2\.", "mlp.0.2.")]  # fmt: skip
_CROSS = [(r"norm1_A\.", "norm1.0."), (r"norm1_B\.", "norm1.1."), (r"attn_A\.", "attn.0."), (r"attn_B\.", "attn.1."),
          (r"norm2_A\.", "norm2.0."), (r"norm2_B\.", "norm2.1."), (r"mlp_A\.fc1\.", "mlp.0.0."),
          (r"mlp_A\.fc2\.", "mlp.0.2."), (r"mlp_B\.fc1\.", "mlp.1.0."), (r"mlp_B\.fc2\.", "mlp.1.2.")]  # fmt: skip
_SWIN_TOP = {"conv_first1_A": "stem.0", "conv_first2_A": "stem.2", "patch_embed.norm": "embed_norm",
             "norm_Ex_A": "extract_norm.0", "norm_Ex_B": "extract_norm.1", "norm_Fusion_A": "fusion_norm.0",
             "norm_Fusion_B": "fusion_norm.1", "conv_after_body_Fusion": "merge", "norm_Re": "recon_norm",
             "conv_last1": "head.0", "conv_last2": "head.2", "conv_last3": "head.4"}  # fmt: skip


def _rename(rest: str, table) -> str:
    for pat, rep in table:
        if re.match(pat, rest):
            return re.sub("^" + pat, rep, rest)
    return rest


_SWINFUSION_RULES = [
    (r"(.+)\.(weight|bias)", lambda m: f"{_SWIN_TOP[m[1]]}.{m[2]}" if m[1] in _SWIN_TOP else None),
    (r"layers_Ex_([AB])\.0\.residual_group\.blocks\.(\d+)\.(.+)",
     lambda m: f"extract.{'AB'.index(m[1])}.{m[2]}.{_rename(m[3], _BLOCK)}"),
    (r"layers_Fusion\.(\d+)\.residual_group_([AB])\.blocks\.(\d+)\.(.+)",
     lambda m: f"fusion.{m[1]}.intra_{m[2].lower()}.{m[3]}.{_rename(m[4], _BLOCK)}"),
    (r"layers_Fusion\.(\d+)\.residual_group\.blocks\.(\d+)\.(.+)",
     lambda m: f"fusion.{m[1]}.cross.{m[2]}.{_rename(m[3], _CROSS)}"),  # the cross-attention blocks
    (r"layers_Re\.0\.residual_group\.blocks\.(\d+)\.(.+)", lambda m: f"recon.{m[1]}.{_rename(m[2], _BLOCK)}"),
]  # fmt: skip


def _apply_rules(state: dict, rules, drop=lambda k: False) -> dict:
    """Rename every key by the first rule that matches it; keys no rule renames are kept (load_state_dict then
    names them), keys ``drop`` selects are left out."""
    out = {}
    for k, v in _strip_module(state).items():
        if drop(k):
            continue
        new = None
        for pat, rep in rules:
            m = re.fullmatch(pat, k)
            if m:
                new = rep(m) if callable(rep) else rep.format(*([m[0], *m.groups()]))
                if new is not None:
                    break
        out[new or k] = v
    return out


def _swin_drop(k: str) -> bool:
    """The unused second stem (``conv_first*_B``) and the buffers (``relative_position_index``, ``attn_mask``,
    which our network recomputes for every size)."""
    return k.endswith(("relative_position_index", "attn_mask")) or k.startswith(("conv_first1_B", "conv_first2_B"))


def convert(name: str, obj: dict) -> dict[str, torch.Tensor]:
    """An official checkpoint (as loaded) -> the state_dict of our network ``name``."""
    if name == "cddfuse":
        return convert_official(obj)
    if name == "densefuse":
        return _apply_rules(_unwrap(obj), _DENSEFUSE_RULES)
    return _apply_rules(_unwrap(obj), _SWINFUSION_RULES, _swin_drop)


def official_levels(name: str, raw: torch.Tensor) -> tuple[np.ndarray, str]:
    """The grey levels the official test script of ``name`` computes before its cast to uint8, in its precision.

    Args:
        raw: (1, 1, H, W) output of ``model.forward_raw`` of a network built with :data:`OFFICIAL_CONFIG`
            (DenseFuse on 0-255, the others on 0-1).

    Returns:
        ((H, W) float levels on 0-255, and how the script casts them: ``"trunc"`` or ``"round"`` half to even).
        A level within float noise of a cast boundary (an integer for ``"trunc"``, a half for ``"round"``) may land
        on either side on another CPU: the official code itself does not give the same PNG everywhere there.
    """
    x = raw.detach().float().cpu()[0, 0]
    if name == "densefuse":  # clamp(0, 255), numpy astype('uint8'): truncation
        return x.clamp(0, 255).numpy(), "trunc"
    if name == "swinfusion":  # util.tensor2uint: clamp(0, 1) * 255, np.round (half to even)
        return x.clamp(0, 1).numpy() * 255.0, "round"
    if name == "cddfuse":  # (x - min) / (max - min) * 255 in float32, then imageio's image_as_uint in float64
        span = torch.max(x) - torch.min(x)
        x = (x - torch.min(x)) / span if span > 0 else torch.zeros_like(x)
        fi = (x * 255).numpy().astype(np.float64)
        lo, hi = fi.min(), fi.max()
        if hi == lo:
            return np.zeros(fi.shape), "trunc"
        return (fi - lo) / (hi - lo) * 255 + 0.499999999, "trunc"
    raise RgbtError(f"{name} has no official mode; it is available for {', '.join(OFFICIAL_CONFIG)}")


def official_uint8(name: str, raw: torch.Tensor) -> np.ndarray:
    """What the official test script of ``name`` saves for a raw network output: :func:`official_levels`, cast.

    Returns:
        (H, W) uint8, the PNG's pixels.
    """
    levels, cast = official_levels(name, raw)
    return (np.round(levels) if cast == "round" else levels).astype(np.uint8)
