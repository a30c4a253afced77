"""Peak memory of ``rgbt fuse`` (by method) and ``rgbt evaluate`` (the standard metric suite) on large pairs.

    python scripts/bench_memory.py [--mp 6,12,24] [--methods average,max,weighted,laplacian,gff,densefuse,ddcgan]
                                   [--evaluate] [--workdir DIR]

``--methods zoo`` runs the model zoo's networks (``rgbt methods``), with the authors' weights where found.

For each size a synthetic colour visible image and a thermal image (smooth noise with edges, 3:2) are written as
PNGs; every command then runs as its own process, and its peak resident memory is read from the kernel when it
exits (its ``VmHWM``), so the Python interpreter, torch and the decoded images are all counted. The images are
made in a child process of their own. Prints a markdown
table of peak MB and seconds. The goal (issue 14) is under 1500 MB for every method and for scoring at 24 MP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_MB = 1500


def synthetic_pair(folder: Path, mp: float, seed: int = 0) -> tuple[Path, Path]:
    """Write ``ir/x.png`` and ``vi/x.png`` of ``mp`` megapixels (3:2) under ``folder``."""
    import cv2
    import numpy as np

    w = int(round((mp * 1e6 * 1.5) ** 0.5 / 8)) * 8
    h = int(round(w / 1.5 / 8)) * 8
    rng = np.random.default_rng(seed)

    def smooth(channels: int) -> np.ndarray:
        small = rng.random((h // 32, w // 32, channels)).astype(np.float32)
        big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
        big[h // 3 : h // 2, w // 4 : w // 3] += 0.4  # a hot block with straight edges
        return (np.clip(big, 0, 1) * 255).astype(np.uint8)

    for sub, img in (("ir", smooth(1)[:, :, 0]), ("vi", smooth(3))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / sub / "x.png"), img)
    return folder / "ir", folder / "vi"


# Runs the rgbt command line in the child and writes the child's own peak (VmHWM, kB) to $RGBT_PEAK_FILE at exit.
_WRAPPER = """
import atexit, os, sys
def _report():
    with open("/proc/self/status") as f:
        hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["RGBT_PEAK_FILE"], "w") as f:
        f.write(hwm)
atexit.register(_report)
from fusion.cli import main
sys.exit(main(sys.argv[1:]))
"""


def peak(args: list[str]) -> tuple[float, float, int]:
    """Run ``rgbt ARGS`` in a child process; return (its peak resident memory in MB, seconds, exit code).

    The child reports its own high-water mark (``VmHWM``): the kernel's figure for a child (``wait4``) also holds
    the parent's resident memory from before the ``exec``, so a large parent (a test runner) would inflate it.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as out:
        env = {**os.environ, "RGBT_PEAK_FILE": out.name}
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        seconds = time.perf_counter() - t
        if proc.returncode:
            print(f"  {' '.join(args[:3])}: exit {proc.returncode}: {proc.stderr.decode()[-300:]}", file=sys.stderr)
        kb = out.read().strip()
    return (int(kb) / 1024 if kb else float("nan")), seconds, proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mp", default="6,12,24", help="sizes in megapixels, comma-separated")
    p.add_argument("--methods", default="average,max,weighted,laplacian,gff,densefuse,ddcgan")
    p.add_argument("--evaluate", action="store_true", help="also score the average-fused image (standard suite)")
    p.add_argument("--workdir", help="where the synthetic images go (default: a temporary folder)")
    p.add_argument("--make", nargs=2, metavar=("DIR", "MP"), help=argparse.SUPPRESS)  # the child that makes images
    a = p.parse_args()
    if a.make:
        synthetic_pair(Path(a.make[0]), float(a.make[1]))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="rgbt_bench_memory_"))
    sizes = [float(s) for s in a.mp.split(",")]
    if a.methods == "zoo":
        from fusion.models.zoo import ZOO

        a.methods = ",".join(m for m in ZOO if m not in ("ifcnn_mean", "ifcnn_sum", "tardal+"))  # same networks
    rows = []
    for mp in sizes:
        folder = work / f"{mp:g}mp"
        subprocess.run([sys.executable, __file__, "--make", str(folder), str(mp)], check=True)
        ir, vi = folder / "ir", folder / "vi"
        w = int(round((mp * 1e6 * 1.5) ** 0.5 / 8)) * 8
        h = int(round(w / 1.5 / 8)) * 8
        for m in a.methods.split(","):
            out = folder / "fused" / m
            shutil.rmtree(out, ignore_errors=True)
            mb, sec, code = peak(["fuse", "--method", m, "--ir", str(ir), "--vis", str(vi), "--out", str(out)])
            rows.append((f"fuse {m}", mp, w, h, mb, sec, code))
            print(f"  {rows[-1]}", file=sys.stderr)
        if a.evaluate:
            fused = work / f"{mp:g}mp" / "fused" / "average"
            csv = work / f"{mp:g}mp" / "scores.csv"
            cmd = ["evaluate", "--fused", str(fused), "--ir", str(ir), "--vis", str(vi), "--csv", str(csv)]
            mb, sec, code = peak(cmd + ["--overwrite"])
            rows.append(("evaluate (standard suite)", mp, w, h, mb, sec, code))
            print(f"  {rows[-1]}", file=sys.stderr)
    print(f"| command | MP | size | peak MB | s | under {LIMIT_MB} MB |\n|---|---:|---|---:|---:|---|")
    for name, mp, w, h, mb, sec, code in rows:
        ok = "failed" if code else ("yes" if mb < LIMIT_MB else "**no**")
        print(f"| {name} | {mp:g} | {w}x{h} | {mb:.0f} | {sec:.1f} | {ok} |")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
