"""``rgbt experiment run``: fuse what is missing, score every image, write the CSV, tables, figure and W&B run.

The work is one item per (dataset, pair). An item fuses the pair with every method the experiment fuses itself
(through :func:`fusion.fuse.fuse_image`, the code of ``rgbt fuse``) and scores every method's image of it
(through :func:`fusion.evaluate.score_pair`, the code of ``rgbt evaluate``). Each fused PNG and each score file
is written atomically and skipped when present, so a killed run resumes where it stopped, and the outputs are
assembled from those files only once every item is done.

Items are spread over processes, GPUs or nodes by a Lightning predict loop (a distributed sampler hands each
process its share). Each process scores with one intra-op thread: torch's parallel reductions add in an order
that depends on the thread count, and the scores must not depend on how the work was split.
"""

from __future__ import annotations

import contextlib
import json
import os
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
                models[name] = build_method(name, ckpt=m.ckpt, official=m.official).to(device).eval()
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


def run_experiment(
    spec: Spec,
    out: str | Path,
    *,
    accelerator: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
) -> dict:
    """Run (or resume) an experiment into ``out`` and write every output; returns their paths."""
    from fusion.data import find_pairs
    from fusion.experiment.outputs import write_outputs
    from fusion.fuse import check_out_apart, check_sizes, claim_folder, prepare_out_dir

    inputs = [p for ds in spec.datasets for p in (ds.ir, ds.vi)]
    inputs += [f for m in spec.methods for f in m.fused.values()]
    check_out_apart(out, inputs)
    for ds in spec.datasets:  # everything that can fail per input, before the first write
        check_sizes(find_pairs(ds.ir, ds.vi), spec.norm())
    record = Path(out) / "experiment.json"
    if record.is_file():  # a finished run's fused images were scaled with its norm16: mixing would be silent
        try:
            before = json.loads(record.read_text()).get("norm16")
        except (ValueError, AttributeError, UnicodeDecodeError):  # unreadable: rewritten at the end of this run
            before = spec.norm16
        if before != spec.norm16:
            raise RgbtError(
                f"{short(out)} holds a run with norm16 {before}, this one asks for {spec.norm16}; choose another --out"
            )
    work = Work(spec, Path(out))  # finds every input (and fails on an unpaired one) before anything is written
    out = prepare_out_dir(out)
    first = os.environ.get("NODE_RANK", "0") == "0" and "LOCAL_RANK" not in os.environ
    with claim_folder(out) if first else contextlib.nullcontext():
        for tmp in out.rglob(".*.tmp"):  # a killed run's half-written files
            tmp.unlink(missing_ok=True)
        t0 = time.perf_counter()
        todo = [i for i, item in enumerate(work.items) if any(work.missing(item))]
        finished = len(work.items) - len(todo)
        print(f"{spec.name}: {len(work.items)} pairs, {finished} already done, {len(todo)} to do", flush=True)
        if todo:
            from fusion.experiment.worker import run_items

            run_items(work, todo, accelerator, devices, num_nodes)
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
            return {}
        paths = write_outputs(spec, work, out)
        print(f"{spec.name}: done in {time.perf_counter() - t0:.1f} s; tables in {short(out / 'tables')}")
        return paths


WORKER_BYTES = 4 << 30  # a CPU worker fusing with the heaviest network on 768x576 pairs peaked at 4.0 GB


def default_devices(accelerator: str) -> int:
    """Processes per node when ``--devices`` is not given: on the CPU one per usable CPU, but no more than the
    available memory holds at :data:`WORKER_BYTES` each; one GPU otherwise."""
    from fusion.perf import cpu_threads
    from fusion.train.memory import available_bytes

    if accelerator != "cpu":
        return 1
    avail = available_bytes()
    by_memory = max(1, avail // WORKER_BYTES) if avail else 1
    return max(1, min(cpu_threads()[0], by_memory))
