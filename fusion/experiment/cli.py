"""``rgbt experiment run|table|references``: paper tables from one experiment file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fusion.errors import RgbtError
from fusion.guard import child_path


def cmd_experiment(a: argparse.Namespace) -> None:
    if a.action == "run":
        from fusion.experiment.run import default_devices, run_experiment
        from fusion.experiment.spec import load_spec

        spec = load_spec(a.file, a.data)
        if a.wandb:
            spec.wandb_mode = a.wandb
        if a.norm16:
            from fusion.io import Norm16

            Norm16.parse(a.norm16)  # one line if it is malformed
            spec.norm16 = a.norm16
        accelerator = a.accelerator
        if accelerator == "auto":
            import torch

            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
        devices = a.devices if a.devices is not None else default_devices(accelerator)
        if devices < 1 or a.num_nodes < 1:
            raise RgbtError("--devices and --num-nodes take a positive number of processes")
        cluster = ("MASTER_ADDR", "SLURM_JOB_ID", "LSB_JOBID", "TORCHELASTIC_RUN_ID")
        if a.num_nodes > 1 and not any(v in os.environ for v in cluster):
            raise RgbtError(
                f"--num-nodes {a.num_nodes}: start the command on every node with MASTER_ADDR, MASTER_PORT and "
                "NODE_RANK set (or under SLURM or torchrun), and --out on a shared file system"
            )
        out = a.out or str(child_path(Path("runs") / "experiments", spec.name, "experiment name"))
        run_experiment(spec, out, accelerator=accelerator, devices=devices, num_nodes=a.num_nodes)
    elif a.action == "table":
        from fusion.experiment.outputs import table_from

        table_from(a.from_)
    else:
        from fusion.metrics.reference import check_references

        check_references(a.data, a.codes.split(",") if a.codes else None)


def add_parser(sub) -> None:
    """Add ``experiment`` to the ``rgbt`` sub-command parsers."""
    x = sub.add_parser(
        "experiment",
        help="reproduce a paper table: fuse, score, tables (markdown, LaTeX), figure, W&B (see docs/experiments.md)",
    )
    act = x.add_subparsers(dest="action", required=True, parser_class=type(x))
    r = act.add_parser("run", help="fuse what is missing, score, write CSV, tables, figure and the W&B run")
    r.add_argument("file", help="experiment YAML, e.g. experiments/tables/vifb.yaml")
    r.add_argument("--out", help="output folder (default: runs/experiments/<name>); a rerun resumes it")
    r.add_argument("--data", help="data root (default: $RGBT_DATA, ./data, ../shared/data)")
    r.add_argument(
        "--accelerator", default="auto", choices=("auto", "cpu", "gpu"), help="where to fuse (default: GPU if any)"
    )
    r.add_argument(
        "--devices", type=int, help="processes per node (default: one per usable CPU on the CPU, one GPU on a GPU)"
    )
    r.add_argument("--num-nodes", type=int, default=1, help="nodes (Lightning's multi-node ddp; default 1)")
    r.add_argument("--wandb", choices=("offline", "online", "disabled"), help="override the file's wandb mode")
    r.add_argument(
        "--norm16", help="scaling of 16-bit images (as rgbt fuse): fixed, fixed:LO:HI, minmax, percentile:LO:HI"
    )
    t = act.add_parser("table", help="re-render the tables of a finished run from its saved CSV (no scoring)")
    t.add_argument("--from", dest="from_", required=True, help="the --out folder of an experiment run")
    c = act.add_parser("references", help="check every metric convention against the published reference values")
    c.add_argument("--data", help="data root holding metrics_reference/ (default: $RGBT_DATA, ./data, ../shared/data)")
    c.add_argument(
        "--codes", help="comma-separated codes to check (default all: vifb, tang, cddfuse, tang2022, ivifzoo)"
    )
    x.set_defaults(func=cmd_experiment)
