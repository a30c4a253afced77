"""Check the conventions against the published reference values in ``metrics_reference/``.

``compare_references(root)`` returns one row per reference value with our value and the error; the test
suite uses it, and ``rgbt experiment references`` prints its summary per code (:func:`check_references`).
The ``ivifzoo`` values were made by running the survey's own code on pairs of the data root; they live in the
project's tests (``tests/fixtures/metrics/``, with the commit and command that made them) and are checked when
the project is a checkout.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from fusion.io import read_image
from fusion.metrics import compute_metrics, metric_names
from fusion.metrics._kernels import rgb2gray_pil

VIFB_NAMES = {
    "Cross_entropy": "CE",
    "Entropy": "EN",
    "Mutinf": "MI",
    "Psnr": "PSNR",
    "Avg_gradient": "AG",
    "Edge_intensity": "EI",
    "Qabf": "Qabf",
    "Variance": "SD",
    "Spatial_frequency": "SF",
    "Rmse": "RMSE",
    "Ssim": "SSIM",
    "Qcb": "Qcb",
    "Qcv": "Qcv",
}


# Reference names that differ from ours, per code.
RENAMES = {"tang": {"Nabf": "Nabf_published", "Nabf_fixedorder": "Nabf"}}

# The survey code's values (IVIF_ZOO commit 2fc8473), made outside the project: tests/fixtures/metrics/README.md.
IVIFZOO_CSV = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "metrics" / "ivifzoo_2fc8473.csv"
IVIFZOO_SETS = {
    "VIFB": "vifb",
    "TNO42": "metrics_reference/tang2022",
    "TNO": "tno",
    "RoadScene": "roadscene/test",
    "MSRS": "msrs",
}
# Fusions any machine redoes exactly from the PIL-grey (uint8) sources, so that the references do not need
# fused files beside the data.
INT_FUSIONS = {"int_max": torch.maximum, "int_mean": lambda a, b: torch.div(a + b, 2, rounding_mode="floor")}


@dataclass(frozen=True)
class Check:
    code: str
    method: str
    image: str
    metric: str
    reference: float
    ours: float | None  # None: metric not implemented in that convention

    @property
    def rel_error(self) -> float:
        if self.ours is None:
            return float("inf")
        return abs(self.ours - self.reference) / max(abs(self.reference), 1e-12)

    @property
    def ok(self) -> bool:
        """Within 1e-4 relative (full precision) or half a unit of the 5th significant digit (VIFB)."""
        if self.ours is None:
            return False
        if self.code == "vifb":
            ref = f"{self.reference:.5g}"
            digits = len(ref.replace("-", "").replace(".", "").lstrip("0")) or 1
            exp = len(ref.split(".")[0].lstrip("-").lstrip("0")) if abs(self.reference) >= 1 else 0
            unit = 10.0 ** (exp - digits) if abs(self.reference) >= 1 else 10.0 ** -len(ref.split(".")[1])
            return abs(self.ours - self.reference) <= 0.5 * unit + 1e-12
        if self.code in ("tang2022", "ivifzoo"):  # values written at full precision: 1e-6
            return self.rel_error <= 1e-6
        return self.rel_error <= 1e-4


def _score(code, ir, vi, fused, metrics) -> dict:
    f, v, i = (read_image(p)[0] for p in (fused, vi, ir))
    known = [m for m in metrics if m in metric_names(code, extra=True)]
    out = compute_metrics(f, v, i, known, code) if known else {}
    return {k: float(t[0]) for k, t in out.items()}


def pil_grey(path: Path) -> torch.Tensor:
    """PIL's ``convert('L')`` of a file as uint8 levels (1, 1, H, W), float64."""
    x = read_image(path, keep_uint8=True)[0].double()
    return rgb2gray_pil(x) if x.shape[1] == 3 else x


def _file(folder: Path, stem: str) -> Path:
    found = sorted(folder.glob(f"{stem}.*"))
    if not found:
        from fusion.errors import RgbtError

        raise RgbtError(f"{folder}/{stem}.* not found: the ivifzoo references need the data root's sample sets")
    return found[0]


def ivifzoo_checks(root: Path, csv_path: Path = IVIFZOO_CSV) -> list[Check]:
    """Our ``ivifzoo`` values next to the survey code's on the triples of ``csv_path``."""
    groups: dict[tuple, dict[str, float]] = {}
    for r in csv.DictReader(csv_path.open()):
        groups.setdefault((r["dataset"], r["image"], r["method"]), {})[r["metric"]] = float(r["value"])
    checks = []
    for (dataset, image, method), ref in groups.items():
        base = root / IVIFZOO_SETS[dataset]
        ir, vi = pil_grey(_file(base / "ir", image)), pil_grey(_file(base / "vi", image))
        if method in INT_FUSIONS:
            fused = INT_FUSIONS[method](ir, vi)
        else:
            fused = pil_grey(_file(base / "fused" / method, image))
        ours = compute_metrics(fused / 255, vi / 255, ir / 255, list(ref), "ivifzoo")
        checks += [Check("ivifzoo", method, f"{dataset}/{image}", k, v, float(ours[k][0])) for k, v in ref.items()]
    return checks


CODES = ("vifb", "tang", "cddfuse", "tang2022", "ivifzoo")


def compare_references(data_root: str | Path, codes: list[str] | None = None) -> list[Check]:
    """Our value next to every reference value (VIFB published, tang and cddfuse computed, and the survey code's
    values in the project's tests when present), of the ``codes`` given (default: all)."""
    codes = list(CODES) if codes is None else codes
    root = Path(data_root)
    ref = root / "metrics_reference"
    checks: list[Check] = []
    groups: dict[tuple, list[dict]] = {}
    for r in csv.DictReader((ref / "vifb_published.csv").open()):
        groups.setdefault(("vifb", r["method"], r["image"]), []).append(
            {"metric": VIFB_NAMES[r["metric"]], "value": float(r["value"])}
        )
    for r in csv.DictReader((ref / "computed.csv").open()):
        name = RENAMES.get(r["code"], {}).get(r["metric"], r["metric"])
        groups.setdefault((r["code"], r["method"], r["image"]), []).append({"metric": name, "value": float(r["value"])})
    for r in csv.DictReader((ref / "tang2022" / "published.csv").open()):
        groups.setdefault(("tang2022", r["method"], r["image"]), []).append(
            {"metric": r["metric"], "value": float(r["value"])}
        )
    for (code, method, image), rows in groups.items():
        if code not in codes:
            continue
        if code == "tang2022":
            base, name, ext = ref / "tang2022", image, ".png"
            fused = base / "fused" / method / f"{name}{ext}"
        elif code == "vifb":
            base, name, ext = root / "vifb", image, ".jpg"
            fused = base / "fused" / method / f"{name}{ext}"
        else:
            subset, name = image.split("/")
            crop = name.endswith("@crop48")
            name = name.removesuffix("@crop48")
            ext = ".png" if subset == "TNO" or crop else ".jpg"
            full = ref / "tang_tno" if subset == "TNO" else root / "vifb"
            base = ref / "crops48" / subset if crop else full
            fused = base / "fused" / method / f"{name}{ext}"
        ours = _score(
            code, base / "ir" / f"{name}{ext}", base / "vi" / f"{name}{ext}", fused, [r["metric"] for r in rows]
        )
        checks += [Check(code, method, image, r["metric"], r["value"], ours.get(r["metric"])) for r in rows]
    if "ivifzoo" in codes and IVIFZOO_CSV.is_file():
        checks += ivifzoo_checks(root)
    return checks


def check_references(data_root: str | Path | None = None, codes: list[str] | None = None) -> list[Check]:
    """Print, per evaluation code, how many reference values we reproduce and the worst relative error
    (``rgbt experiment references``).

    Raises:
        RgbtError: the reference set is missing, an unknown code, or some value is not reproduced (the first is
            named).
    """
    from fusion.data import resolve_data_root
    from fusion.errors import RgbtError

    unknown = sorted(set(codes or ()) - set(CODES))
    if unknown:
        raise RgbtError(f"--codes: unknown code(s) {', '.join(unknown)}; use some of {', '.join(CODES)}")
    root = resolve_data_root(data_root)
    if not (root / "metrics_reference").is_dir():
        raise RgbtError(f"{root}/metrics_reference not found; pass --data with the folder that holds it")
    checks = compare_references(root, codes)
    codes = list(dict.fromkeys(c.code for c in checks))
    print("| code | values | reproduced | worst relative error | worst value |")
    print("|---|---:|---:|---:|---|")
    for code in codes:
        mine = [c for c in checks if c.code == code]
        worst = max(mine, key=lambda c: c.rel_error)
        where = f"{worst.method} {worst.image} {worst.metric}"
        ok = sum(c.ok for c in mine)
        print(f"| {code} | {len(mine)} | {ok} | {worst.rel_error:.2e} | {where} |")
    bad = [c for c in checks if not c.ok]
    if bad:
        b = bad[0]
        raise RgbtError(
            f"{len(bad)} reference values not reproduced, e.g. {b.code} {b.method} {b.image} {b.metric}: "
            f"published {b.reference}, ours {b.ours}; see docs/metrics.md"
        )
    return checks
