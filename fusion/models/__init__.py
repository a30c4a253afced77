"""Learned fusion networks, their registry and their weight files.

Every network has ``forward(vis, ir) -> fused`` on (B, 1, H, W) tensors in [0, 1], a class attribute ``name`` and a
``config`` dict of its constructor arguments, so that a weight file or a Lightning checkpoint can rebuild it.

Weight files (``weights/<name>.pt``, written by ``rgbt export``) hold
``{"fusion_model": {"name", "config"}, "state_dict", "meta"}``; Lightning checkpoints carry the same
``fusion_model`` entry and the network's weights under the ``model.`` prefix. The authors' own files load as
they are: each family file (:mod:`fusion.models.zoo` lists them) recognises its format from the keys.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from fusion.errors import RgbtError, short, state_dict_mismatch
from fusion.models.cddfuse import CDDFuse
from fusion.models.csf import CSF
from fusion.models.cufd import CUFD
from fusion.models.datfuse import DATFuse
from fusion.models.ddcgan import DDcGANDiscriminator, DDcGANGenerator
from fusion.models.densefuse import DenseFuse
from fusion.models.densefuse_tf import DenseFuseTF
from fusion.models.didfuse import DIDFuse
from fusion.models.fusiongan import FusionGAN
from fusion.models.ganmcc import GANMcC
from fusion.models.ifcnn import IFCNN
from fusion.models.lrrnet import LRRNet
from fusion.models.piafusion import PIAFusion
from fusion.models.pmgi import PMGI
from fusion.models.reconet import ReCoNet
from fusion.models.sdnet import SDNet
from fusion.models.seafusion import SeAFusion
from fusion.models.stdfusionnet import STDFusionNet
from fusion.models.swinfusion import SwinFusion
from fusion.models.tardal import TarDAL
from fusion.models.tiling import Tiled, tiled_forward
from fusion.models.u2fusion import U2Fusion
from fusion.models.ydtr import YDTR
from fusion.models.zoo import FAMILIES, TRAIN_ONLY, ZOO

__all__ = [
    "MODELS",
    "ZOO",
    "CDDFuse",
    "CSF",
    "CUFD",
    "DATFuse",
    "DDcGANDiscriminator",
    "DDcGANGenerator",
    "DIDFuse",
    "DenseFuse",
    "DenseFuseTF",
    "FusionGAN",
    "GANMcC",
    "IFCNN",
    "LRRNet",
    "PIAFusion",
    "PMGI",
    "ReCoNet",
    "SDNet",
    "STDFusionNet",
    "SeAFusion",
    "SwinFusion",
    "TarDAL",
    "Tiled",
    "U2Fusion",
    "YDTR",
    "load_model",
    "model_spec",
    "save_weights",
    "tiled_forward",
]

MODELS: dict[str, type[nn.Module]] = {**{k: f.model for k, f in FAMILIES.items()}, **TRAIN_ONLY}
WEIGHT_SUFFIXES = (".pt", ".pth", ".pkl", ".model", ".ckpt", ".index")  # .index: a TensorFlow 1 checkpoint


def model_spec(model: nn.Module) -> dict:
    """``{"name", "config"}`` that rebuilds ``model`` through :data:`MODELS`; for a network of the user's own,
    ``{"class_path", "config"}`` (its constructor arguments are its ``config`` attribute, if any)."""
    if getattr(model, "name", None) in MODELS:
        return {"name": model.name, "config": dict(model.config)}
    cls = type(model)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "config": dict(getattr(model, "config", {}))}


def build_model(spec: dict, where: str = "", class_path: str | None = None) -> nn.Module:
    """The network ``spec`` describes. A user's own network (``spec["class_path"]``) is imported only when the
    caller names the same class (``class_path``): a weight file alone never makes us import code."""
    if "class_path" in spec:
        return _user_model(spec, where, class_path)
    name = spec.get("name")
    if name not in MODELS:
        raise RgbtError(f"{where}holds an unknown model '{name}'; known: {', '.join(MODELS)}")
    return MODELS[name](**spec.get("config", {}))


def _user_model(spec: dict, where: str, class_path: str | None) -> nn.Module:
    import importlib

    want = spec["class_path"]
    if class_path != want:
        raise RgbtError(
            f"{where}holds a network of your own ({want}); name it to load it (class_path: {want} in an experiment "
            "file)"
            if class_path is None
            else f"{where}holds {want}, not {class_path}; fix class_path"
        )
    module, _, cls_name = want.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise RgbtError(f"cannot import {want} ({type(e).__name__}); put its folder on PYTHONPATH") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise RgbtError(f"{want} is not an nn.Module; class_path names the network's class")
    try:
        return cls(**spec.get("config", {}))
    except TypeError as e:
        raise RgbtError(f"{want}({spec.get('config', {})}) failed: {e}; check its config attribute") from None


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
    if is_tf1(path):  # the authors' TensorFlow 1 checkpoint: read as plain arrays, no TensorFlow, no pickle
        from fusion.models.tf1 import read_tf1

        return {k: torch.from_numpy(v) for k, v in read_tf1(path).items()}
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


def is_tf1(path: Path) -> bool:
    """A TensorFlow 1 checkpoint: its ``.index``, ``.meta`` or a ``.data-*`` shard, or its prefix (``model.ckpt``)."""
    if path.suffix in (".index", ".meta") or ".data-0" in path.name:
        return True
    return not path.is_file() and path.with_name(path.name + ".index").is_file()


def formats() -> str:
    """Every accepted weight format, for messages."""
    return "an rgbt weight file or rgbt fit checkpoint, " + ", ".join(f.formats for f in FAMILIES.values())


def _authors_state(paths: list[Path], objs: list, expect: str | None) -> tuple[str, dict, str]:
    """The family, our state_dict and a description, from the authors' file(s) (every part of one family)."""
    found: dict[str, dict[str, tuple[Path, object]]] = {}
    for p, obj in zip(paths, objs, strict=True):
        hits = [(n, f.detect(obj)) for n, f in FAMILIES.items() if f.detect(obj) is not None]
        if not hits:
            raise RgbtError(f"{short(p)}: not a known weight format; expected {formats()}")
        name, part = hits[0]
        found.setdefault(name, {})[part] = (p, obj)
    if len(found) > 1:
        raise RgbtError(f"{', '.join(short(p) for p in paths)}: files of different networks ({', '.join(found)})")
    name, parts = next(iter(found.items()))
    if expect and name != expect:
        raise RgbtError(f"{short(paths[0])} holds a {name} model, not {expect}; pass --method {name} (or its variants)")
    fam = FAMILIES[name]
    missing = [q for q in fam.parts if q not in parts]
    if missing:
        have = ", ".join(f"{q} ({short(p)})" for q, (p, _) in parts.items())
        raise RgbtError(
            f"{short(paths[0])}: holds {name}'s {have} but not its {', '.join(missing)}; pass the folder holding all "
            f"of {name}'s files (see rgbt methods)"
        )
    state = fam.convert({q: obj for q, (_, obj) in parts.items()})
    return name, state, f"authors' {name} weights"


def weight_files(path: Path, files: tuple[str, ...] = ()) -> list[Path]:
    """The files a ``--ckpt`` path stands for: the file itself, or in a folder the method's ``files`` (``|``
    alternatives) or else every weight file there."""
    if not path.is_dir():
        return [path]
    if files:
        hits = [next((path / f for f in spec.split("|") if (path / f).is_file()), None) for spec in files]
        if all(hits):
            return hits
        missing = [spec.split("|")[0] for spec, h in zip(files, hits, strict=True) if h is None]
        raise RgbtError(f"{short(path)}: no {' or '.join(missing)} here; put the authors' file(s) in this folder")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not found:
        raise RgbtError(f"{short(path)}: no weight files here ({', '.join(WEIGHT_SUFFIXES)}); check the folder")
    return found


def load_model(
    path: str | Path,
    expect: str | None = None,
    official: bool = False,
    files: tuple[str, ...] = (),
    class_path: str | None = None,
    **overrides,
) -> nn.Module:
    """Rebuild a network from a weight file, a Lightning checkpoint or the authors' file(s) (eval mode, CPU).

    The authors' files are recognised by their keys (each family's ``detect``); their network is built with the
    family's ``native`` settings, so that it computes what theirs computes. The model's ``source`` attribute says
    what the weights were.

    Args:
        path: a file, or a folder holding the authors' files (e.g. ``official_weights/didfuse``).
        expect: the family the caller wants (the ``--method``'s); a mismatch is an error.
        official: build the network with the official arithmetic (the family's ``exact`` settings).
        files: the authors' file names to take from a folder (one method's, when the folder holds several).
        class_path: the class of a network of the user's own that the checkpoint holds (``module.Class``).
        overrides: constructor arguments to change (e.g. IFCNN's ``rule``).

    Raises:
        RgbtError: missing or unreadable file, an unknown format, missing parts, or the wrong model.
    """
    path = Path(path)
    hint = "train one with rgbt fit, or pass --ckpt" if expect else "check the path"
    paths = weight_files(path, files) if path.exists() else [path]
    objs = [read_checkpoint(p, hint) for p in paths]
    if len(objs) == 1 and isinstance(objs[0], dict) and "fusion_model" in objs[0]:
        ckpt = objs[0]
        spec, state, source = dict(ckpt["fusion_model"]), ckpt.get("state_dict", {}), "rgbt"
        if any(k.startswith("model.") for k in state):  # Lightning checkpoint: keep the network's own weights
            state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
            source = "rgbt fit checkpoint"
        if class_path and "class_path" not in spec:
            raise RgbtError(
                f"{short(path)} holds a {spec.get('name')} model, not {class_path}; fix ckpt: or class_path:"
            )
        if expect and "class_path" in spec:
            raise RgbtError(f"{short(path)} holds a network of your own ({spec['class_path']}), not {expect}")
        if expect and spec.get("name") != expect:
            raise RgbtError(
                f"{short(path)} holds a {spec.get('name')} model, not {expect}; pass --method {spec.get('name')}"
            )
    else:
        name, state, source = _authors_state(paths, objs, expect)
        spec = {"name": name, "config": dict(FAMILIES[name].native)}
    name = spec.get("name") or spec.get("class_path")
    check_weights(state, path)
    if official:
        if name not in FAMILIES or FAMILIES[name].official is None:
            known = ", ".join(n for n, f in FAMILIES.items() if f.official)
            raise RgbtError(f"{name} has no official mode; it exists for {known}")
        needs = FAMILIES[name].official_needs
        if any(spec.get("config", {}).get(k) != v for k, v in needs.items()):
            raise RgbtError(
                f"{name} has no official mode for {short(path)}: it holds a network of our own training, and "
                "--official runs the authors' network on their files; drop --official"
            )
        overrides = {**FAMILIES[name].exact, **overrides}
    spec["config"] = {**spec.get("config", {}), **overrides}
    model = build_model(spec, f"{short(path)} ", class_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = state_dict_mismatch(str(e))[0]
        raise RgbtError(f"{short(path)}: weights do not fit {name} ({detail})") from None
    model.source = source
    return model.eval()


def check_weights(state: dict, path: Path) -> None:
    """Refuse weights that cannot give a valid image: non-tensors, non-floating or non-finite parameters."""
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise RgbtError(f"{short(path)}: '{k}' is not a tensor; re-export the weights")
        if v.is_floating_point() or v.is_complex():
            if v.is_complex():
                raise RgbtError(f"{short(path)}: '{k}' holds complex numbers; these weights cannot be used")
            if not torch.isfinite(v).all():
                raise RgbtError(f"{short(path)}: '{k}' holds NaN or infinite values; re-download or retrain")
        elif not k.endswith(("num_batches_tracked", "relative_position_index")):
            raise RgbtError(f"{short(path)}: '{k}' holds {v.dtype} values where weights are floats; re-export them")


def param_count(model: nn.Module) -> int:
    """Values in the model's state_dict, buffers included (how the zoo counts the authors' files)."""
    return sum(v.numel() for v in model.state_dict().values())
