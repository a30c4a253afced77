"""Learned fusion networks, their registry and their weight files.

Every network has ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors in [0, 1], a class attribute ``name`` and a
``config`` dict of its constructor arguments, so that a weight file or a Lightning checkpoint can rebuild it.

Weight files (``weights/<name>.pt``, written by ``rgbt export``) hold
``{"fusion_model": {"name", "config"}, "state_dict", "meta"}``; Lightning checkpoints carry the same
``fusion_model`` entry and the network's weights under the ``model.`` prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from fusion.errors import RgbtError, short
from fusion.models.ddcgan import DDcGANDiscriminator, DDcGANGenerator
from fusion.models.densefuse import DenseFuse
from fusion.models.swinfusion import SwinFusion
from fusion.models.tiling import Tiled, tiled_forward

__all__ = [
    "MODELS",
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

MODELS: dict[str, type[nn.Module]] = {"densefuse": DenseFuse, "ddcgan": DDcGANGenerator, "swinfusion": SwinFusion}


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


def load_model(path: str | Path, expect: str | None = None, **overrides) -> nn.Module:
    """Rebuild a network from a weight file or a Lightning checkpoint (eval mode, CPU).

    Args:
        expect: the model name the caller wants (e.g. the ``--method``); a mismatch is an error.
        overrides: constructor arguments to change (e.g. DenseFuse's ``strategy``).

    Raises:
        RgbtError: missing or unreadable file, a file without a fusion model, or the wrong model.
    """
    path = Path(path)
    if not path.is_file():
        hint = "train one with rgbt fit, or pass --ckpt" if expect else "check the path"
        raise RgbtError(f"{short(path)}: no such weight file; {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise RgbtError(
            f"{short(path)}: not a readable weight file ({type(e).__name__}); re-download or retrain"
        ) from None
    if not isinstance(ckpt, dict) or "fusion_model" not in ckpt:
        raise RgbtError(f"{short(path)}: no fusion model in this file; use a checkpoint written by rgbt fit")
    spec = dict(ckpt["fusion_model"])
    if expect and spec.get("name") != expect:
        raise RgbtError(
            f"{short(path)} holds a {spec.get('name')} model, not {expect}; pass --method {spec.get('name')}"
        )
    spec["config"] = {**spec.get("config", {}), **overrides}
    model = build_model(spec, f"{short(path)} ")
    state = ckpt["state_dict"]
    if any(k.startswith("model.") for k in state):  # Lightning checkpoint: keep the network's own weights
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RgbtError(f"{short(path)}: weights do not fit {spec['name']} ({str(e).splitlines()[0]})") from None
    return model.eval()
