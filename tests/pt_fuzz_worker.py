"""Crafted ``.pt`` files (no torch needed), and a fuzz loop over mutated ones, run as a subprocess.

The helpers write PyTorch's zip format with any declaration a file may make -- a storage type,
numel, offset, size and stride that do not fit the storage's bytes -- which
:mod:`biocodec_jax.interop.torch_writer` (that only writes consistent tensors) cannot.

``python tests/pt_fuzz_worker.py DIR --cases N --seed S`` reads N mutated checkpoints with
:func:`~biocodec_jax.interop.torch_checkpoint.read_torch_file` and checks each against an independent
reference: the reader either refuses with ``CheckpointError`` naming the file, or returns exactly the
values numpy gathers (by bounds-checked fancy indexing) from the declared storage, size and stride;
the reader refuses exactly when the reference finds the declaration invalid. It also reads the named
cases of the issue that used to crash the process. It prints one JSON summary. It runs as a
subprocess so that a crash (a segfault) fails the calling test instead of killing pytest.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import pickle
import random
import struct
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_TYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "<i1",
    "ByteStorage": "<u1", "BoolStorage": "<u1",
}
MAX_NDIM = 32
MAX_EXPANDED_NUMEL = 2**24  # the reader's documented limit on tensors larger than their storage


# --- writing crafted files ------------------------------------------------------------------------


class T:
    """A tensor as the file declares it: ``_rebuild_tensor_v2(storage pid, offset, size, stride, False, {})``."""

    def __init__(self, key: Any, numel: Any, size: Any = None, stride: Any = None, offset: Any = 0,
                 storage: Any = "FloatStorage", parameter: bool = False, pid: Any = None):
        self.key, self.numel, self.offset, self.storage, self.parameter, self.pid = key, numel, offset, storage, parameter, pid
        self.size = (numel,) if size is None else size
        self.stride = contiguous(self.size) if stride is None else stride


def contiguous(size: Any) -> tuple:
    out, step = [], 1
    for d in reversed(tuple(size)):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))


class _Emitter:
    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def value(self, obj: Any) -> None:
        out = self.out
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                out += b"K" + bytes([obj])
            elif 0 <= obj < 65536:
                out += b"M" + struct.pack("<H", obj)
            elif -(2**31) <= obj < 2**31:
                out += b"J" + struct.pack("<i", obj)
            else:
                data = pickle.encode_long(obj)
                out += b"\x8a" + bytes([len(data)]) + data
        elif isinstance(obj, float):
            out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            data = obj.encode()
            out += b"X" + struct.pack("<I", len(data)) + data
        elif isinstance(obj, T):
            self.tensor(obj)
        elif isinstance(obj, collections.OrderedDict):
            out += b"ccollections\nOrderedDict\n)R"
            self.items(obj)
        elif isinstance(obj, dict):
            out += b"}"
            self.items(obj)
        elif isinstance(obj, list):
            out += b"]("
            for v in obj:
                self.value(v)
            out += b"e"
        elif isinstance(obj, tuple):
            out += b"("
            for v in obj:
                self.value(v)
            out += b"t"
        else:
            raise TypeError(type(obj))

    def items(self, mapping: dict) -> None:
        self.out += b"("
        for k, v in mapping.items():
            self.value(k)
            self.value(v)
        self.out += b"u"

    def tensor(self, t: T) -> None:
        out = self.out
        if t.parameter:
            out += b"ctorch._utils\n_rebuild_parameter\n("
        out += b"ctorch._utils\n_rebuild_tensor_v2\n("
        if t.pid is not None:
            self.value(t.pid)
            out += b"Q"
        else:
            out += b"(X\x07\x00\x00\x00storage" + f"ctorch\n{t.storage}\n".encode()
            self.value(t.key)
            self.value("cpu")
            self.value(t.numel)
            out += b"tQ"
        self.value(t.offset)
        self.value(t.size)
        self.value(t.stride)
        out += b"\x89ccollections\nOrderedDict\n)RtR"
        if t.parameter:
            out += b"\x88ccollections\nOrderedDict\n)RtR"


def dump(obj: Any) -> bytes:
    """``obj`` (dicts, lists, tuples, numbers, strings, :class:`T`) as the protocol-2 pickle torch writes."""
    e = _Emitter()
    e.value(obj)
    return bytes(e.out + b".")


def write_pt(path: str | Path, obj: Any, records: dict[str, bytes], *, byteorder: bytes | None = b"little",
             root: str = "archive", pickled: bytes | None = None) -> Path:
    """A zip-format checkpoint: ``root/data.pkl`` (``dump(obj)`` unless ``pickled``), byteorder, storage records."""
    path = Path(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/data.pkl", dump(obj) if pickled is None else pickled)
        if byteorder is not None:
            z.writestr(f"{root}/byteorder", byteorder)
        for key, raw in records.items():
            z.writestr(f"{root}/data/{key}", raw)
        z.writestr(f"{root}/version", b"3\n")
    return path


def floats(n: int, start: float = 1000.0) -> bytes:
    """``n`` distinct float32 values: any value read from outside them is recognisable."""
    return (start + np.arange(n, dtype=np.float32)).tobytes()


# --- the reference ----------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


class _Frozen:
    __slots__ = ()

    def __setstate__(self, state: Any) -> None:  # as the reader's objects: BUILD cannot change them
        raise TypeError("read-only")


class _Type(_Frozen):
    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)


class _Ref(_Frozen):
    """What the reader must return for a storage (``index`` None) or a tensor (``index`` the element indices)."""

    __slots__ = ("values", "index")

    def __init__(self, values: np.ndarray, index: np.ndarray | None):
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "index", index)

    def expected(self) -> np.ndarray:
        return self.values if self.index is None else self.values[self.index]  # numpy bounds-checks


class _Bad(_Frozen):
    __slots__ = ()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:  # int64, as in torch
    return _is_int(v) and 0 <= v < 2**63


class _ReferenceUnpickler(pickle._Unpickler):  # as the reader: the C one's memo array can exhaust memory
    # As the reader: no protocol-5 bytearrays or buffers (BYTEARRAY8 allocates the length it names).
    dispatch = {op: f for op, f in pickle._Unpickler.dispatch.items()
                if op not in (pickle.BYTEARRAY8[0], pickle.NEXT_BUFFER[0], pickle.READONLY_BUFFER[0])}

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.root, self.bad = archive, root, 0
        self.cache: dict[tuple, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return self.parameter
        if module == "torch" and name in STORAGE_TYPES:
            return _Type(name)
        raise _Invalid(f"global {module}.{name}")

    def mark_bad(self) -> _Bad:
        self.bad += 1
        return _Bad()

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            return self.mark_bad()
        _, kind, key, _, numel = pid
        if not isinstance(kind, _Type) or not isinstance(key, str) or not _is_count(numel):
            return self.mark_bad()
        if (key, kind.name, numel) not in self.cache:
            self.cache[key, kind.name, numel] = self.storage(key, kind.name, numel)
        return self.cache[key, kind.name, numel]

    def storage(self, key: str, kind: str, numel: int) -> Any:
        name = f"{self.root}/data/{key}"
        if name not in self.archive.namelist():
            return self.mark_bad()
        try:
            raw = self.archive.read(name)
        except Exception as e:
            raise _Invalid(f"record {name}: {e}") from e
        dtype = np.dtype(STORAGE_TYPES[kind])
        if len(raw) != self.archive.getinfo(name).file_size:  # an inconsistent archive
            raise _Invalid(f"record {name}: {len(raw)} bytes, listed as {self.archive.getinfo(name).file_size}")
        if len(raw) % dtype.itemsize or numel * dtype.itemsize > len(raw):
            return self.mark_bad()
        values = np.frombuffer(raw, dtype, count=numel)
        if kind == "BFloat16Storage":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        elif kind == "BoolStorage":
            values = values != 0
        return _Ref(values, None)

    def rebuild(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Any:
        if not isinstance(storage, _Ref) or storage.index is not None:
            return self.mark_bad()
        numel = storage.values.size
        dims_ok = all(isinstance(d, (tuple, list)) and len(d) <= MAX_NDIM and all(_is_count(v) for v in d)
                      for d in (size, stride))
        if not (_is_count(offset) and dims_ok and len(size) == len(stride)):
            return self.mark_bad()
        nominal = int(np.prod([max(d, 1) for d in size], dtype=object)) if size else 1
        if nominal > max(numel, MAX_EXPANDED_NUMEL):
            return self.mark_bad()
        if 0 in size:
            return self.mark_bad() if offset > numel else _Ref(storage.values, np.zeros(tuple(size), np.int64))
        if offset + sum((d - 1) * s for d, s in zip(size, stride)) >= numel:
            return self.mark_bad()
        index = np.full((1,) * len(size), offset, np.int64)  # every index < numel: no int64 overflow
        for axis, (d, s) in enumerate(zip(size, stride)):
            shape = [1] * len(size)
            shape[axis] = d
            index = index + (np.arange(d, dtype=np.int64) * s).reshape(shape)
        return _Ref(storage.values, index.reshape(tuple(size)))

    def parameter(self, data: Any, *_: Any) -> Any:
        if isinstance(data, _Ref) or isinstance(data, _Bad):
            return data
        return self.mark_bad()


def reference(path: Path) -> Any:
    """What the reader must return for ``path``, with :class:`_Ref` for arrays; raises ``_Invalid`` if it must refuse."""
    try:
        with open(path, "rb") as fp:
            if not zipfile.is_zipfile(fp):
                raise _Invalid("not a zip")
            fp.seek(0)
            with zipfile.ZipFile(fp) as archive:
                names = archive.namelist()
                pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
                if not pkl:
                    raise _Invalid("no data.pkl")
                root = pkl[0].split("/")[0]
                if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").strip() != b"little":
                    raise _Invalid("byte order")
                unpickler = _ReferenceUnpickler(archive.read(pkl[0]), archive, root)
                obj = unpickler.load()
    except _Invalid:
        raise
    except Exception as e:  # the archive or pickle is unreadable: the reader must refuse too
        raise _Invalid(f"{type(e).__name__}: {e}") from e
    if unpickler.bad:
        raise _Invalid("a declaration outside its storage")
    stack, seen = [obj], set()
    while stack:  # only data and tensors may come out: no storage types, functions or classes
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(item)
        elif not isinstance(item, (str, bytes, int, float, type(None), _Ref)):
            raise _Invalid(f"not data: {type(item).__name__}")
    return obj


def compare(got: Any, want: Any, where: str = "obj", seen: set | None = None) -> str | None:
    """Where ``got`` (the reader's) differs from ``want`` (the reference's); None if nowhere."""
    seen = set() if seen is None else seen
    if (id(got), id(want)) in seen:
        return None
    seen.add((id(got), id(want)))
    if isinstance(want, _Ref):
        exp = want.expected()
        if not isinstance(got, np.ndarray) or got.dtype != exp.dtype or got.shape != exp.shape:
            return f"{where}: got {type(got).__name__} {getattr(got, 'dtype', '')} {getattr(got, 'shape', '')}, want {exp.dtype} {exp.shape}"
        if got.tobytes() != exp.tobytes():
            return f"{where}: values differ from the declared storage's"
        if want.index is not None and not got.flags.owndata:
            return f"{where}: a view, not an owned copy"
        return None
    if type(got) is not type(want):
        return f"{where}: got {type(got).__name__}, want {type(want).__name__}"
    if isinstance(want, dict):
        if list(got) != list(want):
            return f"{where}: keys differ"
        for k in want:
            problem = compare(got[k], want[k], f"{where}[{k!r}]", seen)
            if problem:
                return problem
        return None
    if isinstance(want, (list, tuple)):
        if len(got) != len(want):
            return f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, f"{where}[{i}]", seen)
            if problem:
                return problem
        return None
    if isinstance(want, float) and want != want:
        return None if got != got else f"{where}: {got!r} != nan"
    return None if got == want else f"{where}: {got!r} != {want!r}"


# --- the mutations -------------------------------------------------------------------------------


def base_checkpoint() -> tuple[dict, dict[str, bytes]]:
    """A small valid training checkpoint: shared, offset, transposed, scalar, empty, several dtypes."""
    records = {
        "0": floats(12),
        "1": np.arange(-3, 5, dtype=np.int16).tobytes(),
        "2": ((np.arange(6, dtype=np.float32) * 0.5 + 2).view(np.uint32) >> 16).astype(np.uint16).tobytes(),
        "3": bytes([0, 1, 2, 0]),
        "4": floats(3, -7.0),
    }
    model = collections.OrderedDict([
        ("_orig_mod.w", T("0", 12, (3, 4), (4, 1))),
        ("_orig_mod.w_t", T("0", 12, (4, 3), (1, 4))),
        ("_orig_mod.tail", T("0", 12, (2, 3), (1, 2), offset=5)),
        ("_orig_mod.i16", T("1", 8, (2, 2), (4, 2), offset=1, storage="ShortStorage")),
        ("_orig_mod.bf16", T("2", 6, (6,), storage="BFloat16Storage")),
        ("_orig_mod.flags", T("3", 4, storage="BoolStorage")),
        ("_orig_mod.expanded", T("4", 3, (4, 3), (0, 1), parameter=True)),
        ("_orig_mod.scalar", T("4", 3, (), (), offset=2)),
        ("_orig_mod.empty", T("4", 3, (0, 5), (5, 1))),
    ])
    obj = {"epoch": 3, "model_state_dict": model,
           "optimizer_state_dict": {"state": {0: {"step": T("4", 3, (), (), offset=0)}}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.9)}]}}
    return obj, records


_INTS = [0, 1, 2, 3, 4, 5, 7, 11, 12, 13, 255, 256, 4096, 2**20, 50_000_000, 2**31, 2**40, 2**62, 2**63, 2**64, -1, -2, -(2**40)]


def _pick_int(rng: random.Random, near: int) -> Any:
    r = rng.random()
    near = near if _is_int(near) else 0
    if r < 0.5:
        return max(0, near + rng.randint(-2, 2))
    if r < 0.93:
        return rng.choice(_INTS)
    return rng.choice([True, 1.0, "3", None, (1,)])


def _mutate_tensor(rng: random.Random, t: T, keys: list[str]) -> None:
    what = rng.randrange(8)
    if what == 0:
        t.offset = _pick_int(rng, t.offset if _is_int(t.offset) else 0)
    elif what == 1:
        t.size = tuple(_pick_int(rng, d) for d in t.size) if t.size and rng.random() < 0.7 else tuple(
            _pick_int(rng, 2) for _ in range(rng.choice([0, 1, 2, 3, 33])))
        if rng.random() < 0.5:
            t.stride = contiguous([d if _is_int(d) and d >= 0 else 1 for d in t.size])
    elif what == 2:
        t.stride = tuple(_pick_int(rng, s if _is_int(s) else 1) for s in t.stride) if rng.random() < 0.8 else list(t.stride)
    elif what == 3:
        t.numel = _pick_int(rng, t.numel if _is_int(t.numel) else 1)
    elif what == 4:
        t.storage = rng.choice(list(STORAGE_TYPES))
    elif what == 5:
        t.key = rng.choice(keys + ["missing", "../0", 0])
    elif what == 6:
        t.pid = rng.choice([("storage",), ("module", 1), "storage", ("storage", "FloatStorage", t.key, "cpu", 3), None])
        if t.pid is None:
            t.parameter = not t.parameter
    else:  # a well-formed random view of the storage: often valid
        ndim = rng.randrange(4)
        t.size = tuple(rng.randrange(4) for _ in range(ndim))
        t.stride = tuple(rng.randrange(5) for _ in range(ndim))
        t.offset = rng.randrange(13)


def _mutate_records(rng: random.Random, records: dict[str, bytes]) -> None:
    key = rng.choice(list(records))
    what = rng.randrange(3)
    if what == 0:
        records[key] = records[key][: rng.randrange(len(records[key]) + 1)]
    elif what == 1:
        records[key] = records[key] + bytes(rng.randrange(1, 9))
    else:
        del records[key]


def _flip(rng: random.Random, data: bytes, n: int) -> bytes:
    out = bytearray(data)
    for _ in range(n):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def make_case(rng: random.Random, path: Path) -> str:
    """Write one mutated checkpoint at ``path``; returns the kind of mutation."""
    obj, records = base_checkpoint()
    tensors = [t for t in obj["model_state_dict"].values()] + [obj["optimizer_state_dict"]["state"][0]["step"]]
    kind = rng.choice(["layout", "layout", "layout", "records", "pickle", "zip", "truncate", "byteorder"])
    byteorder: bytes | None = b"little"
    pickled = None
    if kind in ("layout", "records", "pickle", "zip", "truncate"):
        for _ in range(rng.choice([0, 1, 1, 2, 3]) if kind != "layout" else rng.choice([1, 1, 2, 3])):
            _mutate_tensor(rng, rng.choice(tensors), list(records))
    if kind == "records":
        _mutate_records(rng, records)
    if kind == "byteorder":
        byteorder = rng.choice([b"big", b"", b"middle", b"little\n", b"\x00little", None, b"LITTLE"])
    if kind == "pickle":
        data = dump(obj)
        pickled = _flip(rng, data, rng.randint(1, 4)) if rng.random() < 0.8 else data[: rng.randrange(len(data))]
    write_pt(path, obj, records, byteorder=byteorder, pickled=pickled)
    if kind == "zip":
        path.write_bytes(_flip(rng, path.read_bytes(), rng.randint(1, 6)))
    elif kind == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: rng.randrange(len(raw))])
    return kind


# --- the named cases (each used to read heap memory or crash the process) ------------------------------------

NAMED = {
    "size 256 over 1 element": T("0", 1, (256,), (1,)),
    "size 50,000,000 over 1 element": T("0", 1, (50_000_000,), (1,)),
    "stride 2**40": T("0", 1, (2,), (2**40,)),
    "stride 2**62 over 4 elements": T("0", 4, (3,), (2**62,)),
    "expanded 2**40 elements": T("0", 1, (2**20, 2**20), (0, 0)),
    "negative stride": T("0", 4, (4,), (-1,), offset=3),
    "negative offset": T("0", 4, (4,), (1,), offset=-2**40),
    "offset past the end": T("0", 4, (4,), (1,), offset=2**40),
    "numel beyond the record": T("0", 2**40, (2**40,), (1,)),
}


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# Pickles of a few bytes that make an unpickler allocate: a memo index of 2**26 (the C unpickler
# grows its memo array to twice the index: 1 GiB, zeroed), a BYTEARRAY8 of 2**30 bytes.
MEMORY_BOMBS = {
    "memo index 2**26": b"\x80\x02}r" + struct.pack("<I", 2**26) + b".",
    "bytearray8 of 2**30 bytes": b"\x80\x05\x96" + struct.pack("<Q", 2**30) + b"abc.",
}


def run_memory_bombs(directory: Path) -> dict[str, Any]:
    from biocodec_jax.interop.torch_checkpoint import CheckpointError, read_torch_file

    results: dict[str, Any] = {}
    for i, (name, pickled) in enumerate(MEMORY_BOMBS.items()):
        path = write_pt(directory / f"bomb{i}.pt", None, {}, pickled=pickled)
        before = _rss_mib()
        try:
            read_torch_file(path)
            outcome = "loaded"
        except CheckpointError as e:
            outcome = "refused" if str(path) in str(e) else f"refused without naming the file: {e}"
        except Exception as e:  # noqa: BLE001
            outcome = f"{type(e).__name__}: {e}"
        results[name] = {"outcome": outcome, "peak_memory_growth_mib": round(_rss_mib() - before, 1)}
    return results


def run_named(directory: Path) -> dict[str, str]:
    from biocodec_jax.interop.torch_checkpoint import CheckpointError, load_state_dict

    results = {}
    for i, (name, t) in enumerate(NAMED.items()):
        path = write_pt(directory / f"named{i}.pt", {"model_state_dict": {"_orig_mod.encoder.w": t}}, {"0": floats(4)})
        try:
            load_state_dict(path)
            results[name] = "loaded"
        except CheckpointError as e:
            ok = str(path) in str(e) and "'_orig_mod.encoder.w'" in str(e)
            results[name] = "refused" if ok else f"refused without naming the file and key: {e}"
        except Exception as e:  # noqa: BLE001 - any other exception type is a failure
            results[name] = f"{type(e).__name__}: {e}"
    return results


def run_fuzz(directory: Path, cases: int, seed: int) -> dict[str, Any]:
    from biocodec_jax.interop.torch_checkpoint import CheckpointError, read_torch_file

    rng = random.Random(seed)
    kinds: collections.Counter = collections.Counter()
    loaded = refused = 0
    failures = []
    for i in range(cases):
        path = directory / f"case{i}.pt"
        kind = make_case(rng, path)
        kinds[kind] += 1
        try:
            want: Any = reference(path)
        except _Invalid as e:
            want = e
        try:
            got = read_torch_file(path)
        except CheckpointError as e:
            refused += 1
            if str(path) not in str(e):
                failures.append(f"case {i} ({kind}): error does not name the file: {e}")
            elif not isinstance(want, _Invalid):
                failures.append(f"case {i} ({kind}): refused a valid file: {e}")
            continue
        except Exception as e:  # noqa: BLE001
            failures.append(f"case {i} ({kind}): {type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}")
            continue
        loaded += 1
        if isinstance(want, _Invalid):
            failures.append(f"case {i} ({kind}): loaded what must be refused ({want})")
        else:
            problem = compare(got, want)
            if problem:
                failures.append(f"case {i} ({kind}): {problem}")
        path.unlink()
    return {"cases": cases, "loaded": loaded, "refused": refused, "kinds": dict(kinds), "failures": failures[:20],
            "n_failures": len(failures)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    summary = {
        "memory_bombs": run_memory_bombs(args.directory),  # first: the peak memory is lowest here
        "named": run_named(args.directory),
        "fuzz": run_fuzz(args.directory, args.cases, args.seed),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
