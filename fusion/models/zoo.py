"""The model zoo: every learned method, its paper, and where its weights are.

A method is one line of :data:`ZOO`: a network family (a file of ``fusion/models/`` ending with a ``FAMILY``), the
settings that make it this method (IFCNN's fusion rule, TarDAL's batch statistics), the paper, and the authors'
weight files. Adding a method is its family file plus one line here.

Weights are looked for, in order (:func:`find_weights`):

1. the authors' files, laid out as they publish them under ``<dir>/<folder>/`` (``official_weights/`` of the sample
   data is such a folder), in ``--weights DIR``, then ``$RGBT_WEIGHTS``, then ``<data root>/official_weights``;
   ``<dir>/<method>.pt``, a weight file written by ``rgbt export``, counts there too;
2. our own weights, ``weights/<method>.pt`` in the repository (short CPU runs; see ``weights/README.md``).

The authors' files are never copied into the project: many carry no licence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fusion.errors import RgbtError, short
from fusion.models import (
    cddfuse,
    csf,
    cufd,
    datfuse,
    ddcgan,
    densefuse,
    densefuse_tf,
    didfuse,
    fusiongan,
    ganmcc,
    ifcnn,
    lrrnet,
    piafusion,
    pmgi,
    reconet,
    sdnet,
    seafusion,
    stdfusionnet,
    swinfusion,
    tardal,
    u2fusion,
    ydtr,
)
from fusion.models.official import Family

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        densefuse.FAMILY, swinfusion.FAMILY, cddfuse.FAMILY, seafusion.FAMILY, ifcnn.FAMILY, tardal.FAMILY,
        didfuse.FAMILY, ydtr.FAMILY, datfuse.FAMILY, lrrnet.FAMILY, reconet.FAMILY, u2fusion.FAMILY,
        densefuse_tf.FAMILY, sdnet.FAMILY, stdfusionnet.FAMILY, pmgi.FAMILY, csf.FAMILY, cufd.FAMILY,
        fusiongan.FAMILY, ganmcc.FAMILY, piafusion.FAMILY, ddcgan.FAMILY,
    )
}  # fmt: skip
# families we train but whose authors' files we cannot load (none at present: DDcGAN's TF1 checkpoint loads now)
TRAIN_ONLY: dict[str, type] = {}

OURS_DIR = Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class ZooMethod:
    """One learned method.

    Attributes:
        name: the method's name in ``rgbt`` commands.
        family: its network family (``FAMILIES`` / ``TRAIN_ONLY`` key).
        paper: authors, venue and year, as tables cite it.
        params: values in the authors' state_dict(s), buffers included (our count where they publish no PyTorch).
        files: the authors' weight files, under ``official_weights/<folder>/``; alternatives separated by ``|``.
        folder: the folder of those files (default: the name).
        source: where the authors publish them.
        script: what ``--official`` reproduces: repository, commit and script.
        config: constructor settings that make the family this method.
        fast: in the demo's default set: one network per family among those that fuse a 640x480 pair in 1.7 s or
            less on 2 CPU cores (docs/zoo.md has the times of all).
    """

    name: str
    family: str
    paper: str
    params: int
    files: tuple[str, ...] = ()
    folder: str = ""
    source: str = ""
    script: str = ""
    config: dict = field(default_factory=dict)
    fast: bool = True

    @property
    def weights_folder(self) -> str:
        return self.folder or self.name


_VB = "Linfeng-Tang/VIF-Benchmark (Checkpoint/{})"
_TARDAL = "JinyuanLiu-CV/TarDAL@8ef276f (weights/, the 2022 release); " + _VB.format("TarDAL/")
_IFCNN = "uzeful/IFCNN (Code/snapshots/)"
_IFCNN_SCRIPT = "uzeful/IFCNN@8fe59c2 Code/IFCNN_Main.py (infrared-visible branch"
_LRR = "final_lrr_net_lam2_1.5_wir_3.0_lam3_gram_2000_epoch_4_block_4.model"
ZOO: dict[str, ZooMethod] = {
    m.name: m
    for m in (
        ZooMethod(
            "densefuse", "densefuse", "Li and Wu, TIP 2019", 74_193, ("densefuse_gray.model",),
            source="hli1221/densefuse-pytorch (models/densefuse_gray.model)",
            script="hli1221/densefuse-pytorch@4394b63 test_image.py (addition)",
        ),
        ZooMethod(
            "ddcgan", "ddcgan", "Ma et al., TIP 2020", 1_099_073, ("model.ckpt.index",),
            source="hanna-xu/DDcGAN (same-resolution vis-ir image fusion/model/model.ckpt.*, TensorFlow 1, too large "
            "for the sample data); without them, our weights",
            script="hanna-xu/DDcGAN@ac2f40f same-resolution vis-ir image fusion/generate.py", fast=False,
        ),
        ZooMethod(
            "swinfusion", "swinfusion", "Ma et al., IEEE/CAA JAS 2022", 973_681, ("10000_E.pth|SwinFusion.pth",),
            source="Linfeng-Tang/SwinFusion (Model/Infrared_Visible_Fusion/.../models/10000_E.pth)",
            script="Linfeng-Tang/SwinFusion@ceeec3f test_swinfusion.py", fast=False,
        ),
        ZooMethod(
            "cddfuse", "cddfuse", "Zhao et al., CVPR 2023", 1_188_272, ("CDDFuse_IVF.pth",),
            source="Zhaozixiang1228/MMIF-CDDFuse (models/CDDFuse_IVF.pth)",
            script="Zhaozixiang1228/MMIF-CDDFuse@fd8da1f test_IVF.py", fast=False,
        ),
        ZooMethod(
            "seafusion", "seafusion", "Tang et al., Information Fusion 2022", 167_113, ("SeAFusion.pth",),
            source=_VB.format("SeAFusion/SeAFusion.pth"),
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 SeAFusion/SeAFusion.py (by SeAFusion's first author)",
        ),
        ZooMethod(
            "ifcnn", "ifcnn", "Zhang et al., Information Fusion 2020", 83_843, ("IFCNN-MAX.pth",),
            source=_IFCNN, script=_IFCNN_SCRIPT + ", IFCNN-MAX)", config={"rule": "max"},
        ),
        ZooMethod(
            "ifcnn_mean", "ifcnn", "Zhang et al., Information Fusion 2020", 83_843, ("IFCNN-MEAN.pth",), "ifcnn",
            _IFCNN, _IFCNN_SCRIPT + ", IFCNN-MEAN)", {"rule": "mean"}, fast=False,
        ),
        ZooMethod(
            "ifcnn_sum", "ifcnn", "Zhang et al., Information Fusion 2020", 83_843, ("IFCNN-SUM.pth",), "ifcnn",
            _IFCNN, _IFCNN_SCRIPT + ", IFCNN-SUM)", {"rule": "sum"}, fast=False,
        ),
        ZooMethod(
            "tardal", "tardal", "Liu et al., CVPR 2022", 297_031, ("tardal.pt",), "tardal", _TARDAL,
            "JinyuanLiu-CV/TarDAL@8ef276f fuse.py --color", {"batch_stats": True}, fast=False,
        ),
        ZooMethod(
            "tardal+", "tardal", "Liu et al., CVPR 2022", 297_031, ("tardal+.pt",), "tardal", _TARDAL,
            "JinyuanLiu-CV/TarDAL@8ef276f fuse.py --color --eval", fast=False,
        ),
        ZooMethod(
            "tardal++", "tardal", "Liu et al., CVPR 2022", 297_031, ("tardal++.pt",), "tardal", _TARDAL,
            "JinyuanLiu-CV/TarDAL@8ef276f fuse.py --color --eval", fast=False,
        ),
        ZooMethod(
            "didfuse", "didfuse", "Zhao et al., IJCAI 2020", 261_712,
            ("Encoder_weight_IJCAI.pkl", "Decoder_weight_IJCAI.pkl"), source="Zhaozixiang1228/IVIF-DIDFuse (Models/)",
            script="Zhaozixiang1228/IVIF-DIDFuse@5f28730 test.py (Sum)", fast=False,
        ),
        ZooMethod(
            "ydtr", "ydtr", "Tang et al., TMM 2023", 218_159, ("model_10.pth",),
            source="tthinking/YDTR (models/model_10.pth)", script="tthinking/YDTR@b1f01b4 Test.py", fast=False,
        ),
        ZooMethod(
            "datfuse", "datfuse", "Tang et al., TCSVT 2023", 10_840, ("model_10.pth",),
            source="tthinking/DATFuse (model_10.pth)", script="tthinking/DATFuse@0cd93f1 Test.py",
        ),
        ZooMethod(
            "lrrnet", "lrrnet", "Li et al., TPAMI 2023", 49_204, (_LRR,), source="hli1221/imagefusion-LRRNet (model/)",
            script="hli1221/imagefusion-LRRNet@e489fc3 testing_fusion_lrr.py", fast=False,
        ),
        ZooMethod(
            "reconet", "reconet", "Huang et al., ECCV 2022", 7_917, ("params.pth",),
            source="dlut-dimt/ReCoNet (archive/params.pth)", script="dlut-dimt/ReCoNet@0870f5f archive/fuse.py",
        ),
        ZooMethod(
            "u2fusion", "u2fusion", "Xu et al., TPAMI 2022", 659_217, ("model.ckpt.index",),
            source="hanna-xu/U2Fusion (model/model.ckpt.*, TensorFlow 1)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 U2Fusion/U2Fusion.py (the authors publish no test script)",
            fast=False,
        ),
        ZooMethod(
            "densefuse_tf", "densefuse_tf", "Li and Wu, TIP 2019 (TensorFlow)", 74_193, ("DeseFuse.ckpt.index",),
            source="hli1221/imagefusion_densefuse (TensorFlow 1); Linfeng-Tang/VIF-Benchmark (Checkpoint/DenseFuse)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 DenseFuse/DenseFuse.py (addition)",
            fast=False,  # DenseFuse's network: the demo shows it once, with the PyTorch release's weights
        ),
        ZooMethod(
            "sdnet", "sdnet", "Zhang and Ma, IJCV 2021", 67_091, ("IRVIS.model-10.index",),
            source="HaoZhang1018/SDNet (checkpoint/IRVIS, TensorFlow 1)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 SDNet/SDNet.py (the authors' test code with img2RGB)",
            # the TensorFlow 1 networks in the demo: those of 1.7 s or less a pair (SDNet 0.33 s, PMGI 0.39 s);
            # U2Fusion, STDFusionNet, CSF, CUFD take 2-4 s (`rgbt demo --methods all` adds them)
        ),
        ZooMethod(
            "stdfusionnet", "stdfusionnet", "Ma et al., TIM 2021", 282_513, ("Fusion.model-29.index",),
            source="Linfeng-Tang/STDFusionNet (TensorFlow 1); Linfeng-Tang/VIF-Benchmark (Checkpoint/STDFusionNet)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 STDFusionNet/STDFusionNet.py (the authors' test_network.py)",
            fast=False,
        ),
        ZooMethod(
            "pmgi", "pmgi", "Zhang et al., AAAI 2020", 42_401, ("CGAN.model-1.index",),
            source="HaoZhang1018/PMGI_AAAI2020 (checkpoint/CGAN_120, TensorFlow 1)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 PMGI/PMGI.py (the authors' test code with img2RGB)",
        ),
        ZooMethod(
            "csf", "csf", "Xu et al., TCI 2021", 224_475, ("EC.ckpt.index", "ED.ckpt.index"),
            source="hanna-xu/CSF (TensorFlow 1); Linfeng-Tang/VIF-Benchmark (Checkpoint/CSF)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 CSF/CSF.py (the authors' generate.py with img2RGB)",
            fast=False,
        ),
        ZooMethod(
            "cufd", "cufd", "Xu et al., CVIU 2022", 1_178_274, ("1part1_model.ckpt.index", "part2_model.ckpt.index"),
            source="Meiqi-Gong/CUFD (TensorFlow 1); Linfeng-Tang/VIF-Benchmark (Checkpoint/CUFD)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 CUFD/CUFD.py (the authors' generate.py with img2RGB)",
            fast=False,
        ),
        ZooMethod(
            "fusiongan", "fusiongan", "Ma et al., Information Fusion 2019", 926_593,
            ("CGAN.model-3.index|FusionGAN.index",),
            source="jiayi-ma/FusionGAN (checkpoint/CGAN_120/CGAN.model-3.*, TensorFlow 1, too large for the sample "
            "data); Linfeng-Tang/VIF-Benchmark (Checkpoint/FusionGAN)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 FusionGAN/FusionGAN.py (the authors' test code with img2RGB)",
            fast=False,
        ),
        ZooMethod(
            "ganmcc", "ganmcc", "Ma et al., TIM 2021", 1_866_049, ("GANMcC.index|CGAN.model-4.index",),
            source="HaoZhang1018/GANMcC (TensorFlow 1, too large for the sample data); Linfeng-Tang/VIF-Benchmark "
            "(Checkpoint/GANMcC)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 GANMcC/GANMcC.py (the authors' test code with img2RGB)",
            fast=False,
        ),
        ZooMethod(
            "piafusion", "piafusion", "Tang et al., Information Fusion 2022", 1_076_785,
            ("IAFusion.model-29.index",),
            source="Linfeng-Tang/PIAFusion (checkpoint/PIAFusion, TensorFlow 1, too large for the sample data); "
            "Linfeng-Tang/VIF-Benchmark (Checkpoint/PIAFusion)",
            script="Linfeng-Tang/VIF-Benchmark@23f2e51 PIAFusion/PIAFusion.py (the authors' model.py test)",
            fast=False,
        ),
    )
}  # fmt: skip


def family_of(method: str) -> str:
    return ZOO[method].family


def search_dirs(weights: str | Path | None = None) -> list[tuple[Path, str]]:
    """Folders holding the authors' files, with how each was given: ``--weights``, ``$RGBT_WEIGHTS``, then
    ``official_weights`` under the data root."""
    from fusion.data import resolve_data_root

    dirs = []
    if weights:
        dirs.append((Path(weights), "--weights"))
    if os.environ.get("RGBT_WEIGHTS"):
        dirs.append((Path(os.environ["RGBT_WEIGHTS"]), "$RGBT_WEIGHTS"))
    try:
        root = resolve_data_root()
    except RgbtError:
        root = None
    if root is not None:
        dirs.append((root / "official_weights", "the data root"))
    return dirs


def authors_files(method: ZooMethod, folder: Path) -> list[Path] | None:
    """The method's files in ``folder`` (one of each ``|`` alternative), or None when one is missing."""
    found = []
    for spec in method.files:
        hit = next((folder / f for f in spec.split("|") if (folder / f).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found or None


@dataclass(frozen=True)
class Weights:
    """Where a method's weights were found: ``files`` (one, or the authors' parts), ``kind`` ("authors" or "ours")."""

    files: tuple[Path, ...]
    kind: str

    def describe(self) -> str:
        where = short(self.files[0].parent) if len(self.files) > 1 else short(self.files[0])
        return f"{self.kind}: {where}"


def find_weights(name: str, weights: str | Path | None = None) -> Weights | None:
    """The weights ``rgbt fuse --method name`` uses without ``--ckpt`` (see the module docstring), or None."""
    m = ZOO[name]
    for d, _ in search_dirs(weights):
        files = authors_files(m, d / m.weights_folder) if m.files else None
        if files:
            return Weights(tuple(files), "authors")
        if (d / f"{name}.pt").is_file():
            return Weights((d / f"{name}.pt",), "exported")
    ours = OURS_DIR / f"{name}.pt"
    return Weights((ours,), "ours") if ours.is_file() else None


def require_weights(name: str, weights: str | Path | None = None) -> Weights:
    """:func:`find_weights`, or one line saying which file to put where.

    Raises:
        RgbtError: no weights found.
    """
    found = find_weights(name, weights)
    if found is not None:
        return found
    m = ZOO[name]
    dirs = search_dirs(weights)
    target = short(dirs[0][0] / m.weights_folder) if dirs else f"$RGBT_WEIGHTS/{m.weights_folder}"
    files = " and ".join(f.split("|")[0] for f in m.files)
    if not files:
        raise RgbtError(
            f"no weights for {name}: train them (rgbt fit) and pass --ckpt, or put {name}.pt in $RGBT_WEIGHTS"
        )
    raise RgbtError(
        f"no weights for {name}: download {files} from {m.source} into {target}/ (or set $RGBT_WEIGHTS, "
        "--weights DIR), or pass --ckpt FILE"
    )
