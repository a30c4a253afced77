"""TensorFlow 1 checkpoints read in plain Python, without TensorFlow.

A checkpoint ``PREFIX`` (what ``tf.train.Saver.save`` wrote) is a tensor bundle:

- ``PREFIX.index``: a LevelDB-format table (data blocks of prefix-compressed keys, an index block, a 48-byte footer
  ending in a magic number, each block followed by its compression type and masked CRC32C). Under the key ``""`` it
  holds a ``BundleHeaderProto`` (number of shards, endianness); under each variable's name a ``BundleEntryProto``
  (dtype, shape, shard, offset, size, the masked CRC32C of the tensor's bytes);
- ``PREFIX.data-0000i-of-0000n``: the tensors' raw bytes, one after the other;
- ``PREFIX.meta`` (optional): the ``MetaGraphDef`` whose variables (``VariableV2`` nodes and their ``shape``) the
  checkpoint saved.

:func:`read_tf1` returns every tensor as a numpy array with its checksum verified; :func:`meta_variables` reads
the variables' names and shapes from the graph. Both are protobuf and table readers of a few dozen lines (the wire
format is public), so that no TensorFlow is needed to run or convert a model.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fusion.errors import RgbtError, short

MAGIC = 0xDB4775248B80FB57  # LevelDB's table magic number, the footer's last 8 bytes
# TensorFlow's DataType enum -> numpy (types.proto); strings and resources do not occur in weights
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2",
          22: "<u4", 23: "<u8"}  # fmt: skip
MAX_TENSOR_BYTES = 1 << 31  # a fusion network's largest tensor is a few MB


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as LevelDB and TensorFlow compute it."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def unmask(masked: int) -> int:
    """LevelDB stores CRCs masked (rotated and offset) so that a CRC of data holding CRCs stays well spread."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message: varints and fixed ints as int, the rest as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        yield number, value


def _shape(msg: bytes) -> tuple[int, ...]:
    """A TensorShapeProto: its dims' sizes."""
    dims = []
    for n, v in fields(msg):
        if n == 2:
            dims.append(next((s for k, s in fields(v) if k == 1), 0))
    return tuple(dims)


def _block(data: bytes, offset: int, size: int, where: str) -> bytes:
    """One table block, its trailer (compression type, masked CRC32C of contents + type) checked."""
    end = offset + size
    if end + 5 > len(data):
        raise ValueError(f"{where} block past the end of the file")
    body, kind = data[offset:end], data[end]
    stored = int.from_bytes(data[end + 1 : end + 5], "little")
    if unmask(stored) != crc32c(body + bytes([kind])):
        raise ValueError(f"{where} block checksum mismatch")
    if kind != 0:
        raise ValueError(f"{where} block compressed (type {kind}); TensorFlow writes bundles uncompressed")
    return body


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of a block: keys share prefixes with the previous key; restart points at the end."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + size]
        pos += size


def read_index(path: Path) -> dict[str, bytes]:
    """Every (key, value) of a LevelDB-format table file."""
    data = path.read_bytes()
    if len(data) < 48 or int.from_bytes(data[-8:], "little") != MAGIC:
        raise ValueError("no table footer (not a TensorFlow checkpoint index, or truncated)")
    footer = data[-48:-8]
    _, pos = _varint(footer, 0)  # the metaindex block's offset and size: bundles keep nothing there
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    out = {}
    for _, handle in _entries(_block(data, index_offset, index_size, "index")):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _entries(_block(data, offset, size, "data")):
            out[key.decode("utf-8")] = value
    return out


def checkpoint_files(prefix: str | Path) -> tuple[Path, list[Path]]:
    """The index and the data shards of checkpoint ``prefix`` (``model.ckpt``, or one of its files)."""
    prefix = str(prefix)
    for suffix in (".index", ".meta"):
        prefix = prefix.removesuffix(suffix)
    if ".data-" in prefix:
        prefix = prefix[: prefix.index(".data-")]
    index = Path(prefix + ".index")
    if not index.is_file():
        raise RgbtError(f"{short(index)}: no such file; a TensorFlow 1 checkpoint is PREFIX.index with PREFIX.data-*")
    return index, sorted(index.parent.glob(Path(prefix).name + ".data-*-of-*"))


def read_tf1(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TensorFlow 1 checkpoint, by variable name, each checked against its CRC32C.

    Raises:
        RgbtError: a missing, damaged or truncated file, in one line naming it.
    """
    index, shards = checkpoint_files(prefix)
    try:
        table = read_index(index)
        header = dict(fields(table.pop("", b"")))
        n_shards = header.get(1, 1)
        if header.get(2, 0) != 0:
            raise ValueError("big-endian tensors")
        names = [index.with_name(f"{index.stem}.data-{i:05d}-of-{n_shards:05d}") for i in range(n_shards)]
    except (ValueError, struct.error, IndexError) as e:
        raise RgbtError(f"{short(index)}: not a readable TensorFlow 1 checkpoint index ({e})") from None
    missing = [p for p in names if p not in shards]
    if missing:
        raise RgbtError(f"{short(missing[0])}: missing; a checkpoint needs its index and all {n_shards} data files")
    data = [p.read_bytes() for p in names]
    out = {}
    for name, entry in sorted(table.items()):
        e = dict(fields(entry))
        dtype, shape = DTYPES.get(e.get(1, 0)), _shape(e.get(2, b""))
        shard, offset, size = e.get(3, 0), e.get(4, 0), e.get(5, 0)
        if dtype is None or 7 in e:  # 7: slices of a partitioned variable
            raise RgbtError(f"{short(index)}: tensor {name} has a type or layout weights do not use (dtype {e.get(1)})")
        if shard >= n_shards or offset + size > len(data[shard]) or size > MAX_TENSOR_BYTES:
            raise RgbtError(f"{short(names[min(shard, n_shards - 1)])}: truncated (tensor {name} lies past its end)")
        raw = data[shard][offset : offset + size]
        if 6 in e and unmask(e[6]) != crc32c(raw):
            raise RgbtError(f"{short(names[shard])}: tensor {name} fails its checksum; download the file again")
        count = int(np.prod(shape, dtype=np.int64))
        if count * np.dtype(dtype).itemsize != size:
            raise RgbtError(f"{short(index)}: tensor {name} is {size} bytes, its shape {shape} needs another size")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype[-2:] if dtype != "?" else "?")
    return out


def meta_variables(meta: str | Path) -> dict[str, tuple[int, ...]]:
    """The variables of a ``.meta`` graph (``MetaGraphDef``): ``VariableV2``, ``Variable`` and ``VarHandleOp``
    nodes, with the shape each was declared with.

    Raises:
        RgbtError: the file is missing or not a MetaGraphDef.
    """
    meta = Path(meta)
    try:
        graph = next(v for n, v in fields(meta.read_bytes()) if n == 2)  # MetaGraphDef.graph_def
        out = {}
        for n, node in fields(graph):
            if n != 1:  # GraphDef.node
                continue
            f = list(fields(node))
            op = next((v for k, v in f if k == 2), b"")
            if op not in (b"VariableV2", b"Variable", b"VarHandleOp"):
                continue
            name = next(v for k, v in f if k == 1).decode("utf-8")
            for k, attr in f:
                entry = dict(fields(attr)) if k == 5 else {}  # NodeDef.attr: map entries (key, AttrValue)
                if entry.get(1) == b"shape":
                    out[name] = _shape(dict(fields(entry.get(2, b""))).get(7, b""))
        return out
    except FileNotFoundError:
        raise RgbtError(f"{short(meta)}: no such file") from None
    except (ValueError, StopIteration, UnicodeDecodeError) as e:
        raise RgbtError(f"{short(meta)}: not a TensorFlow 1 graph (.meta) ({type(e).__name__})") from None
