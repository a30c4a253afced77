"""The authors' weight files and test scripts: what every network family declares, and the helpers they share.

Each family file (``seafusion.py``, ``ifcnn.py`` ...) ends with a :class:`Family` that says

- how to recognise the authors' files from their keys (``detect``) and turn them into our state_dict (``convert``),
  with nothing missing or left over;
- the constructor arguments that make our network compute what the authors' network computes (``native``: their
  input scale, activations, fusion rule) and those that keep their float arithmetic bit for bit (``exact``);
- ``official``: the authors' test script from file to saved pixels (reading, grey or colour, scaling, padding,
  clamp, stretch, rounding or truncation, colour handling), returning an :class:`OfficialImage`.

:mod:`fusion.models.zoo` lists the methods built on these families; ``rgbt fuse --official`` runs ``official``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion.errors import NonFiniteOutput

# A level this close to the boundary of the script's cast to uint8 (an integer for truncation, a half for rounding)
# may land on either side on another CPU: float noise between two runs of the same arithmetic stays far below it.
FLOAT_NOISE = 0.006


@dataclass(frozen=True)
class OfficialImage:
    """What an official test script saves for one pair.

    Attributes:
        image: (H, W) grey or (H, W, 3) RGB uint8, the saved file's pixels.
        near: (H, W) bool, the pixels whose saved value rests on a float within :data:`FLOAT_NOISE` of a cast
            boundary: another CPU may put them one level off, for the authors' code as for ours.
    """

    image: np.ndarray
    near: np.ndarray


@dataclass(frozen=True)
class Family:
    """A network family: our module, the authors' file format, and their test script.

    Attributes:
        name: the family's model name (``MODELS`` key, ``model.name``).
        model: the network class.
        formats: how the authors' files look, for messages listing the accepted formats.
        detect: a loaded file (what ``torch.load`` returned) -> the part it holds (``""``: the whole network), or None.
        convert: ``{part: loaded file}`` -> our state_dict.
        parts: the parts a complete set of files holds (DIDFuse publishes its encoder and decoder apart).
        native: constructor arguments under which the authors' weights compute what their network computes.
        exact: constructor arguments for the official arithmetic (bit for bit with the authors' code on one CPU).
        official: ``(model, ir_path, vis_path) -> OfficialImage``, the authors' test script; None: no official mode.
        official_needs: constructor settings a weight file must have been saved with for ``official`` to apply
            (DDcGAN's ``authors``: our own generator is another network than the authors').
    """

    name: str
    model: type[nn.Module]
    formats: str
    detect: Callable[[Any], str | None]
    convert: Callable[[dict[str, Any]], dict[str, torch.Tensor]]
    parts: tuple[str, ...] = ("",)
    native: dict = field(default_factory=dict)
    exact: dict = field(default_factory=lambda: {"exact": True})
    official: Callable[[nn.Module, Path, Path], OfficialImage] | None = None
    official_needs: dict = field(default_factory=dict)


def is_state_dict(obj: Any) -> bool:
    """A dict of names to tensors (an OrderedDict from ``torch.save(model.state_dict())``)."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)


def unwrap(obj: Any, key: str) -> Any:
    """``obj[key]`` when the authors saved their state_dict under a key (KAIR's ``params``, DIDFuse's ``weight``)."""
    return obj[key] if isinstance(obj, dict) and isinstance(obj.get(key), dict) else obj


def strip_module(state: dict) -> dict:
    """Drop ``nn.DataParallel``'s ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def has_keys(obj: Any, *keys: str) -> bool:
    """Whether ``obj`` is a state_dict holding every key in ``keys`` (``module.`` prefixes ignored)."""
    return is_state_dict(obj) and set(keys) <= set(strip_module(obj))


def apply_rules(state: dict, rules, drop=lambda k: False) -> dict:
    """Rename every key by the first rule that matches it.

    ``rules`` is a list of ``(regex, template)``: the template formats with the groups (``{1}``, ``{2}`` ...), or is a
    callable of the match returning the new name or None (no match). Keys no rule renames are kept (load_state_dict
    then names them), keys ``drop`` selects are left out.
    """
    out = {}
    for k, v in strip_module(state).items():
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


def add_batch_counters(state: dict, model: nn.Module) -> dict:
    """Add the ``num_batches_tracked`` counters that files saved before PyTorch 0.4.1 lack (0: a training statistic,
    never used at inference)."""
    out = dict(state)
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = torch.zeros_like(v)
    return out


def near_boundary(levels: np.ndarray, cast: str, tol: float = FLOAT_NOISE) -> np.ndarray:
    """Where a level sits within ``tol`` of the boundary of a cast to uint8.

    Args:
        levels: float levels on 0-255 as the script casts them.
        cast: ``"trunc"`` (``astype(uint8)``: integers are the boundaries) or ``"round"`` (halves are).

    Raises:
        NonFiniteOutput: a level is NaN or infinite. Every official mode passes its levels through here; the
            scripts would cast NaN to 0 and save a black image without a word.
    """
    if not np.isfinite(levels).all():
        raise NonFiniteOutput("the network's output holds NaN or infinite values")
    if cast == "round":
        edge = levels - 0.5
        return np.abs(edge - np.round(edge)) < tol
    k = np.round(levels)  # truncation: every integer but 0 is a boundary (all of (-1, 1) truncates to 0)
    return (np.abs(levels - k) < tol) & (k != 0)


def cast_uint8(levels: np.ndarray, cast: str) -> np.ndarray:
    """The scripts' casts: ``"trunc"`` is numpy's ``astype(uint8)`` (negatives wrap, as they do in numpy on x86),
    ``"round"`` is OpenCV's conversion of a float image when it writes one (half to even, saturated)."""
    if cast == "round":
        return np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    with np.errstate(invalid="ignore"):
        return levels.astype(np.uint8)


def grey_result(levels: np.ndarray, cast: str) -> OfficialImage:
    """A grey script output: ``levels`` (H, W) cast as the script casts them."""
    return OfficialImage(cast_uint8(levels, cast), near_boundary(levels, cast))


def to_input(a: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 -> (1, C, H, W) float32 levels / 255.

    The scripts divide in several ways: torchvision's ``ToTensor`` and ``np.array(img, 'float32') / 255`` in float32,
    ``img / 255.`` in float64 then cast (TarDAL, ReCoNet, SwinFusion); for every uint8 level all give the same float32.
    """
    t = torch.from_numpy(np.array(a))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t[None].float().div(255.0)


def scipy_bytescale(out: np.ndarray) -> np.ndarray:
    """The levels old SciPy's ``imsave`` writes for a float image (``toimage``'s ``bytescale``): min-max to 0-255 in
    the image's float32, ``+ 0.5``, before the cast to uint8 (truncation). TensorFlow 1 scripts save this way."""
    lo, hi = out.min(), out.max()
    scale = np.float32(255.0 / (hi - lo if hi > lo else 1))  # numpy 1's casting: a float32 product
    return ((out - lo) * scale).clip(0, 255) + np.float32(0.5)


def visible_chroma_rgb(out: np.ndarray, vis_path: Path) -> OfficialImage:
    """VIF-Benchmark's ``img2RGB`` after ``scipy.misc.imsave``: the (H, W) float32 output saved by
    :func:`scipy_bytescale`, then merged as Y with the visible image's PIL YCbCr chroma and converted to RGB by PIL."""
    from PIL import Image

    from fusion.io import read_as

    levels = scipy_bytescale(out)
    ycc = read_as(vis_path, "pil:YCbCr")
    rgb = Image.merge(
        "YCbCr", [Image.fromarray(levels.astype(np.uint8)), *(Image.fromarray(ycc[..., c]) for c in (1, 2))]
    )
    return OfficialImage(np.array(rgb.convert("RGB")), near_boundary(levels, "trunc"))
