"""Peak memory of ``rgbt fuse`` (by method) and ``rgbt evaluate`` (the standard metric suite) on large pairs.

    python scripts/bench_memory.py [--mp 6,12,24] [--methods average,max,weighted,laplacian,gff,densefuse,ddcgan]
                                   [--evaluate] [--workdir DIR]

For each size a synthetic colour visible image and a thermal image (smooth noise with edges, 3:2) are written as
PNGs; every command then runs as its own process, and its peak resident memory is read from the kernel when it
exits (``os.wait4``), so the Python interpreter, torch and the decoded images are all counted. (Linux carries a
process's peak from before its ``exec`` into the child's figure, so this script imports nothing heavy and makes
the images in a child process of their own.) Prints a markdown
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


def peak(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (peak RSS in MB, seconds, exit code)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode:
        print(f"  {' '.join(cmd[2:5])}: exit {proc.returncode}: {err[-300:]}", file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - t, proc.returncode


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
    rgbt = [sys.executable, "-m", "fusion.cli"]
    sizes = [float(s) for s in a.mp.split(",")]
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
            mb, sec, code = peak(rgbt + ["fuse", "--method", m, "--ir", str(ir), "--vis", str(vi), "--out", str(out)])
            rows.append((f"fuse {m}", mp, w, h, mb, sec, code))
            print(f"  {rows[-1]}", file=sys.stderr)
        if a.evaluate:
            fused = work / f"{mp:g}mp" / "fused" / "average"
            csv = work / f"{mp:g}mp" / "scores.csv"
            cmd = ["evaluate", "--fused", str(fused), "--ir", str(ir), "--vis", str(vi), "--csv", str(csv)]
            mb, sec, code = peak(rgbt + cmd + ["--overwrite"])
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
