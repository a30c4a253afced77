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
import time
from pathlib import Path

from fusion.errors import RgbtError, short
from fusion.experiment.spec import Spec
from fusion.experiment.work import Work


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
    inputs += [f for m in spec.methods for f in m.fused.values()] + [m.ckpt for m in spec.methods if m.ckpt]
    check_out_apart(out, inputs)
    sizes = []  # everything that can fail per input, before the first write
    for ds in spec.datasets:
        sizes += check_sizes(find_pairs(ds.ir, ds.vi), spec.norm())
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
    preflight(spec, work, sizes)
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


def preflight(spec: Spec, work: Work, sizes: list[tuple[int, int]] = ()) -> None:
    """What could stop the run half-way, checked before its first write: every method it fuses builds with its
    weights (a crafted or broken ``ckpt:`` fails here) and fits in memory on the largest pair (``sizes``: (height,
    width) of the pairs), and every fused image still to score decodes, is 8-bit (or ``norm16`` is set) and has its
    pair's size."""
    from fusion.io import inspect_image
    from fusion.methods import build_method
    from fusion.methods.learned import check_forward_memory

    for m in spec.methods:
        if not m.external:
            model = build_method(m.builds, ckpt=m.ckpt, official=m.official, class_path=m.class_path)
            check_forward_memory(model, list(sizes), m.name, m.official)
    external = {m.name for m in spec.methods if m.external}
    norm = spec.norm()
    for item in work.items:
        to_score = [m for m in work.missing(item)[1] if m in external]
        if not to_score:
            continue
        src = inspect_image(work.pairs[item.dataset][item.pair].ir, norm16=norm)
        for m in to_score:
            f = work.files[item.dataset][m][item.pair]
            info = inspect_image(f, norm16=norm)
            if (info.height, info.width) != (src.height, src.width):
                raise RgbtError(
                    f"{short(f)} is {info.width}x{info.height} but its pair {item.dataset}/{item.pair} is "
                    f"{src.width}x{src.height}; fused images keep their sources' size"
                )


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
