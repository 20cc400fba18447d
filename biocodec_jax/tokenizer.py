"""Recordings <-> tokens: ``codec.tokenize(raw_or_path)`` and ``codec.detokenize(tokens)``.

>>> tokens = codec.tokenize("data/eegmmidb/S004/S004R04.edf")   # or an mne.io.Raw
>>> tokens.codes.shape                                          # int32 [channels, quantizers, frames]
>>> tokens.save("S004R04.tokens.npz"); tokens = Tokens.load("S004R04.tokens.npz")
>>> raw = codec.detokenize(tokens)                              # mne.io.RawArray, physical units

The recording is prepared exactly as the codec's training data was: by the same function
(:func:`data_pipelines.preprocess.preprocess_recording`, which ``prepare`` runs on every recording)
with the ``prepare`` config stored with the codec (:attr:`Codec.prepare_config
<biocodec_jax.codec.Codec.prepare_config>`, a :class:`~data_pipelines.config.PrepareConfig`): the channels of
the codec's modality are picked (:func:`data_pipelines.channels.pick_channels`), filtered (band-pass
and notch if the config has them; off by default) and resampled to the codec's rate, robustly
normalised per channel over the whole recording, ``(x - median) / IQR``, and clipped to ``+-clip``.
The per-channel median and IQR are kept in :attr:`Tokens.preprocessing` so that :func:`detokenize`
can restore physical units; clipping and filtering cannot be undone. Channel names round-trip as
the recording has them (``Tokens.channel_names``); the canonical names the training data uses
("C3" for PhysioNet's "C3..") are in ``Tokens.canonical_channel_names``.

Units are the recording's, channel by channel (``info["chs"][i]["unit"]``, not the channel type):
``Tokens.units`` holds ``"V"`` for volts and ``"AU"`` for channels without a physical unit (MNE's
``FIFF_UNIT_NONE``, e.g. the Myo armband's ADC counts, see :func:`channel_units`); the median and
IQR are in those units and :func:`detokenize` gives its channels those units back.

A channel holding NaN/Inf samples, or flat, is left out and listed in ``Tokens.dropped_channels``
with the reason, as ``prepare`` leaves it out of training data (one rule for both:
:func:`data_pipelines.preprocess.unusable_channels`); the other channels are tokenized.

Tokens carry the :func:`fingerprint` of the codec that made them (``codec_id``); decoding them with
another codec is refused. Problems with the recording raise :class:`TokenizeError`, a
``ValueError`` (and a :class:`~data_pipelines.errors.RecordingError`) naming the recording; a
damaged or malformed tokens file raises :class:`TokensFileError`, a ``ValueError`` naming the file.

This module turns one recording into tokens and back for ``Codec.tokenize`` / ``Codec.detokenize``;
it takes the codec as an argument and does not import :mod:`biocodec_jax.codec` at run time. The
:class:`Tokens` format is :mod:`biocodec_jax.tokens`; many files at once, :mod:`biocodec_jax.batch`
(both re-exported here).
"""

from __future__ import annotations

import dataclasses
import datetime
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mne
import numpy as np

# The Tokens format and the batch jobs live in their own modules; their names stay importable from here.
from biocodec_jax.batch import EXISTS_REASON, TOKENS_SUFFIX, reconstruct_files, tokenize_files
from biocodec_jax.tokens import FORMAT, UNIT_NAMES, DroppedChannelsWarning, Tokens, TokensFileError, channel_units, set_units
from data_pipelines.config import PrepareConfig
from data_pipelines.errors import ChannelError, RecordingError, source_of
from data_pipelines.preprocess import preprocess_recording
from data_pipelines.readers import read_raw

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec


class TokenizeError(RecordingError, ValueError):
    """A recording cannot be tokenized (wrong modality or rate, too short, no usable channel, ...); names it."""


# ---------------------------------------------------------------------------------------------
# Codec identity.


def fingerprint(codec: "Codec") -> str:
    """``codec.fingerprint()`` (:meth:`biocodec_jax.codec.Codec.fingerprint`, its one definition);
    this name stays for existing imports."""
    return codec.fingerprint()


# ---------------------------------------------------------------------------------------------
# Recording -> normalised signal -> tokens.


def prepare_config_for(codec: "Codec") -> PrepareConfig:
    """How ``codec``'s training data was prepared: :attr:`Codec.prepare_config
    <biocodec_jax.codec.Codec.prepare_config>` (the ``prepare`` config stored with the codec, else
    the preset of its modality at its rate). This name stays for existing imports."""
    return codec.prepare_config


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A recording prepared for the codec: ``x`` float32 ``[C, n_samples]`` normalised and clipped.

    The fields of :class:`~data_pipelines.preprocess.PreprocessedRecording` under the names the
    tokenizer and ``report`` use; ``dropped_channels``: the channels of the modality left out (see
    :attr:`Tokens.dropped_channels`)."""

    x: np.ndarray
    median: np.ndarray
    iqr: np.ndarray
    info: mne.Info  # of the picked channels, at the original rate
    source_channel_names: tuple[str, ...]
    original_sample_rate: float
    original_n_samples: int
    first_samp: int
    source: str
    prep: PrepareConfig
    dropped_channels: tuple[dict, ...] = ()


def _as_raw(recording: Any, source: str | None) -> tuple[mne.io.BaseRaw, str]:
    if isinstance(recording, (str, Path)):
        try:
            raw = read_raw(recording)
        except RecordingError as e:
            raise TokenizeError(e.path, e.reason) from e
        return raw, source or str(recording)
    if isinstance(recording, mne.io.BaseRaw):
        raw = recording.copy()  # never change the caller's recording
        if not raw.preload:
            raw.load_data(verbose=False)
        return raw, source or source_of(recording)
    raise TypeError(f"expected an mne.io.Raw or a path to a recording; got {type(recording).__name__}")


def prepare_recording(codec: "Codec", recording: Any, *, prep: PrepareConfig | None = None, source: str | None = None) -> Prepared:
    """Pick, filter, resample, normalise and clip ``recording`` as the codec's training data was:
    :func:`data_pipelines.preprocess.preprocess_recording`, the function ``prepare`` made that
    data with, by the codec's :attr:`~biocodec_jax.codec.Codec.prepare_config` (or ``prep``).

    A channel holding NaN/Inf samples or flat (IQR 0) in the recording is left out and listed in
    ``dropped_channels``, as ``prepare`` drops it from training data. Raises :class:`TokenizeError`
    (a ValueError naming the recording) for a recording without channels of the codec's modality,
    sampled below ``prep.min_sample_rate``, shorter than one frame at the codec's rate, or with no
    usable channel. Every channel is kept (``prep.channels_per_recording`` draws training data only).
    """
    prep = prep or codec.prepare_config
    if prep.sample_rate != codec.sample_rate:
        raise ValueError(f"preparation rate {prep.sample_rate:g} Hz differs from the codec's {codec.sample_rate} Hz")
    raw, source = _as_raw(recording, source)
    try:
        p = preprocess_recording(raw, prep, source=source, min_length=(codec.hop_length, f"one frame of {codec.hop_length} samples"))
    except RecordingError as e:
        reason = f"channel {e.channel!r}: {e.reason}" if isinstance(e, ChannelError) else e.reason
        raise TokenizeError(source if e.path in ("<raw>", "<array>") else e.path, reason) from e
    return Prepared(p.signal, p.median, p.iqr, p.info, p.recorded_names, p.source_rate, p.source_samples,
                    p.first_samp, p.source, prep, p.dropped_channels)


def tokenize(
    codec: "Codec",
    recording: Any,
    *,
    n_q: int | None = None,
    prep: PrepareConfig | None = None,
    source: str | None = None,
) -> Tokens:
    """Tokens of ``recording`` (an ``mne.io.Raw`` or a path :func:`~data_pipelines.readers.read_raw` reads).

    ``n_q``: quantizers to keep (all by default); ``prep``: preparation config (default: the preset
    of the codec's modality, see :func:`prepare_config_for`); ``source``: name used in errors.

    A channel with NaN/Inf samples or a flat one is left out, as ``prepare`` leaves it out of
    training data: it is listed in ``Tokens.dropped_channels`` (with the reason) and a
    :class:`DroppedChannelsWarning` says so; the other channels are tokenized. No usable channel
    at all raises :class:`TokenizeError`.
    """
    p = prepare_recording(codec, recording, prep=prep, source=source)
    if p.dropped_channels:
        warnings.warn(f"{p.source}: {_dropped_text(p.dropped_channels)}", DroppedChannelsWarning, stacklevel=2)
    codes = encode_channels(codec, p.x, n_q)  # [C, K, T']
    ch_types = tuple(p.info.get_channel_types())
    meas_date = p.info["meas_date"]
    prep_cfg = p.prep
    preprocessing = {
        "modality": prep_cfg.modality,
        "sample_rate": prep_cfg.sample_rate,
        "l_freq": prep_cfg.l_freq,
        "h_freq": prep_cfg.h_freq,
        "notch_freqs": list(prep_cfg.notch_freqs(p.original_sample_rate) or []) or None,
        "min_sample_rate": prep_cfg.min_sample_rate,
        # How the recording was brought to sample_rate ("polyphase" or "fft"); tokens files written
        # before this key existed lack it (they were all made with "fft": config.LEGACY_RESAMPLE).
        "resample": prep_cfg.resample,
        "normalization": "robust: (x - median) / iqr per channel over the whole recording",
        "clip": prep_cfg.clip,
        "channels": list(prep_cfg.channels) if prep_cfg.channels is not None else None,
        "origin": "stored with the codec" if codec.preprocessing else f"{prep_cfg.modality} preset (the codec stores none)",
        "median": p.median,
        "iqr": p.iqr,
    }
    return Tokens(
        codes=codes,
        channel_names=p.source_channel_names,
        canonical_channel_names=tuple(p.info.ch_names),
        ch_types=ch_types,
        units=channel_units(p.info),
        token_rate=float(codec.codec_config.frame_rate),
        sample_rate=float(codec.sample_rate),
        original_sample_rate=p.original_sample_rate,
        n_samples=int(p.x.shape[1]),
        original_n_samples=int(p.original_n_samples),
        codec_id=fingerprint(codec),
        preprocessing=preprocessing,
        start_time={
            "meas_date": meas_date.isoformat() if meas_date is not None else None,
            "first_samp": p.first_samp,
            "offset_s": p.first_samp / p.original_sample_rate,
        },
        source=p.source,
        dropped_channels=p.dropped_channels,
    )


def _dropped_text(dropped: tuple[dict, ...]) -> str:
    return "left out " + "; ".join(f"channel {d['channel']!r} ({d['reason']})" for d in dropped)


# ---------------------------------------------------------------------------------------------
# Tokens -> recording.


# Samples (channels x time) per encoder call: activations take ~1 KB a sample (measured: 1 GB for
# 8 channels x 125,000 samples), so a long many-channel recording is coded a few channels at a time.
# Channels are coded independently, so this changes nothing in the result. One channel longer than
# this is still coded in one call.
MAX_SAMPLES_PER_CALL = 1_000_000


def _channel_groups(n_channels: int, n_samples: int) -> list[slice]:
    per_call = max(1, MAX_SAMPLES_PER_CALL // max(n_samples, 1))
    return [slice(i, min(i + per_call, n_channels)) for i in range(0, n_channels, per_call)]


def encode_channels(codec: "Codec", x: np.ndarray, n_q: int | None = None) -> np.ndarray:
    """int32 codes ``[C, K, T']`` of a prepared signal ``x`` ``[C, n]``, in memory-bounded channel groups."""
    groups = _channel_groups(x.shape[0], x.shape[1])
    return np.concatenate([np.asarray(codec.encode(x[None, g], n_q)[0], dtype=np.int32) for g in groups])


def decode_channels(codec: "Codec", codes: np.ndarray) -> np.ndarray:
    """float32 ``[C, T' * hop]`` from codes ``[C, K, T']``, in memory-bounded channel groups."""
    codes = np.asarray(codes, np.int32)
    groups = _channel_groups(codes.shape[0], codes.shape[2] * codec.hop_length)
    return np.concatenate([np.asarray(codec.decode(codes[None, g])[0]) for g in groups])


def check_codec(codec: "Codec", tokens: Tokens) -> str:
    """``codec``'s fingerprint; ValueError naming both ids if ``tokens`` came from another codec."""
    codec_id = fingerprint(codec)
    if tokens.codec_id != codec_id:
        raise ValueError(
            f"tokens of {tokens.source} were made by codec {tokens.codec_id}, not by this codec {codec_id}; "
            "decode them with the codec that made them"
        )
    if float(codec.sample_rate) != tokens.sample_rate:  # cannot happen with matching ids; a corrupt file
        raise ValueError(f"tokens are at {tokens.sample_rate:g} Hz but the codec runs at {codec.sample_rate} Hz")
    size = codec.codec_config.codebook_size
    if tokens.n_q > codec.n_q or int(tokens.codes.max()) >= size:  # a corrupt file, too
        raise ValueError(f"tokens of {tokens.source} have {tokens.n_q} quantizers and codes up to {int(tokens.codes.max())}; "
                         f"the codec has {codec.n_q} quantizers of {size} codes")
    return codec_id


def decode_tokens(codec: "Codec", tokens: Tokens, *, normalized: bool = False) -> np.ndarray:
    """The decoded signal ``[C, n_samples]`` at the codec's rate: physical units (float64), or the
    codec's normalised domain (float32) with ``normalized=True``."""
    check_codec(codec, tokens)
    y = decode_channels(codec, tokens.codes)[:, : tokens.n_samples]
    if normalized:
        return y
    median = np.asarray(tokens.preprocessing["median"], np.float64)
    iqr = np.asarray(tokens.preprocessing["iqr"], np.float64)
    return y.astype(np.float64) * iqr[:, None] + median[:, None]


def detokenize(codec: "Codec", tokens: Tokens, *, resample: bool = True) -> mne.io.RawArray:
    """``tokens`` decoded into an ``mne.io.RawArray`` in physical units, channels named, typed and
    with units (``tokens.units``: volts, or none for counts) as tokenized, ``meas_date`` and
    ``first_samp`` restored, resampled back to the original rate (``resample=False``: left at the
    codec's rate). Tokens of another codec raise ValueError.

    Only the channels that were tokenized come back: those tokenize left out (NaN/Inf or flat,
    ``tokens.dropped_channels``) are not in the result, which has ``tokens.n_channels`` channels."""
    y = decode_tokens(codec, tokens)
    info = set_units(mne.create_info(list(tokens.channel_names), tokens.sample_rate, list(tokens.ch_types)), tokens.units)
    raw = mne.io.RawArray(y, info, verbose=False)
    if resample and tokens.original_sample_rate != tokens.sample_rate:
        raw.resample(tokens.original_sample_rate, verbose=False)
        y = raw.get_data()
        n = tokens.original_n_samples
        if y.shape[1] >= n:
            y = y[:, :n]
        else:  # resampling rounded one sample short: repeat the edge
            y = np.pad(y, ((0, 0), (0, n - y.shape[1])), mode="edge")
        info = set_units(mne.create_info(list(tokens.channel_names), tokens.original_sample_rate, list(tokens.ch_types)),
                          tokens.units)
        first_samp = int(tokens.start_time.get("first_samp", 0))
    else:
        first_samp = int(round(tokens.start_time.get("offset_s", 0.0) * tokens.sample_rate))
    raw = mne.io.RawArray(y, info, first_samp=first_samp, verbose=False)
    meas_date = tokens.start_time.get("meas_date")
    if meas_date is not None:
        raw.set_meas_date(datetime.datetime.fromisoformat(meas_date))
    return raw


__all__ = [
    "Tokens",
    "TokenizeError",
    "TokensFileError",
    "DroppedChannelsWarning",
    "fingerprint",
    "prepare_config_for",
    "prepare_recording",
    "tokenize",
    "detokenize",
    "decode_tokens",
    "encode_channels",
    "decode_channels",
    "check_codec",
    "channel_units",
    "set_units",
    "UNIT_NAMES",
    "FORMAT",
    "tokenize_files",
    "reconstruct_files",
    "TOKENS_SUFFIX",
    "EXISTS_REASON",
]

