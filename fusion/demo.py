"""``rgbt demo``: fuse the sample sets with every method, score them and draw a comparison figure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from fusion.data import dataset_dir, dataset_pairs
from fusion.errors import RgbtError, short
from fusion.evaluate import collect_fused, evaluate_pairs, markdown_table, write_csv
from fusion.figure import comparison_figure, save_figure
from fusion.fuse import fuse_pairs
from fusion.guard import check_outputs
from fusion.io import read_image
from fusion.methods import CLASSICAL, build_method
from fusion.models.zoo import ZOO, find_weights
from fusion.safeyaml import load_yaml, validation_line

# a dataset folder, method, metric or sample name: not empty, no newline
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\n\r\x00]+$")]


def fast_methods() -> list[str]:
    """The demo's default set: the classical methods and every network that fuses a pair in about 2 s or less on a
    2-core CPU (``fast`` in :mod:`fusion.models.zoo`); networks whose weights are not found are left out then."""
    return list(CLASSICAL) + [name for name, m in ZOO.items() if m.fast]


class DemoConfig(BaseModel):
    """What the demo runs. ``experiments/demo.yaml`` spells out these defaults; a file is checked against these
    types and ranges (strict: no coercion, unknown keys refused) before any work."""

    model_config = ConfigDict(extra="forbid", strict=True)

    datasets: list[Name] = Field(default_factory=lambda: ["tno", "roadscene/test", "msrs"], min_length=1)
    # Every method that fuses a pair in about 2 s or less on a 2-core CPU (fast_methods); ddcgan, swinfusion and
    # cddfuse take 3-20 s per pair there: add them (--methods all) on a GPU.
    methods: list[Name] = Field(default_factory=fast_methods, min_length=1)
    # The set most tables print (CDDFuse, Table 1); None: every metric of the convention.
    metrics: list[Name] | None = Field(
        default_factory=lambda: ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"], min_length=1
    )
    convention: Name = "standard"
    figure_samples: dict[Name, Name] = Field(
        default_factory=lambda: {"tno": "03", "roadscene/test": "FLIR_04593", "msrs": "00055D"}
    )
    figure_height: int = Field(180, ge=32, le=2048)  # pixels of each image in comparison.png
    figure_bits: int = Field(8, ge=4, le=8)  # levels kept per channel in comparison.png (6: a third of the size)
    limit: int | None = Field(None, ge=1)  # at most this many pairs per dataset (None: all)
    skip_missing: bool = True  # leave out networks whose weights are not found (False: fail, as rgbt fuse does)

    @model_validator(mode="after")
    def _known(self) -> DemoConfig:
        from fusion.metrics import CONVENTIONS, metric_names

        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention '{self.convention}'; choose one of: {', '.join(CONVENTIONS)}")
        known = metric_names(self.convention, extra=True)
        bad = [m for m in self.metrics or [] if m not in known]
        if bad:
            raise ValueError(
                f"unknown metric(s) {', '.join(bad)} under '{self.convention}'; choose from {', '.join(known)}"
            )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> DemoConfig:
        raw = load_yaml(path, "demo config") or {}
        if not isinstance(raw, dict):
            raise RgbtError(f"{short(path)}: a demo config is a mapping of settings (see experiments/demo.yaml)")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise RgbtError(validation_line(path, e, "see experiments/demo.yaml")) from None


def _slug(name: str) -> str:
    return name.replace("/", "_")


def run_demo(
    cfg: DemoConfig,
    out: str | Path = "runs/demo",
    data: str | None = None,
    progress: bool = True,
    device: str = "cpu",
    weights: str | None = None,
) -> dict:
    """Run the demo; returns paths of what it wrote and the rows it scored.

    Everything goes under ``out`` (``fused/<dataset>/<method>/*.png``, ``metrics.csv``,
    ``comparison.png``); the demo replaces its own earlier outputs there.
    """
    out = Path(out)
    check_outputs({"--out": out}, [dataset_dir(ds, data) for ds in cfg.datasets], folders=("--out",))
    methods, models = [], {}
    for m in cfg.methods:  # build every method before any work: a bad name or missing weights fail here
        if m in ZOO and cfg.skip_missing and find_weights(m, weights) is None:
            print(f"{m}: no weights found, left out (rgbt methods says where to put the authors' files)", flush=True)
            continue
        models[m] = build_method(m, weights=weights) if m in ZOO else build_method(m)
        methods.append(m)
        if m in ZOO:
            src = getattr(getattr(models[m], "model", models[m]), "source", "?")
            print(f"{m}: {src}", flush=True)
    rows, figure_rows, timings = [], [], {m: 0.0 for m in methods}
    for ds in cfg.datasets:
        pairs = dataset_pairs(dataset_dir(ds, data))[: cfg.limit]
        fused = {}
        for m in methods:
            target = out / "fused" / _slug(ds) / m
            rep = fuse_pairs(models[m], pairs, target, method=m, overwrite=True, progress=progress, device=device)
            timings[m] += rep.seconds
            print(f"{ds}: {m} fused {len(rep.written)} pairs in {rep.seconds:.1f} s", flush=True)  # also when piped
            fused[m] = collect_fused(target)[m]
        ds_rows = evaluate_pairs(
            fused,
            pairs,
            metrics=cfg.metrics,
            convention=cfg.convention,
            image_prefix=f"{ds}/",
            progress=progress,
        )
        print(markdown_table(ds_rows, title=f"{ds} ({len(pairs)} pairs)"), end="\n\n", flush=True)
        rows += ds_rows
        sample = cfg.figure_samples.get(ds)
        pair = next((p for p in pairs if p.name == sample), pairs[0])
        row = [("IR " + pair.name, read_image(pair.ir, grey=True)[0]), ("visible", read_image(pair.vis)[0])]
        row += [(m, read_image(fused[m][pair.name])[0]) for m in methods]
        figure_rows.append(row)
    csv_path = write_csv(rows, out / "metrics.csv", overwrite=True)
    fig_path = out / "comparison.png"
    save_figure(comparison_figure(figure_rows, cfg.figure_height), fig_path, cfg.figure_bits)
    n = len({r.image for r in rows})
    print("fusion time (s, all datasets): " + ", ".join(f"{m} {t:.1f}" for m, t in timings.items()))
    print(
        f"wrote {n} pairs x {len(methods)} methods under {short(out / 'fused')}, "
        f"scores in {short(csv_path)}, figure in {short(fig_path)}"
    )
    return {"csv": csv_path, "figure": fig_path, "rows": rows}


def timed_demo(cfg: DemoConfig, out: str | Path, data: str | None, device: str = "cpu", weights: str | None = None):
    t0 = time.perf_counter()
    run_demo(cfg, out, data, device=device, weights=weights)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
