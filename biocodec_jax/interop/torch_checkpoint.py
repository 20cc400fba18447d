"""The original's checkpoint format: read it safely and map its keys onto our parameters and codebooks.

Reads, without PyTorch installed and without executing code from the file:
- the original's training checkpoint (``{"epoch", "model_state_dict", "optimizer_state_dict",
  "scheduler_state_dict"}``, model keys prefixed ``_orig_mod.``): the model entry is used, the rest ignored;
- a plain state dict saved with ``torch.save`` (``.pt`` / ``.pth``) or as ``.npz``.

``.pt`` files are zip archives holding a pickle plus raw tensor storages. The pickle is read by an
unpickler that only knows tensors, storages and ordered dicts (like ``torch.load(weights_only=True)``);
anything else in it is refused with an error naming the object it references. Each tensor's storage
type, offset, size and stride are checked against its storage record's bytes before an element is
read, and tensors come back as owned copies; a declaration reaching outside its storage, a corrupt
or truncated archive or pickle, raises :class:`CheckpointError` naming the file (and the tensor's key).

Writes, also without PyTorch (:func:`to_torch_checkpoint`, :func:`export_torch_checkpoint`, the file
format in :mod:`biocodec_jax.interop.torch_writer`), the original's training checkpoint: model weights
in the original's key order and layouts, Adam state in the original's parameter order, scheduler state.

Layouts: the original stores conv kernels ``[out, in, k]`` (transposed convs ``[in, out, k]``), LSTM
weights ``[4H, in]`` and Linear weights ``[out, in]``; we store ``[k, in, out]``, ``[in, 4H]``, ``[in, out]``.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import reprlib
import zipfile
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from biocodec_jax import storage
from biocodec_jax.config import CodecConfig, Config, preset
from biocodec_jax.interop.torch_writer import write_torch_file
from biocodec_jax.model import abstract_model, init_codebooks
from biocodec_jax.quantization.codebook import CodebookState
from biocodec_jax.training.optimizer import make_schedule

PREFIXES = ("_orig_mod.", "module.")
COMPILED_PREFIX = "_orig_mod."  # the original saved its torch.compile'd model

# --------------------------------------------------------------------------------------------
# A weights-only reader for PyTorch's zip serialisation.


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the problem."""


_BFLOAT16 = "bfloat16"  # no numpy dtype: read as its bits ("<u2"), returned as float32
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_MAX_NDIM = 32
# A tensor may have more elements than its storage only through stride-0 (expanded) or overlapping
# strides; we materialise every tensor, so such a tensor may have at most this many elements.
_MAX_EXPANDED_NUMEL = 2**24
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = 8
_REPR.maxlevel = 3
_INT64_LIMIT = 2**63  # offsets, sizes, strides and numels are int64 in torch


def _show(obj: Any) -> str:
    """A short repr of what a file declared, for messages; never fails."""
    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape}"
    try:
        return _REPR.repr(obj)
    except Exception:  # e.g. an int too long to print
        return f"a {type(obj).__name__}"


class _Frozen:
    """Objects the unpickler hands out: a pickle's BUILD opcode must not be able to change them."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __setstate__(self, state: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")


class _StorageType(_Frozen):
    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)


class _Invalid(_Frozen):
    """Stands for a storage or tensor the file declares wrongly, until the unpickling is over.

    The key naming the tensor is known only once the dicts holding it are built, so the unpickler
    records the problem here; :func:`read_torch_file` then finds it in the result and refuses the
    file, naming its key.
    """

    __slots__ = ("problem",)

    def __init__(self, problem: str):
        object.__setattr__(self, "problem", problem)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    """A non-negative int64: what torch allows as an offset, size, stride or numel."""
    return _is_int(value) and 0 <= value < _INT64_LIMIT


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _layout_problem(numel: int, offset: Any, size: Any, stride: Any) -> str | None:
    """Why ``(offset, size, stride)`` does not describe elements inside a storage of ``numel``; None if it does."""
    if not _is_count(offset):
        return f"storage offset {_show(offset)} is not a non-negative 64-bit integer"
    for name, dims in (("size", size), ("stride", stride)):
        if not isinstance(dims, (tuple, list)):
            return f"{name} {_show(dims)} is not a tuple"
        if len(dims) > _MAX_NDIM:
            return f"{name} has {len(dims)} dimensions (at most {_MAX_NDIM} are read)"
        if not all(_is_count(d) for d in dims):
            return f"{name} {_show(dims)} is not a tuple of non-negative 64-bit integers"
    if len(size) != len(stride):
        return f"size {tuple(size)} and stride {tuple(stride)} have different lengths"
    nominal = 1  # elements, zero-length dimensions ignored: bounds what an empty tensor may declare too
    for d in size:
        nominal *= max(d, 1)
    if nominal > max(numel, _MAX_EXPANDED_NUMEL):
        return (
            f"size {tuple(size)} declares {nominal} elements, more than its storage's {numel} "
            f"(a tensor larger than its storage, an expanded view, may have at most {_MAX_EXPANDED_NUMEL})"
        )
    if 0 in size:  # an empty tensor reads nothing
        if offset > numel:
            return f"storage offset {offset} is past the storage's end ({_plural(numel, 'element')})"
        return None
    last = offset + sum((d - 1) * s for d, s in zip(size, stride))
    if last >= numel:
        return (
            f"size {tuple(size)}, stride {tuple(stride)} and offset {offset} reach element {last}, "
            f"past the end of its storage of {_plural(numel, 'element')}"
        )
    return None


class _WeightsOnlyUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Reads tensors, storages and plain data; validates every tensor against its storage's bytes.

    The pure-Python unpickler, not the C one: its memo is a dict, where the C unpickler grows an
    array to the largest memo index a file names (``LONG_BINPUT 2**31`` allocates 16 GiB and touches
    it) -- a few bytes of pickle that exhaust memory. Reading a checkpoint's pickle this way takes
    milliseconds more.
    """

    # Protocol 5's bytearrays and out-of-band buffers are no weights; BYTEARRAY8 would also allocate
    # (and zero) whatever length the file names before reading a byte of it.
    dispatch = {
        op: load for op, load in pickle._Unpickler.dispatch.items()  # type: ignore[attr-defined]
        if op not in (pickle.BYTEARRAY8[0], pickle.NEXT_BUFFER[0], pickle.READONLY_BUFFER[0])
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[tuple, Any] = {}  # (key, storage type, numel) -> array or _Invalid
        self._described: dict[int, tuple[np.ndarray, str]] = {}  # id(storage array) -> (array, description)
        self.invalid: list[_Invalid] = []

    def _invalid(self, problem: str) -> _Invalid:
        marker = _Invalid(problem)
        self.invalid.append(marker)
        return marker

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self._rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self._path}: refusing to load: the file references {module[:100]}.{name[:100]}, which is not tensor data; only weights (tensors, storages, "
            "dicts, numbers) are read from .pt files"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            return self._invalid(f"unsupported persistent id {_show(pid)} (not a storage)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            return self._invalid(f"storage {_show(key)} has no storage type but {_show(storage_type)}")
        if not isinstance(key, str) or not _is_count(numel):
            return self._invalid(f"malformed storage reference {_show(pid)}")
        cached = self._storages.get((key, storage_type.name, numel))
        if cached is None:
            cached = self._storages[key, storage_type.name, numel] = self._read_storage(key, storage_type.name, numel)
        return cached

    def _read_storage(self, key: str, type_name: str, numel: int) -> Any:
        entry = f"{self._root}/data/{key}"
        dtype = _STORAGE_DTYPES[type_name]
        item = np.dtype("<u2" if dtype == _BFLOAT16 else dtype).newbyteorder("<")
        what = f"storage {entry} ({type_name}, {_plural(numel, 'element')})"
        try:
            info = self._archive.getinfo(entry)
        except KeyError:
            return self._invalid(f"{what}: no such record in the archive")
        if info.file_size % item.itemsize:
            return self._invalid(f"{what}: its {info.file_size} bytes are not a whole number of {item.itemsize}-byte elements")
        if numel * item.itemsize > info.file_size:
            return self._invalid(f"{what}: its record holds only {_plural(info.file_size // item.itemsize, 'element')}")
        try:
            raw = self._archive.read(info)
        except Exception as e:
            raise CheckpointError(f"{self._path}: {what}: unreadable record ({type(e).__name__}: {e})") from e
        if len(raw) != info.file_size:
            raise CheckpointError(f"{self._path}: {what}: read {len(raw)} bytes, the archive lists {info.file_size}")
        arr = np.frombuffer(raw, item, count=numel)
        if dtype == _BFLOAT16:  # the upper half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dtype is np.bool_:  # any non-zero byte is True, as in torch
            arr = arr != 0
        arr.flags.writeable = False
        self._described[id(arr)] = (arr, what)
        return arr

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_args: Any) -> Any:
        """``torch._utils._rebuild_tensor_v2``: an owned copy of the elements, after checking each is in the storage."""
        if isinstance(storage, _Invalid):
            return storage
        described = self._described.get(id(storage))
        if described is None or described[0] is not storage:
            return self._invalid(f"a tensor whose storage is {_show(storage)}, not a storage record")
        arr, what = described
        problem = _layout_problem(arr.size, offset, size, stride)
        if problem is not None:
            return self._invalid(f"{what}: {problem}")
        size = tuple(size)
        if 0 in size:
            return np.zeros(size, arr.dtype)
        # Every element index is now below arr.size; a dimension of length 1 never moves (stride 0),
        # so no byte stride exceeds the storage's length.
        strides = tuple(s * arr.itemsize if d > 1 else 0 for d, s in zip(size, stride))
        view = np.lib.stride_tricks.as_strided(arr[offset:], shape=size, strides=strides, writeable=False)
        return np.array(view, copy=True, order="C")

    def _rebuild_parameter(self, data: Any, *_args: Any) -> Any:
        if isinstance(data, (np.ndarray, _Invalid)):
            return data
        return self._invalid(f"a parameter whose data is {_show(data)}, not a tensor")


_DATA = (str, bytes, int, float, bool, type(None), np.ndarray)


def _first_problem(obj: Any) -> str | None:
    """What, in the unpickled ``obj``, is neither data nor a valid tensor -- the first, with where it is."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if isinstance(item, _Invalid):
            return f"tensor {where or '(the whole object)'}: {item.problem}"
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            children = []
            for k, v in item.items():
                name = repr(k) if isinstance(k, str) and len(k) <= 300 else _show(k)
                children += [(k, f"{where} (a key)"), (v, f"{where}[{name}]")]
        elif isinstance(item, (list, tuple)):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
        elif isinstance(item, (set, frozenset)):
            children = [(v, f"{where}{{...}}") for v in item]
        elif isinstance(item, _DATA):
            continue
        else:  # a global the file names but does not use as torch does (say torch.FloatStorage as a value)
            what = f"torch.{item.name}" if isinstance(item, _StorageType) else _show(item)
            return f"{where or 'the whole object'} is {what}, not data"
        stack.extend(reversed(children))
    return None


def read_torch_file(path: str | Path) -> Any:
    """The object saved in a zip-format ``.pt`` file, tensors as numpy arrays; never runs its code.

    Every tensor is checked against its storage's bytes (dtype, offset, size, stride) before any
    element is read, and returned as an owned copy. A file that cannot be read -- a corrupt or
    truncated archive or pickle, a missing storage record, a tensor reaching outside its storage --
    raises :class:`CheckpointError` naming the file (and the tensor's key, where it has one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fp:  # errors opening the file (permissions) are the caller's, not corruption
        if not zipfile.is_zipfile(fp):
            raise CheckpointError(
                f"{path}: not a zip-format PyTorch file (a legacy pre-1.6 pickle, or not a checkpoint at all); "
                "re-save it with a current torch.save, or export the state dict as .npz"
            )
        try:
            return _read_archive(fp, path)
        except CheckpointError:
            raise
        except Exception as e:  # corrupt archive, pickle or storage
            raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {e})") from e


def _read_archive(fp: Any, path: Path) -> Any:
    fp.seek(0)
    with zipfile.ZipFile(fp) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError(f"{path}: zip archive without a data.pkl: not a PyTorch checkpoint")
        root = pkl[0].split("/")[0]
        compressed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
        if compressed:  # torch.save stores records uncompressed; a compressed one could expand without bound
            raise CheckpointError(f"{path}: compressed record {compressed[0]!r}: PyTorch checkpoints store records "
                                  "uncompressed; refused (a compressed record can expand far beyond the file's size)")
        byteorder = f"{root}/byteorder"
        if byteorder in names:
            mark = archive.read(byteorder).strip()
            if mark != b"little":
                what = "big-endian checkpoints are not supported" if mark == b"big" else f"unknown byte order {mark[:20]!r}"
                raise CheckpointError(f"{path}: {what}")
        unpickler = _WeightsOnlyUnpickler(archive.read(pkl[0]), archive, root, path)
        obj = unpickler.load()
    problem = _first_problem(obj)
    if problem is None and unpickler.invalid:  # a bad tensor the saved object does not hold
        problem = f"tensor (not part of the saved object): {unpickler.invalid[0].problem}"
    if problem is not None:
        raise CheckpointError(f"{path}: refusing to load {problem}")
    return obj


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The model state dict in a ``.pt`` training checkpoint, ``.pt`` state dict or ``.npz``; prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        what = "a directory, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
        raise FileNotFoundError(f"{path}: {what}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                obj: Any = {k: f[k] for k in f.files}
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable .npz ({type(e).__name__}: {e})") from e
    else:
        obj = read_torch_file(path)
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (or a training checkpoint holding 'model_state_dict')")
    out = {}
    for k, v in obj.items():
        for p in PREFIXES:
            k = k.removeprefix(p)
        # Accept PyTorch's legacy weight_norm names too.
        k = k.replace(".weight_g", ".parametrizations.weight.original0").replace(".weight_v", ".parametrizations.weight.original1")
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Key and layout mapping.

Converter = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]  # (from torch, to torch)

_CONV_V: Converter = (lambda a: a.transpose(2, 1, 0), lambda a: a.transpose(2, 1, 0))  # [out,in,k] <-> [k,in,out]
_CONVTR_V: Converter = (lambda a: a.transpose(2, 0, 1), lambda a: a.transpose(1, 2, 0))  # [in,out,k] <-> [k,in,out]
_G: Converter = (lambda a: a.reshape(-1), lambda a: a.reshape(-1, 1, 1))
_SAME: Converter = (lambda a: a, lambda a: a)
_T: Converter = (lambda a: a.T, lambda a: a.T)
_WN = {"weight_v": ("parametrizations.weight.original1", None), "weight_g": ("parametrizations.weight.original0", _G), "bias": ("bias", _SAME)}
_LSTM = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def _param_key(path: tuple, cfg: CodecConfig) -> tuple[str, Converter]:
    """Torch key and converter for a (non-quantizer) parameter path of ``BioCodecModel``."""
    r = cfg.n_residual_layers
    n_stages = len(cfg.ratios)
    part, where, *rest = path
    leaf = rest[-1]

    def conv(index: int, block: str = "", transposed: bool = False) -> tuple[str, Converter]:
        name, conv_ = _WN[leaf]
        if conv_ is None:
            conv_ = _CONVTR_V if transposed else _CONV_V
        layer = "convtr.convtr" if transposed else "conv.conv"
        return f"{part}.model.{index}.{block}{layer}.{name}", conv_

    def residual(base: int) -> tuple[str, Converter]:
        j, which = rest[2], rest[3]
        return conv(base + j, f"block.{1 if which == 'dilated' else 3}.")

    def lstm(index: int) -> tuple[str, Converter]:
        layer = rest[2]
        return f"{part}.model.{index}.lstm.{_LSTM[leaf]}_l{layer}", (_T if leaf.startswith("w") else _SAME)

    if part == "encoder":
        if where == "conv_in":
            return conv(0)
        if where == "stages":
            s = rest[0]
            base = 1 + s * (r + 2)
            return conv(base + r + 1) if rest[1] == "downsample" else residual(base)
        if where == "lstm":
            return lstm(1 + n_stages * (r + 2))
        if where == "conv_out":
            return conv(3 + n_stages * (r + 2))
    elif part == "decoder":
        if where == "conv_in":
            return conv(0)
        if where == "lstm":
            return lstm(1)
        if where == "stages":
            s = rest[0]
            base = 3 + s * (r + 2)
            return conv(base, transposed=True) if rest[1] == "upsample" else residual(base + 1)
        if where == "conv_out":
            return conv(3 + n_stages * (r + 2))
    raise KeyError(f"no torch key known for parameter {'.'.join(map(str, path))}")


_QUANT_PARAMS = {  # our RVQProjections field -> (torch suffix, converter)
    "in_kernel": ("project_in.weight", _T),
    "in_bias": ("project_in.bias", _SAME),
    "out_kernel": ("project_out.weight", _T),
    "out_bias": ("project_out.bias", _SAME),
}
_CODEBOOK_FIELDS = {"codebook": "embed", "embed_avg": "embed_avg", "cluster_size": "cluster_size", "initialized": "inited"}


def expected_torch_shapes(cfg: CodecConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the original's model state dict for ``cfg``, with its shape."""
    sd = to_torch_state_dict(*_abstract_numpy(cfg), cfg)
    return {k: v.shape for k, v in sd.items()}


def _abstract_numpy(cfg: CodecConfig):
    _, params = abstract_model(cfg)
    zeros = {path: np.zeros(v.shape, v.dtype) for path, v in _flat(params).items()}
    return zeros, init_codebooks(cfg)


def _flat(params) -> dict[tuple, Any]:
    return {path: var.get_value() for path, var in nnx.to_flat_state(params)}


def to_torch_state_dict(params_flat: dict[tuple, Any] | Any, codebooks, cfg: CodecConfig) -> dict[str, np.ndarray]:
    """Our parameters (an ``nnx.State`` or its flat dict) and codebooks as the original's state dict."""
    out = _params_to_torch(params_flat, cfg)
    for field, name in _CODEBOOK_FIELDS.items():
        value = np.asarray(getattr(codebooks, field))
        for i in range(cfg.n_q):
            v = value[i].astype(np.float32)
            out[f"quantizer.vq.layers.{i}._codebook.{name}"] = v.reshape(1) if field == "initialized" else v
    return out


def _params_to_torch(params_flat: dict[tuple, Any] | Any, cfg: CodecConfig) -> dict[str, np.ndarray]:
    """Parameters (or any tree shaped like them: Adam's moments) under the original's keys and layouts."""
    if not isinstance(params_flat, dict):
        params_flat = _flat(params_flat)
    out: dict[str, np.ndarray] = {}
    for path, value in params_flat.items():
        value = np.asarray(value)
        if path[0] == "quantizer":
            suffix, (_, to_t) = _QUANT_PARAMS[path[1]]
            for i in range(cfg.n_q):
                out[f"quantizer.vq.layers.{i}.{suffix}"] = np.ascontiguousarray(to_t(value[i]))
        else:
            key, (_, to_t) = _param_key(path, cfg)
            out[key] = np.ascontiguousarray(to_t(value))
    return out


def from_torch_state_dict(sd: dict[str, np.ndarray], cfg: CodecConfig, source: str = "checkpoint"):
    """Map the original's state dict onto ``(params, codebooks)``; strict.

    Raises :class:`CheckpointError` listing every missing key, unexpected key and shape mismatch.
    """
    expected = expected_torch_shapes(cfg)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)}, model {expected[k]}"
        for k in set(expected) & set(sd)
        if tuple(sd[k].shape) != tuple(expected[k])
    )
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit the {cfg.ratios} codec:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointError("\n".join(lines))

    _, abstract = abstract_model(cfg)
    flat = {}
    for path, var in nnx.to_flat_state(abstract):
        if path[0] == "quantizer":
            suffix, (from_t, _) = _QUANT_PARAMS[path[1]]
            arr = np.stack([from_t(sd[f"quantizer.vq.layers.{i}.{suffix}"]) for i in range(cfg.n_q)])
        else:
            key, (from_t, _) = _param_key(path, cfg)
            arr = from_t(sd[key])
        flat[path] = var.replace(jnp.asarray(np.ascontiguousarray(arr, dtype=np.float32)))
    params = nnx.from_flat_state(flat)

    def stacked(name: str) -> np.ndarray:
        return np.stack([sd[f"quantizer.vq.layers.{i}._codebook.{name}"] for i in range(cfg.n_q)]).astype(np.float32)

    codebooks = CodebookState(
        codebook=jnp.asarray(stacked("embed")),
        embed_avg=jnp.asarray(stacked("embed_avg")),
        cluster_size=jnp.asarray(stacked("cluster_size")),
        initialized=jnp.asarray(stacked("inited").reshape(cfg.n_q) > 0),
    )
    return params, codebooks


def infer_codec_config(sd: dict[str, np.ndarray], source: str = "checkpoint") -> CodecConfig:
    """The preset (``eeg`` or ``emg``) whose state-dict shapes the checkpoint has exactly."""
    fits = []
    for name in ("eeg", "emg"):
        cfg = preset(name).codec
        shapes = expected_torch_shapes(cfg)
        if set(shapes) == set(sd) and all(tuple(sd[k].shape) == s for k, s in shapes.items()):
            fits.append(cfg)
    if len(fits) != 1:
        raise CheckpointError(
            f"{source}: its shapes fit {'no' if not fits else 'more than one'} known preset (eeg, emg); "
            "pass the codec config explicitly"
        )
    return fits[0]


# --------------------------------------------------------------------------------------------
# Writing the original's training checkpoint.

_NAME_RANK = {
    "encoder": 0, "decoder": 1, "quantizer": 2,
    # A module's own parameters (Linear: weight, bias) come before its children (weight norm's
    # ``parametrizations``, which is why a conv's bias precedes its g and v).
    "weight": 0, "bias": 1, "parametrizations": 2,
    "project_in": 0, "project_out": 1, "_codebook": 2,
    "inited": 0, "cluster_size": 1, "embed": 2, "embed_avg": 3,
}
_LSTM_PARAM = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")
_LSTM_RANK = {"weight_ih": 0, "weight_hh": 1, "bias_ih": 2, "bias_hh": 3}


def _order_token(token: str) -> tuple:
    if token.isdigit():
        return (0, int(token), "")
    m = _LSTM_PARAM.fullmatch(token)
    if m:
        return (1, int(m[2]) * 4 + _LSTM_RANK[m[1]], token)
    return (1, _NAME_RANK.get(token, len(_NAME_RANK)), token)


def original_key_order(keys) -> list[str]:
    """The original's state-dict keys (no prefix) in the order its ``model.state_dict()`` lists them.

    That is PyTorch's module order: layers by index, a module's own parameters then buffers then
    submodules. Without the buffers (:func:`is_buffer`) it is the order of ``model.parameters()``,
    which numbers the optimiser's state.
    """
    return sorted(keys, key=lambda k: tuple(_order_token(t) for t in k.split(".")))


def is_buffer(key: str) -> bool:
    """Whether a state-dict key is a buffer (codebook statistics), not a trained parameter."""
    return "._codebook." in key


def _find_adam_state(opt_state: Any):
    found = [
        s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ]
    if len(found) != 1:
        raise ValueError(f"expected one optax Adam state (ScaleByAdamState) in the optimiser state, found {len(found)}")
    return found[0]


def to_torch_checkpoint(
    params: Any, codebooks: CodebookState, config: Config, *, epoch: int = 0, step: int = 0, opt_state: Any = None
) -> dict[str, Any]:
    """The original's training checkpoint as a dict, ready for :func:`~biocodec_jax.interop.torch_writer.write_torch_file`.

    ``{"epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict"}`` with the
    structure of the original's files (``tests/fixtures/eeg/biocodec_eeg_random_ckpt.pt``):

    ``model_state_dict``
        every parameter and codebook buffer, float32, keys ``_orig_mod.``-prefixed, in the
        original's key order (a plain dict, as in the original's file).
    ``optimizer_state_dict``
        ``torch.optim.Adam``'s: ``param_groups`` holds one group with the original's settings
        (``betas`` from ``config.optim`` -- (0.5, 0.9) --, ``eps``, ``weight_decay`` 0, ``lr`` the
        learning rate our schedule gives at ``step``) over parameter indices ``0..N-1`` in the order of
        the original's ``model.parameters()``. ``state``: when ``opt_state`` (our optax Adam state,
        e.g. a ``TrainState.opt_state``) has taken steps, per parameter ``{"step": count,
        "exp_avg": mu, "exp_avg_sq": nu}`` with optax's ``mu``/``nu`` mapped to the parameter's
        torch layout (Adam's moments are elementwise, so the same transposes apply); else empty
        (as a torch Adam that has not stepped), which ``Adam.load_state_dict`` accepts.
    ``scheduler_state_dict``
        the original's keys: ``last_epoch`` = ``step`` (the scheduler steps once per optimiser
        step), ``_step_count`` = ``step + 1``, ``base_lrs`` = ``[config.optim.learning_rate]``.
    """
    cfg = config.codec
    weights = to_torch_state_dict(params, codebooks, cfg)
    order = original_key_order(weights)
    model_sd = {COMPILED_PREFIX + k: np.asarray(weights[k], np.float32) for k in order}
    param_keys = [k for k in order if not is_buffer(k)]

    state: dict[int, dict[str, np.ndarray]] = {}
    if opt_state is not None:
        adam = _find_adam_state(opt_state)
        count = int(np.asarray(adam.count))
        if count > 0:
            mu, nu = _params_to_torch(adam.mu, cfg), _params_to_torch(adam.nu, cfg)
            state = {
                i: {
                    "step": np.array(count, np.float32),
                    "exp_avg": np.asarray(mu[k], np.float32),
                    "exp_avg_sq": np.asarray(nu[k], np.float32),
                }
                for i, k in enumerate(param_keys)
            }
    optim = config.optim
    param_group = {
        "lr": float(make_schedule(optim)(step)),
        "betas": (float(optim.b1), float(optim.b2)),
        "eps": float(optim.eps),
        "weight_decay": 0,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "fused": None,
        "decoupled_weight_decay": False,
        "params": list(range(len(param_keys))),
    }
    return {
        "epoch": int(epoch),
        "model_state_dict": model_sd,
        "optimizer_state_dict": {"state": state, "param_groups": [param_group]},
        "scheduler_state_dict": {
            "last_epoch": int(step), "_step_count": int(step) + 1, "base_lrs": [float(optim.learning_rate)],
        },
    }


def export_torch_checkpoint(
    source: str | Path, path: str | Path, *, step: int | None = None, epoch: int = 0
) -> dict[str, Any]:
    """Write the original's training checkpoint (``.pt``, no torch needed) from one of our models.

    ``source``: a codec written by ``Codec.save`` (weights only: the optimiser state is written
    empty, scheduler at step 0), or a training workdir / its ``checkpoints/`` directory (the
    checkpoint of ``step``, default the latest readable one: weights, codebooks, and Adam's moments
    and step count, see :func:`to_torch_checkpoint`). Returns the object written.
    """
    source = Path(source).absolute()
    if not source.is_dir():
        what = "a file, not" if source.exists() else "no such directory:"
        raise FileNotFoundError(f"{source}: {what} a saved codec or training run")
    if storage.path_kind(source) is storage.PathKind.RUN:
        state = storage.load_run_state(source, step)
        obj = to_torch_checkpoint(
            state.params, state.codebooks, state.config, epoch=epoch, step=int(state.step), opt_state=state.opt_state
        )
    else:
        stored = storage.load(source, step)  # a saved codec (step: refused, one set of weights)
        obj = to_torch_checkpoint(stored.params, stored.codebooks, stored.config, epoch=epoch)
    write_torch_file(obj, path)
    return obj
