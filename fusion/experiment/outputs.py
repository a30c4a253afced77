"""What an experiment writes once every image is scored, and ``rgbt experiment table`` re-rendering it.

``out/`` holds:

- ``scores.csv``: one row per (dataset, image, method, metric), long format;
- ``published.csv``: the published values used (dataset, method, metric, value, source);
- ``differences.csv``: each cell with both values, and whether they agree at the printed precision;
- ``experiment.json``: the resolved experiment (what ``experiment table`` renders from);
- ``tables/``: ``<dataset>.md``, ``<dataset>.tex`` and ``tables.md``;
- ``samples.png``: IR, visible and every method for a few pairs of each dataset;
- ``wandb/``: the W&B run (offline unless the experiment asks for online).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fusion.csvfile import CsvRow, Finite, Text, read_rows
from fusion.errors import RgbtError, short
from fusion.experiment.spec import Spec
from fusion.experiment.tables import differences, render
from fusion.experiment.work import CSV_COLUMNS, Work, slug
from fusion.io import atomic_write_bytes, csv_bytes

PUBLISHED_COLUMNS = ("dataset", "method", "metric", "value", "source")


def write_tables(spec: Spec, rows: list[tuple], published: list[dict], out: Path) -> dict[str, Path]:
    """Write ``tables/*`` and ``differences.csv``; returns ``{name: path}``."""
    paths = {}
    (out / "tables").mkdir(exist_ok=True)
    for name, text in render(spec, rows, published).items():
        paths[name] = out / "tables" / name
        atomic_write_bytes(paths[name], text.encode())
    diffs = differences(spec, rows, published)
    cols = ("dataset", "method", "metric", "ours", "published", "difference", "same_printed")
    paths["differences.csv"] = out / "differences.csv"
    atomic_write_bytes(paths["differences.csv"], csv_bytes(cols, [[d[c] for c in cols] for d in diffs]))
    return paths


def sample_figure(spec: Spec, work: Work, path: Path) -> Path | None:
    """IR | visible | each method, for the sample pairs of each dataset (``figure: samples``)."""
    from fusion.figure import comparison_figure, save_figure
    from fusion.io import read_image

    rows = []
    for ds in spec.datasets:
        names = list(work.pairs[ds.name])
        chosen = names[: spec.samples] if isinstance(spec.samples, int) else [n for n in spec.samples if n in names]
        for n in chosen:
            p, norm = work.pairs[ds.name][n], spec.norm()
            row = [
                (f"{ds.name}/{n} IR", read_image(p.ir, norm16=norm)[0]),
                ("visible", read_image(p.vis, norm16=norm)[0]),
            ]
            row += [(m, read_image(f[n], norm16=norm)[0]) for m, f in work.files[ds.name].items() if n in f]
            rows.append(row)
    if not rows:
        return None
    height = 180 if max(len(r) for r in rows) <= 10 else 120
    save_figure(comparison_figure(rows, height=height), path)
    return path


def log_wandb(spec: Spec, out: Path, rows: list[tuple], paths: dict[str, Path]) -> Path | None:
    """One W&B run for the experiment: its config, the per-image and mean tables, the rendered tables as an
    artifact and the sample figure. Offline by default (no account, no network); returns the run's folder."""
    if spec.wandb_mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    import wandb

    from fusion.experiment.tables import entries

    run = wandb.init(
        project=spec.wandb_project,
        name=spec.name,
        config=spec.to_dict(),
        dir=str(out),
        mode=spec.wandb_mode,
        job_type="experiment",
        save_code=False,
        reinit="create_new",
        settings=wandb.Settings(silent=True, x_disable_stats=True, disable_git=True),
    )
    means = []
    for ds in spec.datasets:
        for e in entries(spec, ds.name, rows, []):
            means += [[ds.name, e.method, k, e.mean[k], e.std[k], e.n] for k in spec.metrics if k in e.mean]
    log = {
        "scores": wandb.Table(columns=list(CSV_COLUMNS), data=[list(r) for r in rows]),
        "means": wandb.Table(columns=["dataset", "method", "metric", "mean", "std", "pairs"], data=means),
    }
    if "samples.png" in paths:
        log["samples"] = wandb.Image(str(paths["samples.png"]))
    run.log(log)
    art = wandb.Artifact(f"{slug(spec.name)}-tables", type="results")
    for name, p in paths.items():
        if name != "samples.png":
            art.add_file(str(p), name=name)
    run.log_artifact(art)
    folder = Path(run.dir).parent
    run.finish()
    return folder


def write_outputs(spec: Spec, work: Work, out: Path) -> dict[str, Path]:
    """Assemble every output from the saved scores (the run's last step)."""
    rows = work.rows()
    paths = {"scores.csv": out / "scores.csv", "published.csv": out / "published.csv"}
    atomic_write_bytes(paths["scores.csv"], csv_bytes(CSV_COLUMNS, [[*r[:4], repr(r[4]), r[5]] for r in rows]))
    pub = [[r[c] for c in PUBLISHED_COLUMNS] for r in spec.published]
    atomic_write_bytes(paths["published.csv"], csv_bytes(PUBLISHED_COLUMNS, pub))
    # the CSVs' digests let `experiment table --from` refuse a truncated or edited CSV instead of tabling it
    digests = {name: hashlib.sha256(paths[name].read_bytes()).hexdigest() for name in ("scores.csv", "published.csv")}
    record = {**spec.to_dict(), "outputs": digests}
    atomic_write_bytes(out / "experiment.json", json.dumps(record, indent=1).encode())
    paths |= write_tables(spec, rows, spec.published, out)
    fig = sample_figure(spec, work, out / "samples.png") if spec.samples else None
    if fig:
        paths["samples.png"] = fig
    print((out / "tables" / "tables.md").read_text())
    run = log_wandb(spec, out, rows, paths)
    if run:
        print(f"W&B run ({spec.wandb_mode}) in {short(run)}")
    return paths


class ScoreRow(CsvRow):
    """A row of ``scores.csv``: one metric of one method on one image (NaN where the metric is undefined)."""

    dataset: Text
    image: Text
    method: Text
    metric: Text
    value: float
    convention: Text


class PublishedRow(CsvRow):
    """A row of a run's ``published.csv``: a published value and where it came from."""

    dataset: Text
    method: Text
    metric: Text
    value: Finite
    source: str = ""


def read_scores(path: Path) -> list[tuple]:
    """Rows of ``scores.csv`` as written by :func:`write_outputs`, every row complete."""
    rows = read_rows(path, ScoreRow, "run rgbt experiment run again into its folder")
    return [(r.dataset, r.image, r.method, r.metric, r.value, r.convention) for r in rows]


def check_scores(spec: Spec, rows: list[tuple], path: Path) -> None:
    """Refuse scores that cannot be the run's: none, another convention, or a grid with holes (every method of
    a dataset scored on the same images with every metric)."""
    if not rows:
        raise RgbtError(f"{short(path)} holds no scores; run rgbt experiment run again into its folder")
    grid: dict[tuple[str, str], dict[str, set[str]]] = {}
    for ds, image, method, metric, _, convention in rows:
        if convention != spec.convention:
            raise RgbtError(f"{short(path)}: a row of convention {convention}, the run's is {spec.convention}")
        grid.setdefault((ds, method), {}).setdefault(image, set()).add(metric)
    for ds in spec.datasets:
        # every scored image has every metric; the methods the run fused itself cover the same images (external
        # folders may hold fewer: the run notes that)
        cells = {m.name: (grid[(ds.name, m.name)], m.external) for m in spec.methods if (ds.name, m.name) in grid}
        ours = [set(c) for c, external in cells.values() if not external]
        for name, (c, external) in cells.items():
            if not all(set(spec.metrics) <= v for v in c.values()) or (not external and ours and set(c) != ours[0]):
                raise RgbtError(
                    f"{short(path)}: {name} on {ds.name} lacks scores (a truncated file?); run rgbt experiment "
                    "run again into its folder"
                )


def table_from(folder: str | Path) -> dict[str, Path]:
    """Re-render every table of a finished experiment from its saved CSV, without scoring again."""
    out = Path(folder)
    need = [out / "experiment.json", out / "scores.csv", out / "published.csv"]
    for p in need:
        if not p.is_file():
            raise RgbtError(f"{short(p)} is missing; --from takes the --out folder of a finished rgbt experiment run")
    try:
        record = json.loads(need[0].read_text())
        digests = record.pop("outputs", {})
        spec = Spec.from_dict(record)
        for name, digest in digests.items():
            if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
                raise RgbtError(
                    f"{short(out / name)} is not the file the run wrote (truncated or edited); run rgbt experiment "
                    "run again into its folder"
                )
        published = [r.model_dump() for r in read_rows(need[2], PublishedRow, "run rgbt experiment run again")]
        rows = read_scores(need[1])
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise RgbtError(
            f"{short(out)}: its experiment.json, scores.csv or published.csv is damaged ({type(e).__name__}); "
            "run rgbt experiment run again into it"
        ) from None
    check_scores(spec, rows, need[1])
    paths = write_tables(spec, rows, published, out)
    print((out / "tables" / "tables.md").read_text())
    return paths
