"""Per-pair time of the full metric suite for each convention, CPU (and GPU when present); a markdown table.

    python scripts/bench_metrics.py [--sizes 640x480,1024x768] [--repeat 3] [--data ../shared/data]
                                    [--allocator both|default|tuned] [--threads torch,rgbt,1]

Sizes default to 640x480 and 1024x768 plus the sizes of the sample sets found under the data root.
CPU rows are measured with glibc's default malloc settings and then with those the ``rgbt`` command line
sets (``fusion.perf.tune_allocator``; once set they cannot be undone, so the default rows come first).
``--threads`` repeats the CPU rows for each thread setting: ``torch`` (torch's default, every core of the
machine), ``rgbt`` (what the ``rgbt`` command sets: ``RGBT_THREADS``, ``OMP_NUM_THREADS`` or this process's CPU
affinity, ``fusion.perf.cpu_threads``) or a number.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusion.data import KNOWN_DATASETS, dataset_pairs, resolve_data_root
from fusion.errors import RgbtError
from fusion.io import image_size
from fusion.metrics import compute_metrics
from fusion.metrics.conventions import CONVENTIONS
from fusion.perf import cpu_threads, tune_allocator


def data_sizes(data: str | None) -> list[tuple[int, int]]:
    try:
        root = resolve_data_root(data)
    except RgbtError:
        return []
    sizes = set()
    for rel in sorted(set(KNOWN_DATASETS.values())):
        if (root / rel).is_dir():
            h, w = image_size(dataset_pairs(root / rel)[0].ir)
            sizes.add((w, h))
    return sorted(sizes)


def bench(conv: str, w: int, h: int, device: str, repeat: int) -> float:
    g = torch.Generator().manual_seed(0)
    f, v, i = ((torch.rand(1, 1, h, w, generator=g) * 255).round().div(255).to(device) for _ in range(3))
    times = []
    for k in range(repeat + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        compute_metrics(f, v, i, convention=conv)
        if device == "cuda":
            torch.cuda.synchronize()
        if k:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="640x480,1024x768")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data")
    p.add_argument("--allocator", choices=["both", "default", "tuned"], default="both")
    p.add_argument("--threads", default="torch,rgbt", help="comma-separated: torch, rgbt or a number")
    a = p.parse_args()
    default_threads = torch.get_num_threads()
    settings = []
    for t in a.threads.split(","):
        n = default_threads if t == "torch" else cpu_threads()[0] if t == "rgbt" else int(t)
        settings.append((f"{t} ({n})" if t in ("torch", "rgbt") else t, n))
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes.split(",")]
    sizes += [s for s in data_sizes(a.data) if s not in sizes]
    modes = ["default", "tuned"] if a.allocator == "both" else [a.allocator]
    runs = [("cpu", m) for m in modes] + ([("cuda", "-")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {default_threads} threads by default; seconds per grey pair, whole suite")
    cols = [f"{c} ({len(CONVENTIONS[c].metrics)})" for c in CONVENTIONS]
    print("| device | malloc | threads | size | " + " | ".join(cols) + " |")
    print("|---|---|---|---|" + "---:|" * len(cols))
    for d, mode in runs:
        if mode == "tuned" and not tune_allocator():
            print("| cpu | tuned | | (not available: needs Linux with glibc) |")
            continue
        for label, n in settings if d == "cpu" else [("-", default_threads)]:
            torch.set_num_threads(n)
            for w, h in sizes:
                cells = [f"{bench(c, w, h, d, a.repeat):.3f}" for c in CONVENTIONS]
                print(f"| {d} | {mode} | {label} | {w}x{h} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
