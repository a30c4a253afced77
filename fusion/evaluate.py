"""Score folders of fused images against their sources (``rgbt evaluate``).

A fused folder is either a folder of images (the method is the folder's name) or a folder of method
folders (one method per sub-folder). Fused images pair with the sources by file stem.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fusion.csvfile import CsvRow, Text, read_rows
from fusion.data import Pair, load_pair
from fusion.errors import RgbtError, short
from fusion.io import IMAGE_EXTENSIONS, Norm16, atomic_write_bytes, csv_bytes, read_image
from fusion.metrics import compute_metrics, higher_is_better, metric_names
from fusion.metrics.streaming import STREAM_PIXELS, STREAMED, stream_standard

CSV_COLUMNS = ("image", "method", "metric", "value", "convention")


@dataclass(frozen=True)
class Row:
    """One value of the long-format results table."""

    image: str
    method: str
    metric: str
    value: float
    convention: str


def _image_files(folder: Path) -> dict[str, Path]:
    return {
        f.stem: f
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
    }


def collect_fused(fused: str | Path, pair_names: list[str] | None = None) -> dict[str, dict[str, Path]]:
    """``{method: {image stem: path}}`` for one of three layouts.

    - a folder of images named like the pairs: one method, the folder's name;
    - a folder of method folders: one method per sub-folder;
    - VIFB's flat layout, ``<image>_<METHOD>.<ext>`` in one folder (recognised when ``pair_names`` is
      given and every file name starts with a pair name and an underscore).
    """
    fused = Path(fused)
    if not fused.is_dir():
        raise RgbtError(f"{short(fused)}: not a folder of fused images; check --fused")
    direct = _image_files(fused)
    if direct and pair_names:
        names = set(pair_names)
        by_method: dict[str, dict[str, Path]] = {}
        for stem, path in direct.items():
            if stem in names:
                break
            # Longest pair name that prefixes the stem: image names may contain underscores themselves.
            owner = max((n for n in names if stem.startswith(n + "_")), key=len, default=None)
            if owner is None:
                break
            by_method.setdefault(stem[len(owner) + 1 :], {})[owner] = path
        else:
            return dict(sorted(by_method.items()))
    methods = {d.name: _image_files(d) for d in sorted(fused.iterdir()) if d.is_dir()}
    methods = {m: files for m, files in methods.items() if files}
    if direct and methods:  # which is it: one method's images, or one folder per method?
        stray = short(next(iter(direct.values())))
        raise RgbtError(
            f"{short(fused)} holds both images ({stray} ...) and method folders ({', '.join(list(methods)[:3])}); "
            "move the loose images into a folder of their own, or point --fused at one method's folder"
        )
    if direct:
        return {fused.name: direct}
    if not methods:
        raise RgbtError(f"{short(fused)}: no fused images, neither directly nor in method sub-folders")
    return methods


def score_pair(
    pair: Pair,
    fused: dict[str, dict[str, Path]],
    names: list[str],
    convention: str,
    norm16: Norm16 | None = None,
) -> dict[str, dict[str, float]]:
    """Scores ``{method: {metric: value}}`` of every method's fused image of ``pair`` (methods without one are
    left out). The sources are decoded once for all methods; ``rgbt evaluate`` and ``rgbt experiment`` score
    through this.

    Raises:
        RgbtError: a fused image of another size than its sources, or an unreadable file.
    """
    # Sources keep their channels: the vifb convention scores colour channel by channel. 8-bit images wait as
    # uint8: a large pair under the standard convention is scored in strips (fusion.metrics.streaming).
    vis, ir = load_pair(pair, ir_grey=False, norm16=norm16, keep_uint8=True)
    stream = convention == "standard" and ir.shape[-2] * ir.shape[-1] >= STREAM_PIXELS
    streamed = [n for n in names if n in STREAMED] if stream else []
    rest = [n for n in names if n not in streamed]
    out = {}
    for method, files in fused.items():
        if pair.name not in files:
            continue
        f, _ = read_image(files[pair.name], norm16=norm16, keep_uint8=True)
        if f.shape[-2:] != ir.shape[-2:]:
            raise RgbtError(
                f"{short(files[pair.name])} is {f.shape[-1]}x{f.shape[-2]} but its sources are "
                f"{ir.shape[-1]}x{ir.shape[-2]}; fused images must keep the source size"
            )
        values = stream_standard(f, vis, ir, streamed) if streamed else {}
        if rest:
            whole = compute_metrics(_float(f), _float(vis), _float(ir), rest, convention)
            values |= {m: float(v[0]) for m, v in whole.items()}
        out[method] = {m: values[m] for m in names}
    return out


def _float(x: torch.Tensor) -> torch.Tensor:
    """An image as read_image's float path gives it (8-bit levels / 255)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def evaluate_pairs(
    fused: dict[str, dict[str, Path]],
    pairs: list[Pair],
    *,
    metrics: list[str] | None = None,
    convention: str = "standard",
    image_prefix: str = "",
    progress: bool = True,
    norm16: Norm16 | None = None,
) -> list[Row]:
    """Score each method's fused images against the pairs with the same stem.

    ``norm16`` maps 16-bit fused images and sources to [0, 1] (as ``rgbt fuse --norm16``); without it a 16-bit
    file is an error that says so.

    Raises:
        RgbtError: a fused image without a source pair, a size mismatch, or an unreadable file.
    """
    by_name = {p.name: p for p in pairs}
    names = metric_names(convention) if metrics is None else metrics
    for method, files in fused.items():
        orphans = sorted(set(files) - set(by_name))
        if orphans:
            raise RgbtError(
                f"{short(files[orphans[0]])} has no source pair with the same name "
                f"({len(orphans)} such files); check --ir/--vis or remove it"
            )
        missing = len(by_name) - len(files)
        if missing:
            print(
                f"note: {method}: {missing} of {len(by_name)} pairs have no fused image; scoring the rest",
                file=sys.stderr,
            )
    rows: list[Row] = []
    # Pairs outside, methods inside: each source pair is decoded once however many methods there are.
    wanted = [p for p in pairs if any(p.name in files for files in fused.values())]
    for pair in tqdm(wanted, desc="score", unit="pair", disable=None if progress else True, leave=False):
        for method, values in score_pair(pair, fused, names, convention, norm16).items():
            rows += [Row(image_prefix + pair.name, method, m, v, convention) for m, v in values.items()]
    _note_undefined(rows)
    # Group by method, then image, as a reader expects.
    order = {m: i for i, m in enumerate(fused)}
    return sorted(rows, key=lambda r: order[r.method])


def _note_undefined(rows: list[Row]) -> None:
    """One line per method and metric with NaN values: where a published code's definition is undefined (0/0 on a
    flat image, the survey code's MS-SSIM on a side of 160 pixels or less), its value is NaN, not a stand-in."""
    nan: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r.value != r.value:
            nan.setdefault((r.method, r.metric), []).append(r.image)
    for (method, metric), images in nan.items():
        print(
            f"note: {method} {metric} is undefined (NaN) on {len(images)} image(s), e.g. {images[0]}, under the "
            f"{rows[0].convention} convention (a flat image, or an image too small for it; docs/metrics.md)",
            file=sys.stderr,
        )


def write_csv(rows: list[Row], path: str | Path, overwrite: bool = False) -> Path:
    """Write rows in long format (``image,method,metric,value,convention``), atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RgbtError(f"{short(path)} exists; pass --overwrite to replace it or choose another --csv")
    atomic_write_bytes(
        path, csv_bytes(CSV_COLUMNS, ((r.image, r.method, r.metric, repr(r.value), r.convention) for r in rows))
    )
    return path


class CsvScore(CsvRow):
    """A row of an ``rgbt evaluate --csv`` file (NaN where the metric is undefined)."""

    image: Text
    method: Text
    metric: Text
    value: float
    convention: Text


def read_csv(path: str | Path) -> list[Row]:
    """Read rows written by :func:`write_csv`, every row complete."""
    rows = read_rows(path, CsvScore, "write it with rgbt evaluate --csv")
    return [Row(r.image, r.method, r.metric, r.value, r.convention) for r in rows]


def summarize(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Mean value per method and metric: ``{method: {metric: mean}}``."""
    acc: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        acc.setdefault(r.method, {}).setdefault(r.metric, []).append(r.value)
    return {m: {k: float(torch.tensor(v, dtype=torch.float64).mean()) for k, v in d.items()} for m, d in acc.items()}


def markdown_table(rows: list[Row], title: str | None = None) -> str:
    """Means per method (rows) and metric (columns) as a markdown table, best value in bold."""
    if not rows:
        return "(no results)"
    means = summarize(rows)
    convention = rows[0].convention
    metrics = list(dict.fromkeys(r.metric for r in rows))
    counts = {m: len({r.image for r in rows if r.method == m}) for m in means}
    arrows = {k: "↑" if higher_is_better(k, convention) else "↓" for k in metrics}
    best = {}
    for k in metrics:
        vals = [means[m][k] for m in means if k in means[m]]
        best[k] = max(vals) if arrows[k] == "↑" else min(vals)
    lines = []
    if title:
        lines.append(f"### {title}")
    lines.append(f"| method (n) | {' | '.join(k + arrows[k] for k in metrics)} |")
    lines.append("|---|" + "---:|" * len(metrics))
    for m, vals in means.items():
        cells = []
        for k in metrics:
            v = vals.get(k, float("nan"))
            s = f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
            cells.append(f"**{s}**" if v == best[k] and len(means) > 1 else s)
        lines.append(f"| {m} ({counts[m]}) | {' | '.join(cells)} |")
    lines.append(f"convention: {convention}")
    return "\n".join(lines)
