"""``Codec``: a trained (or fresh) BioCodec as one object: config + parameters + codebooks.

>>> from biocodec_jax import Codec
>>> codec = Codec.from_preset("eeg", seed=0)
>>> codes = codec.encode(x)            # x [B, C, T] float32 -> int32 [B, C, K, ceil(T / hop)]
>>> y = codec.decode(codes)            # -> [B, C, T' * hop]

Every channel is coded on its own, as in the original: ``[B, C, T]`` is treated as ``B*C``
single-channel items. Inputs may be numpy or JAX arrays of any length; outputs are JAX arrays.
Compiled functions are cached per input shape. Where a codec lives on disk (a saved codec, a
training run, the original's ``.pt``) is :mod:`biocodec_jax.storage`'s business; this class builds
on what it reads.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from biocodec_jax import config as config_lib
from biocodec_jax import model as model_lib
from biocodec_jax import storage, streaming, tokenizer
from biocodec_jax.config import CodecConfig, Config, Numerics
from biocodec_jax.interop import torch_checkpoint
from biocodec_jax.interop.torch_writer import write_torch_file
from biocodec_jax.quantization import rvq
from biocodec_jax.quantization.codebook import CodebookState
from data_pipelines import paths
from data_pipelines.config import PrepareConfig, codec_prepare_config

# The file names of a saved codec, kept here for existing imports (their home is biocodec_jax.storage).
from biocodec_jax.storage import ARRAYS_DIR, CONFIG_FILE, METADATA_FILE, PREPROCESSING_FILE  # noqa: F401

FINGERPRINT_CHARS = 16  # hex digits of Codec.fingerprint


# The compiled pure functions over single-channel items [N, T] (codes [N, T', K]); the benchmarks
# lower them ahead of time.


@functools.partial(jax.jit, static_argnums=0)
def embed_items(graphdef, params, x):
    return model_lib.embed(graphdef, params, x)


@functools.partial(jax.jit, static_argnums=(0, 4))
def encode_items(graphdef, params, codebooks, x, n_q):
    return model_lib.encode(graphdef, params, codebooks, x, n_q)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def encode_items_with_embeddings(graphdef, params, codebooks, x, n_q, pool):
    """(codes ``[N, T', n_q]``, encoder output ``[N, T', D]``, or its mean over frames ``[N, D]`` if ``pool``):
    one encoder pass for both (the features of the downstream evaluation)."""
    model = nnx.merge(graphdef, params)
    emb = model.embed(x)
    return rvq.encode(model.quantizer, codebooks, emb, n_q), (jnp.mean(emb, axis=1) if pool else emb)


@functools.partial(jax.jit, static_argnums=0)
def decode_items(graphdef, params, codebooks, codes):
    return model_lib.decode(graphdef, params, codebooks, codes)


@functools.partial(jax.jit, static_argnums=(0, 4))
def reconstruct_items(graphdef, params, codebooks, x, n_q):
    codes = model_lib.encode(graphdef, params, codebooks, x, n_q)
    return model_lib.decode(graphdef, params, codebooks, codes)[:, : x.shape[-1]]


def _as_items(x: Any, name: str = "x") -> tuple[jax.Array, tuple[int, int]]:
    """``[B, C, T]`` -> ``[B*C, T]`` float32, with a clear error for anything else."""
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be [batch, channels, time]; got shape {tuple(x.shape)}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has no samples")
    return x.reshape(-1, x.shape[-1]).astype(jnp.float32), x.shape[:2]


@dataclasses.dataclass
class Codec:
    """A BioCodec model ready to embed, encode, decode and reconstruct signals."""

    config: Config
    params: nnx.State
    codebooks: CodebookState
    graphdef: nnx.GraphDef = dataclasses.field(repr=False, default=None)
    # Provenance (see METADATA_FILE): how the training data was prepared, and which run made it.
    metadata: dict = dataclasses.field(repr=False, default_factory=dict)
    # How it computes (not saved with it): float32 by default; see with_numerics.
    numerics: Numerics = dataclasses.field(default_factory=Numerics)

    def __post_init__(self):
        if self.numerics.precision == "float64":
            raise ValueError("a Codec computes in float32 or bfloat16 (its parameters are float32); float64 is for training checks")
        if self.graphdef is None:
            self.graphdef, _ = model_lib.abstract_model(self.codec_config, self.numerics)

    def with_numerics(self, precision: str | None = None, *, conv_impl: str | None = None,
                      lstm_unroll: int | None = None) -> "Codec":
        """The same weights and codebooks computing another way, e.g. ``codec.with_numerics("bfloat16")``.

        bfloat16: the encoder and decoder compute in bfloat16 (the quantizer in float32), about
        twice as fast on GPUs and TPUs; a small share of codes differ from float32's (frames where
        two codes are nearly tied; measured in the README). Unchanged settings are kept.
        """
        n = self.numerics
        numerics = Numerics(
            precision or n.precision,
            n.conv_impl if conv_impl is None else conv_impl,
            n.lstm_unroll if lstm_unroll is None else lstm_unroll,
        )
        return dataclasses.replace(self, numerics=numerics, graphdef=None)

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Config, seed: int = 0, init_batch: Any = None) -> "Codec":
        """Random PyTorch-style init; codebooks zero (as the original) unless ``init_batch`` is given.

        ``init_batch`` (``[B, C, T]``) runs the original's k-means initialisation of the codebooks.
        """
        graphdef, params = model_lib.init_model(config.codec, seed)
        codebooks = model_lib.init_codebooks(config.codec)
        if init_batch is not None:
            x, _ = _as_items(init_batch, "init_batch")
            key = jax.random.fold_in(jax.random.key(seed), 1)
            codebooks = jax.jit(model_lib.kmeans_init, static_argnums=(0, 2))(graphdef, params, config.codec, x, key)
        return cls(config, params, codebooks, graphdef)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, init_batch: Any = None) -> "Codec":
        """A fresh codec of preset ``eeg``, ``emg`` or ``tiny`` (see :meth:`from_config`)."""
        return cls.from_config(config_lib.preset(name), seed, init_batch)

    @classmethod
    def from_torch_checkpoint(cls, path: str | Path, config: Config | str | None = None) -> "Codec":
        """Load the original's weights: its ``.pt`` training checkpoint, a ``.pt`` state dict or ``.npz``.

        The preset (eeg or emg) is recognised from the weight shapes unless ``config`` (a Config or
        preset name) is given. Nothing in the file is executed; any missing, unexpected or mis-shaped
        key raises :class:`~biocodec_jax.interop.torch_checkpoint.CheckpointError` naming it. ``path``
        may be a ``gs://`` URL (downloaded to a temporary file first).
        """
        with paths.local_copy(path) as local:
            sd = torch_checkpoint.load_state_dict(local)  # the original's format: its home is interop
        if config is None:
            codec_cfg = torch_checkpoint.infer_codec_config(sd, str(path))
            config = config_lib.preset("eeg" if codec_cfg == config_lib.preset("eeg").codec else "emg")
        elif isinstance(config, str):
            config = config_lib.preset(config)
        params, codebooks = torch_checkpoint.from_torch_state_dict(sd, config.codec, str(path))
        return cls(config, params, codebooks)

    @classmethod
    def open(cls, path: str | Path) -> "Codec":
        """Whatever ``path`` holds: a saved codec or training run (:meth:`load`), or the original's
        ``.pt`` / ``.npz`` (:meth:`from_torch_checkpoint`). Local paths and ``gs://`` URLs."""
        if storage.path_kind(path) is storage.PathKind.TORCH:
            return cls.from_torch_checkpoint(path)
        return cls.load(path)

    def to_torch_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under the original's state-dict keys and layouts (numpy arrays)."""
        return torch_checkpoint.to_torch_state_dict(self.params, self.codebooks, self.codec_config)

    def to_torch_checkpoint(self, path: str | Path, epoch: int = 0, *, step: int = 0, opt_state: Any = None) -> Path:
        """Write the original's training checkpoint (``.pt``; PyTorch not needed) that it can resume from.

        ``{"epoch", "model_state_dict" (``_orig_mod.`` keys, the original's order), "optimizer_state_dict",
        "scheduler_state_dict"}``; ``torch.load(path, weights_only=True)`` reads it. The Adam state is
        empty unless ``opt_state`` (our optax state, e.g. ``TrainState.opt_state``) is given; see
        :func:`~biocodec_jax.interop.torch_checkpoint.to_torch_checkpoint`. A training run's
        checkpoint, with its Adam state: ``biocodec-jax convert --to-torch WORKDIR --output CKPT.pt``.
        ``path`` may be a ``gs://`` URL (written locally, then uploaded whole).
        """
        obj = torch_checkpoint.to_torch_checkpoint(
            self.params, self.codebooks, self.config, epoch=epoch, step=step, opt_state=opt_state
        )
        if not paths.is_url(path):
            return write_torch_file(obj, path)
        with tempfile.TemporaryDirectory(prefix="biocodec-torch-") as d:
            local = write_torch_file(obj, Path(d) / paths.as_path(path).name)  # same name: same archive root
            with paths.staged_file(path) as upload:
                shutil.move(local, upload)
        return paths.as_path(path)

    # --- our own format ----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``metadata.json`` and the arrays (Orbax) into ``directory`` (a local
        path or a ``gs://`` URL); returns it (:func:`biocodec_jax.storage.save_codec`)."""
        return storage.save_codec(directory, self.config, self.params, self.codebooks, self.metadata)

    @classmethod
    def load(cls, directory: str | Path, step: int | None = None) -> "Codec":
        """Read a codec written by :meth:`save`, or the model of a training run's checkpoint.

        ``directory`` may be a saved codec (has ``config.json``), a training workdir (has
        ``checkpoints/``) or a checkpoints directory, local or a ``gs://`` URL. From checkpoints,
        the parameters and codebooks of ``step`` (default: the latest readable one; an unreadable
        latest checkpoint is skipped with a warning) are loaded with the config stored in that
        checkpoint. See :func:`biocodec_jax.storage.load`.
        """
        stored = storage.load(directory, step)
        return cls(stored.config, stored.params, stored.codebooks, stored.graphdef, stored.metadata)

    # --- properties --------------------------------------------------------------------------

    @property
    def codec_config(self) -> CodecConfig:
        return self.config.codec

    @property
    def sample_rate(self) -> int:
        return self.codec_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.codec_config.hop_length

    @property
    def n_q(self) -> int:
        return self.codec_config.n_q

    @property
    def preprocessing(self) -> dict | None:
        """The ``prepare`` config of the training data as stored (``metadata.json`` /
        ``preprocessing.json``: a dict), or None where unknown (e.g. a ``.pt``); typed:
        :attr:`prepare_config`."""
        return self.metadata.get("preprocessing")

    @property
    def prepare_config(self) -> PrepareConfig:
        """How recordings are prepared for this codec, typed: the ``prepare`` config of its training
        data (:attr:`preprocessing`), else the preset of its modality at its rate (``emg`` for the
        emg preset, else ``eeg``; e.g. for the original's ``.pt``, which records none). ``tokenize``
        and ``report`` prepare recordings by it, with the function ``prepare`` made the training data
        with (:func:`data_pipelines.preprocess.preprocess_recording`). ValueError if the stored one
        is not a prepare config or resamples to another rate than the codec's."""
        return codec_prepare_config(self.preprocessing, sample_rate=self.sample_rate,
                                    modality="emg" if self.config.preset == "emg" else "eeg")

    def fingerprint(self) -> str:
        """A short stable id of this codec: sha256 of its codec config (JSON) and every weight.

        Hashes the architecture config, all parameters and the codebook states (path, dtype, shape
        and bytes of every array, in tree order); the first :data:`FINGERPRINT_CHARS` hex digits.
        Tokens carry it (``Tokens.codec_id``), and the evaluation's code cache is keyed by it.
        Computed on each call (it reads every weight): keep it if you need it often.
        """
        h = hashlib.sha256()
        h.update(json.dumps(config_lib.to_dict(self.codec_config), sort_keys=True).encode())
        for tree_name, tree in (("params", self.params), ("codebooks", self.codebooks)):
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                a = np.ascontiguousarray(np.asarray(leaf))
                h.update(f"{tree_name}{jax.tree_util.keystr(path)}:{a.dtype.str}:{a.shape}".encode())
                h.update(a.tobytes())
        return h.hexdigest()[:FINGERPRINT_CHARS]

    @property
    def initialized(self) -> bool:
        """Whether every codebook has been initialised (k-means or a loaded checkpoint)."""
        return bool(np.all(np.asarray(self.codebooks.initialized)))

    # --- the codec ---------------------------------------------------------------------------

    def embed(self, x: Any) -> jax.Array:
        """Encoder output before quantization: ``[B, C, T]`` -> ``[B, C, D, ceil(T/hop)]``."""
        items, (b, c) = _as_items(x)
        z = embed_items(self.graphdef, self.params, items)  # [N, T', D]
        return jnp.swapaxes(z, 1, 2).reshape(b, c, z.shape[2], z.shape[1])

    def encode(self, x: Any, n_q: int | None = None) -> jax.Array:
        """Codes of the first ``n_q`` quantizers (all by default): ``[B, C, T]`` -> int32 ``[B, C, n_q, T']``."""
        n_q = self.check_n_q(n_q)
        items, (b, c) = _as_items(x)
        codes = encode_items(self.graphdef, self.params, self.codebooks, items, n_q)  # [N, T', K]
        return jnp.swapaxes(codes, 1, 2).reshape(b, c, n_q, -1)

    def encode_with_embeddings(self, x: Any, n_q: int | None = None, *, pool: bool = False) -> tuple[jax.Array, jax.Array]:
        """:meth:`encode` and :meth:`embed` from one encoder pass: ``[B, C, T]`` -> (int32 codes
        ``[B, C, n_q, T']``, embeddings ``[B, C, D, T']``); with ``pool``, the embeddings averaged
        over frames, ``[B, C, D]`` (computed in the same compiled call)."""
        n_q = self.check_n_q(n_q)
        items, (b, c) = _as_items(x)
        codes, emb = encode_items_with_embeddings(self.graphdef, self.params, self.codebooks, items, n_q, bool(pool))
        codes = jnp.swapaxes(codes, 1, 2).reshape(b, c, n_q, -1)
        if pool:
            return codes, emb.reshape(b, c, -1)
        return codes, jnp.swapaxes(emb, 1, 2).reshape(b, c, emb.shape[2], emb.shape[1])

    def decode(self, codes: Any) -> jax.Array:
        """``[B, C, K, T']`` codes (``K <= n_q``: fewer quantizers = lower bitrate) -> ``[B, C, T' * hop]``."""
        codes = jnp.asarray(codes)
        if codes.ndim != 4:
            raise ValueError(f"codes must be [batch, channels, quantizers, frames]; got shape {tuple(codes.shape)}")
        b, c, k, t = codes.shape
        self.check_n_q(k)
        if not jnp.issubdtype(codes.dtype, jnp.integer):
            raise TypeError(f"codes must be integers; got {codes.dtype}")
        items = jnp.swapaxes(codes.reshape(b * c, k, t), 1, 2).astype(jnp.int32)
        return decode_items(self.graphdef, self.params, self.codebooks, items).reshape(b, c, -1)

    def reconstruct(self, x: Any, n_q: int | None = None) -> jax.Array:
        """Encode then decode, trimmed to the input length: ``[B, C, T]`` -> ``[B, C, T]``."""
        n_q = self.check_n_q(n_q)
        items, (b, c) = _as_items(x)
        return reconstruct_items(self.graphdef, self.params, self.codebooks, items, n_q).reshape(b, c, -1)

    def stream(self, n_channels: int, n_q: int | None = None):
        """A :class:`~biocodec_jax.streaming.StreamingEncoder` of ``n_channels`` channels.

        ``enc.push(chunk [C, n])`` returns int32 codes ``[C, n_q, m]`` of the frames completed so far
        (carrying convolution and LSTM state); ``enc.flush()`` the last, partial frame. All of them
        concatenated equal ``encode(x[None])[0]`` up to float32 rounding (see :mod:`biocodec_jax.streaming`).
        Streaming always computes in float32: a bfloat16 codec (:meth:`with_numerics`) streams
        the codes of its float32 self.
        """
        return streaming.StreamingEncoder(self, n_channels, n_q)

    def stream_decoder(self, n_channels: int, n_q: int | None = None):
        """A :class:`~biocodec_jax.streaming.StreamingDecoder`: ``dec.push(codes [C, K, m])`` -> samples ``[C, n]``.

        All samples returned by ``push`` and ``flush``, concatenated, equal ``decode(codes[None])[0]`` (to ~1e-7)
        of the float32 codec (streaming always computes in float32).
        """
        return streaming.StreamingDecoder(self, n_channels, n_q)

    # --- recordings <-> tokens -------------------------------------------------------------

    def tokenize(self, recording: Any, *, n_q: int | None = None, prep: Any = None, source: str | None = None):
        """A :class:`~biocodec_jax.tokenizer.Tokens` of ``recording`` (an ``mne.io.Raw`` or a path).

        Channels of the codec's modality, prepared as its training data (resampled to its rate,
        ``(x - median) / IQR`` per channel, clipped); see :func:`biocodec_jax.tokenizer.tokenize`.
        """
        return tokenizer.tokenize(self, recording, n_q=n_q, prep=prep, source=source)

    def detokenize(self, tokens: Any, *, resample: bool = True):
        """``tokens`` decoded into an ``mne.io.RawArray`` in physical units at the original rate.

        Raises ValueError naming both ids if the tokens were made by another codec; see
        :func:`biocodec_jax.tokenizer.detokenize`.
        """
        return tokenizer.detokenize(self, tokens, resample=resample)

    def check_n_q(self, n_q: int | None) -> int:
        """``n_q`` as an int, or all quantizers for None; ValueError unless ``1 <= n_q <= self.n_q``."""
        if n_q is None:
            return self.n_q
        if not 1 <= int(n_q) <= self.n_q:
            raise ValueError(f"n_q must be between 1 and {self.n_q}; got {n_q}")
        return int(n_q)
