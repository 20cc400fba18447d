"""The original's checkpoint format: read it safely and map its keys onto our parameters and codebooks.

Reads, without PyTorch installed and without executing code from the file:
- the original's training checkpoint (``{"epoch", "model_state_dict", "optimizer_state_dict",
  "scheduler_state_dict"}``, model keys prefixed ``_orig_mod.``): the model entry is used, the rest ignored;
- a plain state dict saved with ``torch.save`` (``.pt`` / ``.pth``) or as ``.npz``.

``.pt`` files are zip archives holding a pickle plus raw tensor storages. The pickle is read by an
unpickler that only knows tensors, storages and ordered dicts (like ``torch.load(weights_only=True)``);
anything else in it is refused with an error naming the object it references.

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
import zipfile
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from biocodec_jax.config import CodecConfig, Config, preset
from biocodec_jax.model import abstract_model, init_codebooks
from biocodec_jax.quantization.codebook import CodebookState

PREFIXES = ("_orig_mod.", "module.")
COMPILED_PREFIX = "_orig_mod."  # the original saved its torch.compile'd model

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
    import optax

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
    from biocodec_jax.training.optimizer import make_schedule

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
    from biocodec_jax import codec as codec_lib
    from biocodec_jax.interop.torch_writer import write_torch_file

    source = Path(source).absolute()
    if not source.is_dir():
        what = "a file, not" if source.exists() else "no such directory:"
        raise FileNotFoundError(f"{source}: {what} a saved codec or training run")
    if not (source / codec_lib.CONFIG_FILE).is_file() and codec_lib._has_checkpoints(source):
        from biocodec_jax.training import checkpointing

        directory = checkpointing.checkpoints_dir(source)
        with checkpointing.Checkpointer(directory, read_only=True, async_save=False) as ckpt:

            def read(s: int):
                return ckpt.restore(checkpointing.abstract_train_state(ckpt.restore_config(s)), step=s)

            state = ckpt.first_readable(step, read)
        obj = to_torch_checkpoint(
            state.params, state.codebooks, state.config, epoch=epoch, step=int(state.step), opt_state=state.opt_state
        )
    else:
        codec = codec_lib.Codec.load(source, step)
        obj = to_torch_checkpoint(codec.params, codec.codebooks, codec.config, epoch=epoch)
    write_torch_file(obj, path)
    return obj
