"""Write PyTorch's zip serialisation -- the files ``torch.save`` writes -- without PyTorch installed.

>>> write_torch_file({"epoch": 3, "weights": {"w": np.ones((2, 3), np.float32)}}, "model.pt")

``torch.load(path, weights_only=True)`` reads the result as the same structure with tensors, and
:func:`~biocodec_jax.interop.torch_checkpoint.read_torch_file` reads it back bit-exactly.

The format (as torch 2.x writes it): a zip archive, every entry stored uncompressed under one
root folder (the file's stem), in this order:

``<root>/data.pkl``
    the object, pickle protocol 2. A tensor is ``torch._utils._rebuild_tensor_v2(storage, offset,
    size, stride, requires_grad, backward_hooks)`` whose storage is a persistent id
    ``("storage", torch.FloatStorage, "<key>", "cpu", numel)``.
``<root>/.format_version`` ``1``; ``<root>/.storage_alignment`` ``64``; ``<root>/byteorder`` ``little``
``<root>/data/<key>``
    each storage's raw little-endian bytes, the entry's data starting at a multiple of 64 bytes in
    the file (padding in the local header's extra field, as torch does, so ``mmap=True`` works).
``<root>/version`` ``3``; ``<root>/.data/serialization_id`` a 40-digit identifier.

``pickle`` cannot name ``torch._utils`` or ``torch.FloatStorage`` unless torch is importable, so the
pickle is written opcode by opcode by a small emitter that knows exactly the types checkpoints hold:
``dict`` and ``collections.OrderedDict`` (``str``/``int`` keys), ``list``, ``tuple``, ``str``,
``int``, ``float``, ``bool``, ``None``, and arrays (numpy arrays, numpy scalars, JAX arrays) as
tensors. Arrays are written contiguous; the same array object appearing twice shares one storage,
as in torch. Anything else raises :class:`TypeError` naming where it is.
"""

from __future__ import annotations

import collections
import hashlib
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = b"1"
STORAGE_ALIGNMENT = 64
VERSION = b"3\n"

_STORAGE_NAMES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}

# Pickle opcodes (protocol 2) used here.
_PROTO, _STOP = b"\x80", b"."
_MARK, _TUPLE, _EMPTY_TUPLE, _TUPLE1, _TUPLE2, _TUPLE3 = b"(", b"t", b")", b"\x85", b"\x86", b"\x87"
_EMPTY_DICT, _SETITEMS, _EMPTY_LIST, _APPENDS = b"}", b"u", b"]", b"e"
_NONE, _NEWTRUE, _NEWFALSE = b"N", b"\x88", b"\x89"
_BININT1, _BININT2, _BININT, _LONG1, _BINFLOAT, _BINUNICODE = b"K", b"M", b"J", b"\x8a", b"G", b"X"
_GLOBAL, _REDUCE, _BINPERSID = b"c", b"R", b"Q"
_BINPUT, _LONG_BINPUT, _BINGET, _LONG_BINGET = b"q", b"r", b"h", b"j"
_BATCH = 1000  # items per SETITEMS / APPENDS, as pickle does


def _is_array(obj: Any) -> bool:
    return isinstance(obj, (np.ndarray, np.generic)) or (
        hasattr(obj, "__array__") and hasattr(obj, "shape") and hasattr(obj, "dtype")
    )


class _Storage:
    __slots__ = ("key", "name", "array")

    def __init__(self, key: str, name: str, array: np.ndarray):
        self.key, self.name, self.array = key, name, array


class _TorchPickler:
    """Emits protocol-2 pickle opcodes for a checkpoint object; collects the tensor storages."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._memo: dict[str, int] = {}  # global "module\nname" -> memo index
        self.storages: list[_Storage] = []
        self._shared: dict[int, tuple[Any, _Storage]] = {}  # id(array object) -> (object, storage)

    def dump(self, obj: Any) -> bytes:
        self._out += _PROTO + b"\x02"
        self._save(obj, "obj")
        self._out += _STOP
        return bytes(self._out)

    # --- values ---------------------------------------------------------------------------------

    def _save(self, obj: Any, where: str) -> None:
        out = self._out
        if obj is None:
            out += _NONE
        elif isinstance(obj, bool):
            out += _NEWTRUE if obj else _NEWFALSE
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            out += _BINFLOAT + struct.pack(">d", obj)
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            out += _BINUNICODE + struct.pack("<I", len(data)) + data
        elif isinstance(obj, collections.OrderedDict):
            self._global("collections", "OrderedDict")
            out += _EMPTY_TUPLE + _REDUCE
            self._items(obj, where)
        elif isinstance(obj, dict):
            out += _EMPTY_DICT
            self._items(obj, where)
        elif isinstance(obj, list):
            out += _EMPTY_LIST
            for start in range(0, len(obj), _BATCH):
                self._out += _MARK
                for i, v in enumerate(obj[start : start + _BATCH], start):
                    self._save(v, f"{where}[{i}]")
                self._out += _APPENDS
        elif isinstance(obj, tuple):
            self._tuple(obj, where)
        elif _is_array(obj):
            self._tensor(obj, where)
        else:
            raise TypeError(
                f"{where}: cannot write a {type(obj).__module__}.{type(obj).__qualname__} to a torch file; "
                "supported: dict, OrderedDict, list, tuple, str, int, float, bool, None and arrays"
            )

    def _int(self, value: int) -> None:
        if 0 <= value < 0x100:
            self._out += _BININT1 + bytes([value])
        elif 0 <= value < 0x10000:
            self._out += _BININT2 + struct.pack("<H", value)
        elif -(2**31) <= value < 2**31:
            self._out += _BININT + struct.pack("<i", value)
        else:  # two's complement, little-endian, as short as possible (pickle.encode_long)
            n = (value.bit_length() + 8) // 8
            data = value.to_bytes(n, "little", signed=True)
            if n > 1 and data[-1] == 0xFF and data[-2] & 0x80:
                data = data[:-1]
            self._out += _LONG1 + bytes([len(data)]) + data

    def _tuple(self, items: tuple, where: str) -> None:
        if not items:
            self._out += _EMPTY_TUPLE
            return
        if len(items) > 3:
            self._out += _MARK
        for i, v in enumerate(items):
            self._save(v, f"{where}[{i}]")
        self._out += {1: _TUPLE1, 2: _TUPLE2, 3: _TUPLE3}.get(len(items), _TUPLE)

    def _items(self, mapping: dict, where: str) -> None:
        items = list(mapping.items())
        for start in range(0, len(items), _BATCH):
            self._out += _MARK
            for k, v in items[start : start + _BATCH]:
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"{where}: dict key {k!r} is a {type(k).__name__}; only str and int keys are written")
                self._save(k, where)
                self._save(v, f"{where}[{k!r}]")
            self._out += _SETITEMS

    def _global(self, module: str, name: str) -> None:
        """``module.name``, written once and fetched from the memo afterwards."""
        key = f"{module}\n{name}"
        index = self._memo.get(key)
        if index is not None:
            self._out += _BINGET + bytes([index]) if index < 0x100 else _LONG_BINGET + struct.pack("<I", index)
            return
        self._out += _GLOBAL + f"{key}\n".encode("ascii")
        index = self._memo[key] = len(self._memo)
        self._out += _BINPUT + bytes([index]) if index < 0x100 else _LONG_BINPUT + struct.pack("<I", index)

    # --- tensors ---------------------------------------------------------------------------------

    def _tensor(self, obj: Any, where: str) -> None:
        shared = self._shared.get(id(obj))
        if shared is not None:
            storage = shared[1]
        else:
            array = np.asarray(obj)
            name = _STORAGE_NAMES.get(array.dtype.name)
            if name is None:
                raise TypeError(
                    f"{where}: arrays of dtype {array.dtype} have no torch storage type; "
                    f"supported: {', '.join(_STORAGE_NAMES)}"
                )
            if array.dtype.byteorder == ">":
                array = array.astype(array.dtype.newbyteorder("<"))
            if not array.flags.c_contiguous:  # (not np.ascontiguousarray: it makes 0-d arrays 1-d)
                array = array.copy(order="C")
            storage = _Storage(str(len(self.storages)), name, array)
            self.storages.append(storage)
            self._shared[id(obj)] = (obj, storage)  # keeps obj alive, so its id stays unique
        array = storage.array
        shape = tuple(int(d) for d in array.shape)
        strides = tuple(s // array.itemsize for s in array.strides) if array.size else _contiguous_strides(shape)
        out = self._out
        self._global("torch._utils", "_rebuild_tensor_v2")
        out += _MARK
        # The storage: persistent id ("storage", torch.<Name>Storage, key, location, numel).
        out += _MARK
        self._save("storage", where)
        self._global("torch", storage.name)
        self._save(storage.key, where)
        self._save("cpu", where)
        self._int(int(array.size))
        out += _TUPLE + _BINPERSID
        self._int(0)  # storage offset
        self._tuple(shape, where)
        self._tuple(strides, where)
        out += _NEWFALSE  # requires_grad
        self._global("collections", "OrderedDict")  # backward hooks: OrderedDict()
        out += _EMPTY_TUPLE + _REDUCE
        out += _TUPLE + _REDUCE


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _archive_root(path: Path) -> str:
    """torch names the root folder after the file (``model.pt`` -> ``model``)."""
    stem = path.name.rsplit(".", 1)[0] if "." in path.name[1:] else path.name
    return stem if stem and "/" not in stem and "\\" not in stem else "archive"


def _write_entry(zf: zipfile.ZipFile, name: str, data: bytes | memoryview, align: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 0, 0, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = len(data)
    if align:
        # Data begins after the 30-byte local header, the name and the extra field; pad the extra
        # field (a "FB" record of Z's, as torch's writer does) so that it begins on a 64-byte boundary.
        zip64 = info.file_size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own test; it then adds a 20-byte record
        header = 30 + len(name.encode("utf-8")) + 4 + (20 if zip64 else 0)
        pad = -(zf.fp.tell() + header) % STORAGE_ALIGNMENT
        info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    with zf.open(info, "w") as f:
        f.write(data)


def write_torch_file(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as ``torch.save(obj, path)`` would (arrays as CPU tensors); returns the path.

    The file is written to a temporary name beside ``path`` and renamed into place, so an
    interrupted write never leaves a truncated checkpoint under ``path``.
    """
    path = Path(path)
    pickler = _TorchPickler()
    data_pkl = pickler.dump(obj)
    root = _archive_root(path)
    digest = hashlib.sha256(data_pkl)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fp, zipfile.ZipFile(fp, "w", allowZip64=True) as zf:
            _write_entry(zf, f"{root}/data.pkl", data_pkl, align=True)
            _write_entry(zf, f"{root}/.format_version", FORMAT_VERSION, align=True)
            _write_entry(zf, f"{root}/.storage_alignment", str(STORAGE_ALIGNMENT).encode(), align=True)
            _write_entry(zf, f"{root}/byteorder", b"little", align=True)
            for storage in pickler.storages:
                raw = memoryview(storage.array.reshape(-1).view(np.uint8)) if storage.array.size else b""
                digest.update(raw)
                _write_entry(zf, f"{root}/data/{storage.key}", raw, align=True)
            _write_entry(zf, f"{root}/version", VERSION, align=True)
            serialization_id = str(int.from_bytes(digest.digest()[:16], "big")).zfill(40)[:40]
            _write_entry(zf, f"{root}/.data/serialization_id", serialization_id.encode(), align=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
