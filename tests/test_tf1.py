"""The TensorFlow 1 checkpoint reader (fusion.models.tf1): every tensor of the authors' checkpoints, checked
against its CRC32C and against the variables of its .meta graph, without TensorFlow."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion.errors import RgbtError
from fusion.models.tf1 import crc32c, meta_variables, read_tf1, unmask


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_crc32c_and_masking():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0 and crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(_mask(crc)) == crc


def _indexes(shared_data: Path) -> list[Path]:
    found = sorted((shared_data / "official_weights").glob("*/*.index"))
    if not found:
        pytest.skip("no TensorFlow 1 checkpoints under official_weights/")
    return found


def test_every_official_tf1_checkpoint_loads_and_agrees_with_its_graph(shared_data):
    """Names, shapes and dtypes: each saved tensor is a variable of the .meta graph with the shape it was declared
    with, and the graph's variables that were not saved are the optimiser's slots (Adam's moments and powers)."""
    for index in _indexes(shared_data):
        tensors = read_tf1(index)
        floats = {k: v for k, v in tensors.items() if v.dtype == np.float32}
        assert floats and all(np.isfinite(v).all() for v in floats.values()), index
        assert all(v.dtype == np.int32 and v.ndim == 0 for k, v in tensors.items() if k not in floats)  # a step
        meta = index.with_suffix(".meta")
        if not meta.is_file():  # CUFD's part 2 is published without its graph
            continue
        graph = meta_variables(meta)
        assert {k: graph.get(k) for k in tensors} == {k: v.shape for k, v in tensors.items()}, index
        unsaved = set(graph) - set(tensors)
        assert all(re.search(r"/Adam(_\d+)?$|beta[12]_power$", n) for n in unsaved), (index, sorted(unsaved)[:5])


def test_damaged_checkpoints_are_one_line(shared_data, tmp_path):
    index = _indexes(shared_data)[0]
    for f in index.parent.glob(index.stem + ".*"):
        shutil.copy(f, tmp_path / f.name)
    prefix = tmp_path / index.stem
    data = next(tmp_path.glob(index.stem + ".data-*"))
    good = data.read_bytes()

    data.write_bytes(good[: len(good) // 2])
    with pytest.raises(RgbtError, match="truncated"):
        read_tf1(prefix)
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0x40
    data.write_bytes(bytes(flipped))
    with pytest.raises(RgbtError, match="checksum"):
        read_tf1(prefix)
    data.unlink()
    with pytest.raises(RgbtError, match="missing"):
        read_tf1(prefix)
    data.write_bytes(good)
    idx = tmp_path / index.name
    raw = idx.read_bytes()
    for bad in (raw[:-10], raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], b""):
        idx.write_bytes(bad)
        with pytest.raises(RgbtError, match="not a readable TensorFlow 1 checkpoint index") as e:
            read_tf1(prefix)
        assert "\n" not in str(e.value)
    with pytest.raises(RgbtError, match="no such file"):
        read_tf1(tmp_path / "none.ckpt")
    (tmp_path / "g.meta").write_bytes(b"\x12\x05junk!")
    with pytest.raises(RgbtError, match="not a TensorFlow 1 graph"):
        meta_variables(tmp_path / "g.meta")


def test_export_converts_a_tf1_checkpoint_with_its_files_sha256(shared_data, tmp_path):
    """rgbt export writes our weight format from the authors' TF1 files (the index and its data shard recorded with
    their sha256); the exported file rebuilds the same network."""
    import hashlib

    import torch

    from fusion.cli import main as rgbt
    from fusion.models import load_model

    folder = shared_data / "official_weights" / "u2fusion"
    if not (folder / "model.ckpt.index").is_file():
        pytest.skip("no U2Fusion checkpoint under official_weights/")
    out = tmp_path / "u2fusion.pt"
    assert rgbt(["export", "--ckpt", str(folder / "model.ckpt.index"), "--out", str(out)]) == 0
    meta = torch.load(out, weights_only=True)["meta"]
    files = ["model.ckpt.index", "model.ckpt.data-00000-of-00001"]
    assert meta["source_sha256"] == {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in files}
    a, b = load_model(folder / "model.ckpt"), load_model(out)  # the prefix works as the index does
    vis, ir = torch.rand(1, 1, 21, 34), torch.rand(1, 1, 21, 34)
    assert torch.equal(a(vis, ir), b(vis, ir))
