"""The original's checkpoint format: read it safely and map its keys onto our parameters and codebooks.

Reads, without PyTorch installed and without executing code from the file:
- the original's training checkpoint (``{"epoch", "model_state_dict", "optimizer_state_dict",
  "scheduler_state_dict"}``, model keys prefixed ``_orig_mod.``): the model entry is used, the rest ignored;
- a plain state dict saved with ``torch.save`` (``.pt`` / ``.pth``) or as ``.npz``.

``.pt`` files are zip archives holding a pickle plus raw tensor storages. The pickle is read by an
unpickler that only knows tensors, storages and ordered dicts (like ``torch.load(weights_only=True)``);
anything else in it is refused with an error naming the object it references.

Layouts: the original stores conv kernels ``[out, in, k]`` (transposed convs ``[in, out, k]``), LSTM
weights ``[4H, in]`` and Linear weights ``[out, in]``; we store ``[k, in, out]``, ``[in, 4H]``, ``[in, out]``.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from biocodec_jax.config import CodecConfig, preset
from biocodec_jax.model import abstract_model, init_codebooks
from biocodec_jax.quantization.codebook import CodebookState

PREFIXES = ("_orig_mod.", "module.")

# --------------------------------------------------------------------------------------------
# A weights-only reader for PyTorch's zip serialisation.


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the problem."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_args: Any) -> np.ndarray:
    if not size:
        return storage[offset].copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)


def _rebuild_parameter(data: np.ndarray, *_args: Any) -> np.ndarray:
    return data


class _WeightsOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self._path}: refusing to load: the file references {module}.{name}, which is not tensor "
            "data; only weights (tensors, storages, dicts, numbers) are read from .pt files"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            dtype = _STORAGE_DTYPES[storage_type.name]
            if dtype == "bfloat16":  # the upper half of a float32
                arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
            self._storages[key] = arr[:numel]
        return self._storages[key]


def read_torch_file(path: str | Path) -> Any:
    """The object saved in a zip-format ``.pt`` file, tensors as numpy arrays; never runs its code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a zip-format PyTorch file (a legacy pre-1.6 pickle, or not a checkpoint at all); "
            "re-save it with a current torch.save, or export the state dict as .npz"
        )
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError(f"{path}: zip archive without a data.pkl: not a PyTorch checkpoint")
        root = pkl[0].split("/")[0]
        byteorder = f"{root}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        try:
            return _WeightsOnlyUnpickler(archive.read(pkl[0]), archive, root, path).load()
        except CheckpointError:
            raise
        except Exception as e:  # corrupt pickle or storage
            raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {e})") from e


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The model state dict in a ``.pt`` training checkpoint, ``.pt`` state dict or ``.npz``; prefixes stripped."""
    path = Path(path)
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
    for field, name in _CODEBOOK_FIELDS.items():
        value = np.asarray(getattr(codebooks, field))
        for i in range(cfg.n_q):
            v = value[i].astype(np.float32)
            out[f"quantizer.vq.layers.{i}._codebook.{name}"] = v.reshape(1) if field == "initialized" else v
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
