"""The experiment file: which datasets, methods, metrics and published values make one table.

An experiment file is YAML (see ``docs/experiments.md`` and the presets in ``experiments/tables/``)::

    name: cddfuse_table1
    convention: cddfuse
    metrics: [EN, SD, SF, MI, SCD, VIF, Qabf, SSIM]   # display order; {name: EN, decimals: 3} sets one metric's
    decimals: 2
    datasets:
      - {name: TNO, path: tno}                          # ir/ and vi/ (or ir/ and vis/) inside, or ir: and vi:
    methods:
      - average                                         # a registered method, fused by the experiment
      - {name: densefuse, ckpt: weights/densefuse.pt}   # with its weights (any file ``rgbt fuse --ckpt`` takes)
      - {name: CDDFuse, fused: {TNO: results/tno}}      # images fused elsewhere, per dataset or one folder
      - {fused: vifb/fused}                             # every method folder inside, as ``rgbt evaluate`` reads
    published:
      - {dataset: TNO, method: CDDFuse, EN: 7.12, SD: 46.00}               # inline rows
      - {csv: metrics_reference/vifb_published.csv, dataset: VIFB, rename: {Entropy: EN}}
    table: {std: false, rank: true, formats: [markdown, latex]}
    figure: {samples: 2}                                # or a list of pair names; 0: no figure
    wandb: {mode: offline, project: rgbt-fusion}        # online or disabled
    norm16: percentile:1:99                             # 16-bit images, scaled as rgbt fuse --norm16 scales them

Relative data paths (``path``, ``ir``, ``vi``, ``fused``, ``csv``) are looked up under the data root first
(``--data``, ``$RGBT_DATA``, ``./data``, ``../shared/data``), then taken as given.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fusion.csvfile import CsvRow, Finite, Text, read_rows
from fusion.errors import RgbtError, short
from fusion.experiment.schema import validate
from fusion.guard import child_path
from fusion.safeyaml import load_yaml

FORMATS = ("markdown", "latex")
WANDB_MODES = ("offline", "online", "disabled")


@dataclass(frozen=True)
class Dataset:
    name: str
    ir: str
    vi: str


@dataclass(frozen=True)
class Method:
    """A method of the table: fused by the experiment (``fused`` empty) or read from folders per dataset."""

    name: str
    ckpt: str | None = None
    official: bool = False
    fused: dict[str, str] = field(default_factory=dict)  # dataset -> folder of this method's images
    weights: str = ""  # a learned method's weights: "authors", "ours" or "exported" (tables mark ours)
    class_path: str | None = None  # a network of the user's own (module.Class), fused from ckpt
    method: str | None = None  # the registered method behind a label: (default: name)

    @property
    def external(self) -> bool:
        return bool(self.fused)

    @property
    def builds(self) -> str:
        """The registered method (or user network's name) that fuses this row."""
        return self.method or self.name


@dataclass
class Spec:
    """A validated experiment file; paths are absolute."""

    name: str
    convention: str
    metrics: list[str]
    decimals: dict[str, int]
    datasets: list[Dataset]
    methods: list[Method]
    published: list[dict]  # {dataset, method, metric, value}
    std: bool = False
    rank: bool = True
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    samples: list[str] | int = 2
    wandb_mode: str = "offline"
    wandb_project: str = "rgbt-fusion"
    norm16: str | None = None  # how 16-bit images map to [0, 1] (rgbt fuse --norm16); None: 16-bit is an error

    def norm(self):
        """The parsed ``norm16`` (a :class:`fusion.io.Norm16`) or None."""
        from fusion.io import Norm16

        return Norm16.parse(self.norm16) if self.norm16 else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Spec:
        d = dict(d)
        d["datasets"] = [Dataset(**x) for x in d["datasets"]]
        d["methods"] = [Method(**x) for x in d["methods"]]
        return cls(**d)


def _keys(d: dict, allowed: set[str], where: str, path: Path) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise RgbtError(f"{short(path)}: unknown key '{extra[0]}' in {where}; use {', '.join(sorted(allowed))}")


def _find(value: str, root: Path | None, path: Path, what: str, folder: bool = True) -> str:
    """Resolve a data path: under the data root first, then as given."""
    candidates = ([root / value] if root is not None else []) + [Path(value)]
    for c in candidates:
        if c.is_dir() if folder else c.is_file():
            return str(c.resolve())
    where = f" (looked under {short(root)} and here)" if root is not None else ""
    raise RgbtError(f"{short(path)}: {what} '{value}' not found{where}; fix the path or pass --data")


def _dataset(d: dict | str, root: Path | None, path: Path) -> Dataset:
    from fusion.data import IR_DIRS, VIS_DIRS, _pick

    if isinstance(d, str):
        d = {"name": d, "path": d}
    if not isinstance(d, dict) or "name" not in d:
        raise RgbtError(f"{short(path)}: each dataset needs a name, e.g. {{name: TNO, path: tno}}")
    _keys(d, {"name", "path", "ir", "vi"}, f"dataset {d['name']}", path)
    if "path" in d:
        folder = Path(_find(d["path"], root, path, f"dataset {d['name']}"))
        ir, vi = _pick(folder, IR_DIRS, "infrared"), _pick(folder, VIS_DIRS, "visible")
        return Dataset(str(d["name"]), str(ir), str(vi))
    if "ir" not in d or "vi" not in d:
        raise RgbtError(f"{short(path)}: dataset {d['name']} needs path: or both ir: and vi:")
    return Dataset(
        str(d["name"]), _find(d["ir"], root, path, "infrared folder"), _find(d["vi"], root, path, "visible folder")
    )


def _methods(entry: dict | str, datasets: list[Dataset], root: Path | None, path: Path) -> list[Method]:
    from fusion.data import find_pairs
    from fusion.evaluate import collect_fused
    from fusion.methods import available_methods

    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise RgbtError(f"{short(path)}: a method is a name or a mapping, got {entry!r}")
    _keys(entry, {"name", "label", "ckpt", "official", "fused", "class_path"}, f"method {entry.get('name', '')}", path)
    if entry.get("label") and (entry.get("fused") is not None or entry.get("class_path")):
        raise RgbtError(f"{short(path)}: method {entry.get('name')}: label: renames a registered method; a fused: or "
                        "class_path: method takes its name from name:")  # fmt: skip
    fused = entry.get("fused")
    if entry.get("class_path"):  # a network of the user's own, from its checkpoint
        name = entry["name"]
        if name in available_methods():
            raise RgbtError(f"{short(path)}: method {name} with class_path: takes the name of a registered method; "
                            "choose another name")  # fmt: skip
        if not Path(entry["ckpt"]).is_file():
            raise RgbtError(f"{short(path)}: method {name}: no checkpoint {entry['ckpt']}; train it with rgbt fit")
        return [Method(name, entry["ckpt"], class_path=entry["class_path"])]
    if fused is None:
        name = entry.get("name")
        if name not in available_methods():
            raise RgbtError(
                f"{short(path)}: unknown method '{name}'; use one of {', '.join(available_methods())} "
                "or give fused: a folder of its images"
            )
        label = entry.get("label") or name
        if label != name and label in available_methods():
            raise RgbtError(f"{short(path)}: method {name}: label {label} is another registered method's name")
        weights = _weights(name, entry, path)
        return [Method(label, entry.get("ckpt"), bool(entry.get("official", False)), weights=weights, method=name)]
    per_ds = fused if isinstance(fused, dict) else {ds.name: fused for ds in datasets}
    unknown = set(per_ds) - {ds.name for ds in datasets}
    if unknown:
        raise RgbtError(f"{short(path)}: fused: names dataset '{sorted(unknown)[0]}', which the file does not list")
    found: dict[str, dict[str, str]] = {}  # method -> dataset -> folder
    for ds in datasets:
        if ds.name not in per_ds:
            continue
        folder = Path(_find(per_ds[ds.name], root, path, "fused folder"))
        names = [p.name for p in find_pairs(ds.ir, ds.vi)]
        if "name" in entry:  # one method: its folder, or its sub-folder of a folder of methods
            method_files(folder, entry["name"], names)  # fails with one line if none of its images are there
            found.setdefault(entry["name"], {})[ds.name] = str(folder)
        else:
            for m in collect_fused(folder, names):
                found.setdefault(m, {})[ds.name] = str(folder)
    return [Method(m, fused=f) for m, f in found.items()]


def _weights(name: str, entry: dict, path: Path) -> str:
    """Which weights a learned method will fuse with ("" for a classical one); missing weights fail here, before any
    work, with the line ``rgbt fuse`` would print."""
    from fusion.methods import LEARNED
    from fusion.models import read_checkpoint
    from fusion.models.zoo import require_weights

    if name not in LEARNED:
        return ""
    ckpt = entry.get("ckpt")
    if not ckpt:
        return require_weights(name).kind
    p = Path(ckpt)
    if p.is_dir():
        return "authors"
    try:
        obj = read_checkpoint(p, "fix ckpt:")
    except RgbtError as e:
        raise RgbtError(f"{short(path)}: method {name}: {e}") from None
    return "ours" if isinstance(obj, dict) and "fusion_model" in obj else "authors"


def method_files(folder: str | Path, method: str, names: list[str]) -> dict[str, Path]:
    """``{pair name: fused image}`` of ``method`` in ``folder``: in any layout ``rgbt evaluate`` reads (the
    method's own folder, a folder of method folders, or VIFB's flat ``<image>_<method>`` names)."""
    from fusion.evaluate import collect_fused

    folder = Path(folder)
    layout = collect_fused(folder, names)
    if method in layout:
        return layout[method]
    if len(layout) == 1 and not (folder / method).is_dir():  # the folder is this method's, whatever its name
        return next(iter(layout.values()))
    raise RgbtError(f"{short(folder)} holds no images of {method}; point fused: at that method's folder")


class PublishedCsvRow(CsvRow):
    """One published value: a method's mean of one metric on one dataset (or one image, averaged later)."""

    method: Text
    metric: Text
    value: Finite
    dataset: str = ""


def _published_csv(f: Path, dataset: str | None) -> list[tuple[str, str, str, float]]:
    """Rows ``(dataset, method, metric, value)`` of a published CSV (columns ``method,metric,value`` and
    ``dataset`` unless the entry names it), every row complete and every value a finite number."""
    fix = "columns method,metric,value (and dataset, unless the published entry names it), a finite number each row"
    rows = read_rows(f, PublishedCsvRow, fix)
    if not dataset:
        with open(f, newline="", encoding="utf-8") as fh:
            if "dataset" not in (next(csv.reader(fh), None) or []):
                raise RgbtError(f"{short(f)}: no dataset column; add dataset: to its published entry or the column")
    out = []
    for i, r in enumerate(rows, start=2):
        if not (r.dataset or dataset):
            raise RgbtError(f"{short(f)}, line {i}: no dataset; fill the cell or add dataset: to its published entry")
        out.append((r.dataset or dataset, r.method, r.metric, r.value))
    return out


def _published(entries: list, datasets: list[Dataset], root: Path | None, path: Path) -> list[dict]:
    """Published values as ``{dataset, method, metric, value}`` rows: inline, or read from a CSV with columns
    ``dataset,method,metric,value`` (or ``image`` instead of ``dataset``: per-image values, averaged here)."""
    names = {ds.name for ds in datasets}
    rows: list[dict] = []
    for e in entries or []:
        if not isinstance(e, dict):
            raise RgbtError(f"{short(path)}: published entries are mappings, got {e!r}")
        if "csv" in e:
            _keys(e, {"csv", "dataset", "rename", "methods"}, "published csv", path)
            f = _find(e["csv"], root, path, "published csv", folder=False)
            rename = e.get("rename") or {}
            acc: dict[tuple, list[float]] = {}
            for ds, method, metric, value in _published_csv(Path(f), e.get("dataset")):
                if e.get("methods") and method not in e["methods"]:
                    continue
                acc.setdefault((ds, method, rename.get(metric, metric)), []).append(value)
            rows += [
                {"dataset": k[0], "method": k[1], "metric": k[2], "value": sum(v) / len(v), "source": short(f)}
                for k, v in acc.items()
            ]
        else:
            if "dataset" not in e or "method" not in e:
                raise RgbtError(f"{short(path)}: an inline published row needs dataset: and method:")
            src = e.get("source", "inline")
            for k, v in e.items():
                if k not in ("dataset", "method", "source"):
                    rows.append(
                        {"dataset": e["dataset"], "method": e["method"], "metric": k, "value": float(v), "source": src}
                    )
    unknown = sorted({r["dataset"] for r in rows} - names)
    if unknown:
        raise RgbtError(f"{short(path)}: published values for dataset '{unknown[0]}', which the file does not list")
    return rows


def load_spec(path: str | Path, data: str | Path | None = None) -> Spec:
    """Read and check an experiment file; every problem is one line naming the file and the fix."""
    from fusion.data import resolve_data_root
    from fusion.metrics import metric_names
    from fusion.metrics.conventions import CONVENTIONS

    path = Path(path)
    if not path.is_file():
        raise RgbtError(f"{short(path)}: no such experiment file; see experiments/tables/ for examples")
    raw = validate(load_yaml(path, "experiment file"), path)  # types, ranges and keys (fusion.experiment.schema)
    try:
        root = resolve_data_root(data)
    except RgbtError:
        root = None  # every path must then be given as it is
    convention = raw.get("convention", "standard")
    if convention not in CONVENTIONS:
        raise RgbtError(f"{short(path)}: unknown convention '{convention}'; use one of {', '.join(CONVENTIONS)}")
    decimals = int(raw.get("decimals", 4))
    metrics, dec = [], {}
    known = metric_names(convention, extra=True)
    for m in raw.get("metrics") or metric_names(convention):
        name, d = (m.get("name"), int(m.get("decimals", decimals))) if isinstance(m, dict) else (str(m), decimals)
        if name not in known:
            raise RgbtError(f"{short(path)}: metric '{name}' is not in the {convention} convention; use {known}")
        metrics.append(name)
        dec[name] = d
    datasets = [_dataset(d, root, path) for d in raw["datasets"]]
    if len({d.name for d in datasets}) != len(datasets):
        raise RgbtError(f"{short(path)}: two datasets share a name; give each its own name:")
    methods = [m for e in raw["methods"] for m in _methods(e, datasets, root, path)]
    if len({m.name for m in methods}) != len(methods):
        raise RgbtError(f"{short(path)}: two methods share a name; give each its own name:")
    table = raw.get("table") or {}
    _keys(table, {"std", "rank", "formats"}, "table", path)
    formats = list(table.get("formats", FORMATS))
    if set(formats) - set(FORMATS):
        raise RgbtError(f"{short(path)}: table formats are {', '.join(FORMATS)}; got {formats}")
    fig = raw.get("figure") or {}
    _keys(fig, {"samples"}, "figure", path)
    wb = raw.get("wandb") or {}
    _keys(wb, {"mode", "project"}, "wandb", path)
    if wb.get("mode", "offline") not in WANDB_MODES:
        raise RgbtError(f"{short(path)}: wandb mode is one of {', '.join(WANDB_MODES)}")
    name = raw.get("name", path.stem)
    child_path(Path("runs") / "experiments", name, f"{short(path)}: name:")  # a plain name: it names the run's folder
    spec = Spec(
        name=str(name),
        convention=convention,
        metrics=metrics,
        decimals=dec,
        datasets=datasets,
        methods=methods,
        published=_published(raw.get("published"), datasets, root, path),
        std=bool(table.get("std", False)),
        rank=bool(table.get("rank", True)),
        formats=formats,
        samples=fig.get("samples", 2),
        wandb_mode=wb.get("mode", "offline"),
        wandb_project=wb.get("project", "rgbt-fusion"),
        norm16=None if raw.get("norm16") is None else str(raw["norm16"]),
    )
    try:
        spec.norm()
    except RgbtError as e:
        raise RgbtError(f"{short(path)}: norm16: {e}") from None
    return spec
