"""Shared fixtures: synthetic pairs on disk, and the one fixture that finds the real data."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion.data import resolve_data_root
from fusion.errors import RgbtError


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data root; skipped when absent, but a failure when CI is set (CI must see the data)."""
    try:
        root = resolve_data_root()
    except RgbtError:
        root = None
    if root is None or not (root / "tno").is_dir():
        msg = "real data not found: set RGBT_DATA or put ../shared/data beside the project (data/README.md)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def synth_pair(h: int, w: int, seed: int, colour: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random scene: visible (H, W, 3) BGR or (H, W) and infrared (H, W), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.4 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)
    ir = np.clip(base + 0.3 * (((xx - 0.5) ** 2 + (yy - 0.4) ** 2) < 0.02) + rng.normal(0, 0.02, (h, w)), 0, 1)
    vis = np.clip(1 - base + rng.normal(0, 0.05, (h, w)), 0, 1)
    ir8 = (ir * 255).round().astype(np.uint8)
    vis8 = (vis * 255).round().astype(np.uint8)
    if colour:
        vis8 = np.stack([vis8, (vis8 * 0.8).astype(np.uint8), np.flipud(vis8)], axis=2)
    return vis8, ir8


@pytest.fixture
def pair_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Folders ``ir/`` and ``vi/`` with three pairs of odd sizes (one grey visible, PNG and JPEG)."""
    ir_dir, vi_dir = tmp_path / "set" / "ir", tmp_path / "set" / "vi"
    ir_dir.mkdir(parents=True)
    vi_dir.mkdir(parents=True)
    for i, (h, w, colour, ext) in enumerate([(37, 53, True, ".png"), (64, 48, False, ".png"), (40, 60, True, ".jpg")]):
        vis, ir = synth_pair(h, w, i, colour)
        cv2.imwrite(str(ir_dir / f"p{i}.png"), ir)
        cv2.imwrite(str(vi_dir / f"p{i}{ext}"), vis)
    return ir_dir, vi_dir
