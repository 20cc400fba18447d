"""Streaming tokenization: encode chunks as they arrive, decode codes as they arrive.

>>> enc = codec.stream(n_channels)          # a StreamingEncoder
>>> for chunk in amplifier:                 # float32 [C, n], any n >= 1, preprocessed, at codec rate
...     codes = enc.push(chunk)             # int32 [C, K, m]: the m frames completed so far (m >= 0)
>>> codes = enc.flush()                     # the last, partial frame (if any)
>>> dec = codec.stream_decoder(n_channels)  # a StreamingDecoder
>>> y = dec.push(codes)                     # float32 [C, n]: the samples completed so far

The concatenation of everything ``push`` and ``flush`` return equals the offline result,
``codec.encode(x[None])[0]`` (``[C, K, ceil(T / hop)]``) and ``codec.decode(codes[None])[0]``, up to
float32 rounding (see "Exactness" below).

How it works. Every layer of the network (``biocodec_jax.nn``) has ``step(x, state) -> (y, state)``,
the same code as its offline call (which is ``step`` from no state), and ``init_state(batch)``;
this module only cuts the stream into chunks, keeps the state between them and jits. The network
is causal except at its two edges:

* at the start every convolution reflect-pads its input on the left, so the first outputs of a
  layer see a few later samples of that layer's input. Once a layer has more than ``p``
  (its left padding) input samples, though, it has produced exactly ``floor(n / stride)`` outputs
  for ``n`` inputs, and from then on output ``t`` depends only on inputs up to ``(t+1)*stride - 1``:
  the network is strictly causal. So the stream waits for the first ``warmup_frames`` frames
  (3 for the eeg and emg presets: the last convolution needs 3 frames to form its padding), runs
  them from the encoder's ``init_state`` (left reflect padding, as offline), and then carries per
  layer the last ``p`` input samples (every convolution) and ``(h, c)`` (every LSTM layer);
* at the end every strided convolution reflect-pads ``extra`` samples on the right so that the
  last, partial frame exists. ``flush`` runs the remaining ``r < hop`` samples through every layer
  with the carried state, and each layer pads them as it pads the end of a signal offline. A stream
  that ends before the warm-up is complete is short (under ``warmup_frames * hop`` samples) and is
  simply encoded offline.

After the warm-up, ``push`` runs one jitted step per completed frame (``hop`` samples in, one frame
out through every layer), so the compiled shapes recur and a 40 ms push costs a few milliseconds
on a 2-core CPU (``last_push_seconds``, :func:`measure_push_latency`). Streams compute as their
codec does (``Codec.with_numerics``: bfloat16, the convolution implementation, the LSTM unroll).

Exactness. Every layer computes the same operations on the same values as offline (the
convolution of the carried ``p`` samples plus the new ones instead of the whole padded signal).
XLA's CPU kernels, however, round some outputs of a float32 convolution or matmul differently
depending on the *total* size of the call (tiling; e.g. a matmul of fewer than ~64 rows takes
another kernel), so offline's own results at a given position depend on the length of the signal.
A streamed LSTM chunk therefore pads its input projection to at least 64 rows
(``nn.lstm.STREAM_MIN_PROJECTION_ROWS``, the kernel offline uses for any realistic length); with it,
streamed embeddings differ from offline by ~1e-7 where they are not bit-identical, and a code can
differ only where two codes are tied to that precision (measured: 0 or 1 frame in thousands; see
``tests/test_streaming.py``).

The decoder is the mirror image: transposed convolutions are causal and carry their last input
frame, the stride-1 convolutions carry their last ``p`` inputs, the LSTM its ``(h, c)``; the first
``warmup_frames`` frames (3: the decoder's first convolution reflect-pads 2 frames) are held back
until they can be decoded exactly; after that each frame pushed returns ``hop`` samples at once.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from biocodec_jax.quantization import rvq

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec


# --- one chunk through the network: the layers' own step (biocodec_jax.nn.seanet) ----------------


def _encode_chunk(graphdef, params, codebooks, state, x, n_q: int):
    """``x [N, n]`` -> ``(state, embeddings [N, m, D], codes [N, m, n_q])``; ``state`` None: the first chunk."""
    model = nnx.merge(graphdef, params)
    if state is None:
        state = model.encoder.init_state(x.shape[0])
    emb, state = model.encoder.step(x[..., None], state)
    return state, emb, rvq.encode(model.quantizer, codebooks, emb, n_q)


def _decode_chunk(graphdef, params, codebooks, state, codes):
    """``codes [N, m, K]`` -> ``(state, samples [N, m * hop])``; ``state`` None: the first chunk."""
    model = nnx.merge(graphdef, params)
    if state is None:
        state = model.decoder.init_state(codes.shape[0])
    y, state = model.decoder.step(rvq.decode(model.quantizer, codebooks, codes), state)
    return state, y[..., 0]


_JITTED: dict = {}


def _jitted(fn, graphdef, treedef, **static):
    """``fn`` jitted over ``(param leaves, codebooks, state, x)`` with everything else bound.

    Cached per model structure, so every stream of a codec shares the compiled chunks (jit keeps
    one per state structure and chunk shape: the first chunk, one frame, the last partial frame);
    a stream looks its function up once, and then a chunk hashes nothing (hashing a graphdef per
    call would cost more than the chunk's own dispatch).
    """
    key = (fn.__name__, graphdef, treedef, tuple(sorted(static.items())))
    if key not in _JITTED:

        def run(leaves, codebooks, state, x):
            return fn(graphdef, jax.tree.unflatten(treedef, leaves), codebooks, state, x, **static)

        _JITTED[key] = jax.jit(run)
    return _JITTED[key]


class _Runner:
    """The jitted chunk function of one codec, with its parameters flattened once."""

    def __init__(self, codec: "Codec", fn, **static):
        leaves, treedef = jax.tree.flatten(codec.params)
        self.leaves, self.codebooks = leaves, codec.codebooks
        self.fn = _jitted(fn, codec.graphdef, treedef, **static)

    def __call__(self, state, x):
        return self.fn(self.leaves, self.codebooks, state, x)


# --- warm-up lengths --------------------------------------------------------------------------


def _k_eff(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size - 1) * dilation + 1


def encoder_warmup_frames(cfg) -> int:
    """Frames the encoder needs before every layer has more input samples than its left padding."""
    strides = list(reversed(cfg.ratios))
    k_eff = _k_eff
    need = []  # (left padding, input samples per frame at that layer)
    per_frame = cfg.hop_length
    need.append((k_eff(cfg.kernel_size) - 1, per_frame))
    for s in strides:
        for j in range(cfg.n_residual_layers):
            need.append((k_eff(cfg.residual_kernel_size, cfg.dilation_base**j) - 1, per_frame))
        need.append((2 * s - s, per_frame))  # kernel 2s: the left padding s exceeds any right padding (< s)
        per_frame //= s
    need.append((k_eff(cfg.last_kernel_size) - 1, per_frame))
    return max(math.ceil((p + 1) / spf) for p, spf in need)


def decoder_warmup_frames(cfg) -> int:
    """Frames the decoder needs before every convolution has more inputs than its left padding."""
    k_eff = _k_eff
    need = [(k_eff(cfg.kernel_size) - 1, 1)]
    per_frame = 1
    for s in cfg.ratios:
        per_frame *= s
        for j in range(cfg.n_residual_layers):
            need.append((k_eff(cfg.residual_kernel_size, cfg.dilation_base**j) - 1, per_frame))
    need.append((k_eff(cfg.last_kernel_size) - 1, per_frame))
    return max(1, max(math.ceil((p + 1) / spf) for p, spf in need))


# --- the public objects -----------------------------------------------------------------------


class StreamClosedError(RuntimeError):
    """``push`` or ``flush`` after ``flush``."""


class StreamingEncoder:
    """Encodes ``[C, n]`` chunks as they arrive; see the module docstring and :meth:`Codec.stream`.

    Attributes: ``samples_pushed``, ``frames_emitted``, ``last_push_seconds`` (wall time of the
    last :meth:`push`, codes on the host included) and ``last_embeddings`` (``[C, D, m]``
    float32, the encoder outputs of the frames the last ``push``/``flush`` returned).
    """

    def __init__(self, codec: "Codec", n_channels: int, n_q: int | None = None):
        if int(n_channels) < 1:
            raise ValueError(f"n_channels must be >= 1; got {n_channels}")
        self.codec = codec
        self.n_channels = int(n_channels)
        self.n_q = codec.check_n_q(n_q)
        self.hop_length = codec.hop_length
        self.warmup_frames = encoder_warmup_frames(codec.codec_config)
        self.samples_pushed = 0
        self.frames_emitted = 0
        self.last_push_seconds = 0.0
        self._last_embeddings: Any = np.zeros((self.n_channels, codec.codec_config.dimension, 0), np.float32)
        self.closed = False
        self._pending = np.zeros((self.n_channels, 0), np.float32)
        self._state = None  # None until the warm-up frames have been encoded
        self._runner = _Runner(codec, _encode_chunk, n_q=self.n_q)

    @property
    def last_embeddings(self) -> np.ndarray:
        """Encoder outputs ``[C, D, m]`` (before quantization) of the frames the last push/flush returned."""
        if callable(self._last_embeddings):  # a short stream's flush: computed offline on demand
            self._last_embeddings = self._last_embeddings()
        return self._last_embeddings

    def _check(self, chunk: Any) -> np.ndarray:
        if self.closed:
            raise StreamClosedError("this stream was flushed; start a new one with codec.stream(n_channels)")
        x = np.asarray(chunk)
        if x.ndim != 2 or x.shape[0] != self.n_channels or x.shape[1] < 1:
            raise ValueError(
                f"chunk must be [n_channels={self.n_channels}, n] with n >= 1 samples; got shape {tuple(x.shape)}"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"chunk must be real numbers; got {x.dtype}")
        x = x.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("chunk contains NaN or infinite values")
        return x

    def _run(self, x: np.ndarray):
        self._state, emb, codes = self._runner(self._state, x)
        return emb, codes

    def _emit(self, embs: list, codes: list) -> np.ndarray:
        c, d = self.n_channels, self.codec.codec_config.dimension
        emb = jnp.concatenate(embs, axis=1) if embs else jnp.zeros((c, 0, d), jnp.float32)
        out = jnp.concatenate(codes, axis=1) if codes else jnp.zeros((c, 0, self.n_q), jnp.int32)
        self._last_embeddings = np.asarray(jnp.swapaxes(emb, 1, 2))
        out = np.asarray(jnp.swapaxes(out, 1, 2))  # [C, K, m]
        self.frames_emitted += out.shape[-1]
        return out

    def push(self, chunk: Any) -> np.ndarray:
        """Add ``chunk`` (``[C, n]``, any ``n >= 1``); returns int32 codes ``[C, K, m]`` of the frames it completed."""
        start = time.perf_counter()
        x = self._check(chunk)
        self.samples_pushed += x.shape[1]
        self._pending = np.concatenate([self._pending, x], axis=1)
        hop = self.hop_length
        embs, codes = [], []
        if self._state is None and self._pending.shape[1] >= self.warmup_frames * hop:
            n = self.warmup_frames * hop
            e, q = self._run(self._pending[:, :n])
            embs.append(e), codes.append(q)
            self._pending = self._pending[:, n:]
        if self._state is not None:
            n_frames = self._pending.shape[1] // hop
            for i in range(n_frames):  # one frame at a time: the same compiled step every time
                e, q = self._run(self._pending[:, i * hop : (i + 1) * hop])
                embs.append(e), codes.append(q)
            self._pending = self._pending[:, n_frames * hop :]
        out = self._emit(embs, codes)
        self.last_push_seconds = time.perf_counter() - start
        return out

    def flush(self) -> np.ndarray:
        """End the stream; returns the codes ``[C, K, m]`` of the frames not yet returned (the partial last one)."""
        if self.closed:
            raise StreamClosedError("this stream was already flushed; start a new one with codec.stream(n_channels)")
        self.closed = True
        embs, codes, x = [], [], self._pending[None]
        short = self._state is None and x.shape[-1] > 0
        if short:  # a short stream (under the warm-up): encoded offline, exact by construction
            codes.append(jnp.swapaxes(self.codec.encode(x, self.n_q)[0], 1, 2))
        elif x.shape[-1]:
            e, q = self._run(self._pending)  # the last, partial frame
            embs.append(e), codes.append(q)
        self._pending = self._pending[:, :0]
        self._state = None
        out = self._emit(embs, codes)
        if short:
            self._last_embeddings = lambda: np.asarray(self.codec.embed(x)[0])
        return out


class StreamingDecoder:
    """Decodes ``[C, K, m]`` codes as they arrive into ``[C, n]`` samples; see :meth:`Codec.stream_decoder`.

    The first ``warmup_frames`` frames are returned together, once the last of them arrives (the
    first convolution's reflect padding needs them); every later frame returns its ``hop``
    samples at once. ``flush`` returns what is still held back (only for streams shorter than the
    warm-up). ``last_push_seconds`` is the wall time of the last :meth:`push`.
    """

    def __init__(self, codec: "Codec", n_channels: int, n_q: int | None = None):
        if int(n_channels) < 1:
            raise ValueError(f"n_channels must be >= 1; got {n_channels}")
        self.codec = codec
        self.n_channels = int(n_channels)
        self.n_q = None if n_q is None else codec.check_n_q(n_q)  # None: set by the first push
        self.hop_length = codec.hop_length
        self.warmup_frames = decoder_warmup_frames(codec.codec_config)
        self.frames_pushed = 0
        self.samples_emitted = 0
        self.last_push_seconds = 0.0
        self.closed = False
        self._pending = None  # [C, m, K] int32 frames not yet decoded
        self._state = None
        self._runner = _Runner(codec, _decode_chunk)

    def _check(self, codes: Any) -> np.ndarray:
        if self.closed:
            raise StreamClosedError("this stream was flushed; start a new one with codec.stream_decoder(n_channels)")
        q = np.asarray(codes)
        k = self.n_q if self.n_q is not None else "K"
        if q.ndim != 3 or q.shape[0] != self.n_channels or (self.n_q is not None and q.shape[1] != self.n_q):
            raise ValueError(f"codes must be [n_channels={self.n_channels}, {k}, m]; got shape {tuple(q.shape)}")
        if not np.issubdtype(q.dtype, np.integer):
            raise TypeError(f"codes must be integers; got {q.dtype}")
        if self.n_q is None:
            self.n_q = self.codec.check_n_q(q.shape[1])
        if q.size and (q.min() < 0 or q.max() >= self.codec.codec_config.codebook_size):
            raise ValueError(f"codes must be in [0, {self.codec.codec_config.codebook_size}); got {q.min()}..{q.max()}")
        return np.swapaxes(q.astype(np.int32), 1, 2)  # [C, m, K]

    def _run(self, q: np.ndarray):
        self._state, y = self._runner(self._state, q)
        return y

    def _emit(self, ys: list) -> np.ndarray:
        out = np.asarray(jnp.concatenate(ys, axis=1)) if ys else np.zeros((self.n_channels, 0), np.float32)
        self.samples_emitted += out.shape[1]
        return out

    def push(self, codes: Any) -> np.ndarray:
        """Add ``codes`` (``[C, K, m]``, ``m >= 0``); returns float32 samples ``[C, n]`` completed so far."""
        start = time.perf_counter()
        q = self._check(codes)
        self.frames_pushed += q.shape[1]
        self._pending = q if self._pending is None else np.concatenate([self._pending, q], axis=1)
        ys = []
        if self._state is None and self._pending.shape[1] >= self.warmup_frames:
            ys.append(self._run(self._pending[:, : self.warmup_frames]))
            self._pending = self._pending[:, self.warmup_frames :]
        if self._state is not None:
            for i in range(self._pending.shape[1]):
                ys.append(self._run(self._pending[:, i : i + 1]))
            self._pending = self._pending[:, :0]
        out = self._emit(ys)
        self.last_push_seconds = time.perf_counter() - start
        return out

    def flush(self) -> np.ndarray:
        """End the stream; returns the samples still held back ``[C, n]`` (none once warmed up)."""
        if self.closed:
            raise StreamClosedError("this stream was already flushed; start a new one with codec.stream_decoder(n_channels)")
        self.closed = True
        ys = []
        if self._state is None and self._pending is not None and self._pending.shape[1]:
            codes = np.swapaxes(self._pending, 1, 2)[None]  # a short stream: offline is exact
            ys.append(self.codec.decode(codes)[0])
        self._pending, self._state = None, None
        return self._emit(ys)


def measure_push_latency(codec: "Codec", x: Any, chunk_ms: float = 40.0) -> dict[str, float]:
    """Push latency of :meth:`StreamingEncoder.push` for ``chunk_ms`` chunks of ``x [C, T]``.

    Compiles first (an untimed stream over the warm-up and a few frames), then streams all of
    ``x`` in chunks and returns ``{"chunk_samples", "n_chunks", "mean_s", "p50_s", "p95_s", "max_s"}``
    over the chunks (the warm-up chunks included; chunks that complete no frame are the cheap ones).
    """
    x = np.asarray(x, np.float32)
    n = max(1, int(round(chunk_ms * codec.sample_rate / 1000)))
    warm = codec.stream(x.shape[0])
    warm.push(x[:, : (warm.warmup_frames + 2) * codec.hop_length])
    enc = codec.stream(x.shape[0])
    times = []
    for i in range(0, x.shape[1], n):
        enc.push(x[:, i : i + n])
        times.append(enc.last_push_seconds)
    t = np.asarray(times)
    return {
        "chunk_samples": n,
        "n_chunks": len(t),
        "mean_s": float(t.mean()),
        "p50_s": float(np.percentile(t, 50)),
        "p95_s": float(np.percentile(t, 95)),
        "max_s": float(t.max()),
    }
