"""What an experiment must produce and where each piece lives: one :class:`Item` per (dataset, pair), fused PNGs
under ``out/fused`` and score files under ``out/scores``, each written atomically and skipped when present.

A leaf of :mod:`fusion.experiment`: ``run``, ``worker``, ``outputs`` and ``tables`` import it, it imports none of
them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fusion.errors import RgbtError, short
from fusion.experiment.spec import Spec, method_files

CSV_COLUMNS = ("dataset", "image", "method", "metric", "value", "convention")


def slug(name: str) -> str:
    """A file-system-safe folder name for a dataset or method name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "_"


@dataclass(frozen=True)
class Item:
    dataset: str
    pair: str


class Work:
    """What the experiment must produce, and where each piece lives on disk (picklable, for spawned workers)."""

    def __init__(self, spec: Spec, out: Path):
        from fusion.data import find_pairs

        self.spec, self.out = spec, Path(out)
        self.pairs = {ds.name: {p.name: p for p in find_pairs(ds.ir, ds.vi)} for ds in spec.datasets}
        # dataset -> method -> pair -> fused image: external folders as found, our own under out/fused
        self.files: dict[str, dict[str, dict[str, Path]]] = {}
        for ds in spec.datasets:
            names = list(self.pairs[ds.name])
            per = self.files[ds.name] = {}
            for m in spec.methods:
                if not m.external:
                    per[m.name] = {n: self.fused_path(ds.name, m.name, n) for n in names}
                elif ds.name in m.fused:
                    per[m.name] = files = method_files(m.fused[ds.name], m.name, names)
                    orphans = sorted(set(files) - set(names))
                    if orphans:
                        raise RgbtError(
                            f"{short(files[orphans[0]])} has no source pair in {ds.name} ({len(orphans)} such "
                            "files); check the dataset's folders or remove it"
                        )
                    if len(files) < len(names):
                        print(f"note: {m.name} has fused images of {len(files)} of the {len(names)} pairs of {ds.name}")
        self.items = [Item(ds, n) for ds, pairs in self.pairs.items() for n in pairs]

    def fused_path(self, dataset: str, method: str, pair: str) -> Path:
        return self.out / "fused" / slug(dataset) / slug(method) / f"{pair}.png"

    def cache_path(self, dataset: str, method: str, pair: str) -> Path:
        return self.out / "scores" / slug(dataset) / slug(method) / f"{pair}.json"

    def cached(self, dataset: str, method: str, pair: str) -> dict[str, float] | None:
        """The saved scores of one fused image, or None when missing or stale (another convention, fewer
        metrics, or a fused image changed since)."""
        path = self.cache_path(dataset, method, pair)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        f = Path(rec.get("fused", ""))
        st = f.stat() if f.is_file() else None
        fresh = st is not None and (st.st_mtime_ns, st.st_size) == (rec.get("fused_mtime_ns"), rec.get("fused_size"))
        if rec.get("convention") != self.spec.convention or not fresh or set(self.spec.metrics) - set(rec["scores"]):
            return None
        return rec["scores"]

    def missing(self, item: Item) -> tuple[list[str], list[str]]:
        """Methods still to fuse and still to score for one item."""
        methods = self.files[item.dataset]
        to_fuse = [m.name for m in self.spec.methods if not m.external and not methods[m.name][item.pair].exists()]
        to_score = [
            m for m, files in methods.items() if item.pair in files and self.cached(item.dataset, m, item.pair) is None
        ]
        return to_fuse, to_score

    def do(self, item: Item, models: dict, device: torch.device) -> str:
        """Fuse and score what one item still lacks; returns a one-line account."""
        from fusion.evaluate import score_pair
        from fusion.fuse import fuse_image
        from fusion.io import atomic_write_bytes
        from fusion.methods import build_method

        t0 = time.perf_counter()
        norm16 = self.spec.norm()
        to_fuse, to_score = self.missing(item)
        pair = self.pairs[item.dataset][item.pair]
        spec_methods = {m.name: m for m in self.spec.methods}
        for name in to_fuse:
            m = spec_methods[name]
            if name not in models:  # built once per process, on its device
                model = build_method(m.builds, ckpt=m.ckpt, official=m.official, class_path=m.class_path)
                models[name] = model.to(device).eval()
            target = self.fused_path(item.dataset, name, item.pair)
            target.parent.mkdir(parents=True, exist_ok=True)
            fuse_image(models[name], pair, target, method=name, device=device, official=m.official, norm16=norm16)
        files = {m: {item.pair: self.files[item.dataset][m][item.pair]} for m in to_score}
        for method, scores in score_pair(pair, files, self.spec.metrics, self.spec.convention, norm16).items():
            f = files[method][item.pair]
            rec = {
                "convention": self.spec.convention,
                "fused": str(f),
                "fused_mtime_ns": f.stat().st_mtime_ns,
                "fused_size": f.stat().st_size,
                "scores": scores,
            }
            path = self.cache_path(item.dataset, method, item.pair)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(rec, indent=1).encode())
        took = time.perf_counter() - t0
        return f"{item.dataset}/{item.pair}: fused {len(to_fuse)}, scored {len(to_score)} methods ({took:.1f} s)"

    def rows(self) -> list[tuple]:
        """Every score as a CSV row, in the experiment's order (dataset, method, image, metric)."""
        out = []
        for ds in self.spec.datasets:
            for method, files in self.files[ds.name].items():
                for pair in sorted(files):
                    scores = self.cached(ds.name, method, pair)
                    if scores is None:
                        raise RgbtError(f"{ds.name}/{pair} of {method} was not scored; run the experiment again")
                    out += [(ds.name, pair, method, k, scores[k], self.spec.convention) for k in self.spec.metrics]
        return out
