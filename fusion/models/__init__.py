"""Learned fusion networks, their registry and their weight files.

Every network has ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors in [0, 1], a class attribute ``name`` and a
``config`` dict of its constructor arguments, so that a weight file or a Lightning checkpoint can rebuild it.

Weight files (``weights/<name>.pt``, written by ``rgbt export``) hold
``{"fusion_model": {"name", "config"}, "state_dict", "meta"}``; Lightning checkpoints carry the same
``fusion_model`` entry and the network's weights under the ``model.`` prefix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from fusion.errors import RgbtError, short, state_dict_mismatch
from fusion.models.cddfuse import CDDFuse
from fusion.models.ddcgan import DDcGANDiscriminator, DDcGANGenerator
from fusion.models.densefuse import DenseFuse
from fusion.models.swinfusion import SwinFusion
from fusion.models.tiling import Tiled, tiled_forward

__all__ = [
    "MODELS",
    "CDDFuse",
    "DDcGANDiscriminator",
    "DDcGANGenerator",
    "DenseFuse",
    "SwinFusion",
    "Tiled",
    "default_weights",
    "load_model",
    "model_spec",
    "save_weights",
    "tiled_forward",
]

MODELS: dict[str, type[nn.Module]] = {
    "densefuse": DenseFuse,
    "ddcgan": DDcGANGenerator,
    "swinfusion": SwinFusion,
    "cddfuse": CDDFuse,
}


def weights_dir() -> Path:
    """Where the released weights live: ``$RGBT_WEIGHTS`` or the repository's ``weights/``."""
    return Path(os.environ.get("RGBT_WEIGHTS") or Path(__file__).resolve().parents[2] / "weights")


def default_weights(name: str) -> Path:
    return weights_dir() / f"{name}.pt"


def model_spec(model: nn.Module) -> dict:
    """``{"name", "config"}`` that rebuilds ``model`` through :data:`MODELS`."""
    return {"name": model.name, "config": dict(model.config)}


def build_model(spec: dict, where: str = "") -> nn.Module:
    name = spec.get("name")
    if name not in MODELS:
        raise RgbtError(f"{where}holds an unknown model '{name}'; known: {', '.join(MODELS)}")
    return MODELS[name](**spec.get("config", {}))


def save_weights(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the network's weights and spec to ``path`` atomically."""
    import io

    from fusion.io import atomic_write_bytes

    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"fusion_model": model_spec(model), "state_dict": state, "meta": meta or {}}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def read_checkpoint(path: str | Path, hint: str = "check the path"):
    """``torch.load`` a user's file without unpickling code: tensors, containers and plain values only.

    Raises:
        RgbtError: missing file, or a file that is corrupt or holds anything else (a pickled object would run
            code when unpickled, so it is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise RgbtError(f"{short(path)}: no such weight file; {hint}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: our one line says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files; UnpicklingError for disallowed objects
        if "GLOBAL" in str(e) or "Unsupported global" in str(e):  # a pickled object: code would run
            raise RgbtError(
                f"{short(path)}: holds Python objects other than weights, which are never unpickled here; "
                "re-export it as a state_dict (torch.save(model.state_dict(), path))"
            ) from None
        raise RgbtError(
            f"{short(path)}: not a readable weight file ({type(e).__name__}); re-download or retrain"
        ) from None


def load_model(path: str | Path, expect: str | None = None, official: bool = False, **overrides) -> nn.Module:
    """Rebuild a network from a weight file, a Lightning checkpoint or an official checkpoint (eval mode, CPU).

    Official files (densefuse-pytorch ``.model``, SwinFusion ``<iter>_E.pth``, ``CDDFuse_IVF.pth``) are
    recognised by their keys (:mod:`fusion.models.official`); the model's ``source`` attribute records which
    format the weights came from.

    Args:
        expect: the model name the caller wants (e.g. the ``--method``); a mismatch is an error.
        official: build the network as the official test script runs it (:data:`official.OFFICIAL_CONFIG`).
        overrides: constructor arguments to change (e.g. DenseFuse's ``strategy``).

    Raises:
        RgbtError: missing or unreadable file, an unknown format, or the wrong model.
    """
    from fusion.models import official as O

    path = Path(path)
    ckpt = read_checkpoint(path, "train one with rgbt fit, or pass --ckpt" if expect else "check the path")
    if isinstance(ckpt, dict) and "fusion_model" in ckpt:
        spec, state, source = dict(ckpt["fusion_model"]), ckpt.get("state_dict", {}), "rgbt"
        if any(k.startswith("model.") for k in state):  # Lightning checkpoint: keep the network's own weights
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
            source = "rgbt fit checkpoint"
    elif (fmt := O.detect(ckpt)) is not None:
        spec, state, source = {"name": fmt, "config": {}}, O.convert(fmt, ckpt), f"official {fmt} checkpoint"
    else:
        raise RgbtError(f"{short(path)}: not a known weight format; expected {O.FORMATS}")
    if expect and spec.get("name") != expect:
        raise RgbtError(
            f"{short(path)} holds a {spec.get('name')} model, not {expect}; pass --method {spec.get('name')}"
        )
    if official:
        if spec.get("name") not in O.OFFICIAL_CONFIG:
            raise RgbtError(f"{spec.get('name')} has no official mode; it exists for {', '.join(O.OFFICIAL_CONFIG)}")
        overrides = {**O.OFFICIAL_CONFIG[spec["name"]], **overrides}
    spec["config"] = {**spec.get("config", {}), **overrides}
    model = build_model(spec, f"{short(path)} ")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = state_dict_mismatch(str(e))[0]
        raise RgbtError(f"{short(path)}: weights do not fit {spec['name']} ({detail})") from None
    model.source = source
    return model.eval()
