"""Recordings <-> tokens: ``codec.tokenize(raw_or_path)`` and ``codec.detokenize(tokens)``.

>>> tokens = codec.tokenize("data/eegmmidb/S004/S004R04.edf")   # or an mne.io.Raw
>>> tokens.codes.shape                                          # int32 [channels, quantizers, frames]
>>> tokens.save("S004R04.tokens.npz"); tokens = Tokens.load("S004R04.tokens.npz")
>>> raw = codec.detokenize(tokens)                              # mne.io.RawArray, physical units

The recording is prepared exactly as the codec's training data was (:mod:`data_pipelines.prepare`,
with the ``prepare`` config stored with the codec, see :func:`prepare_config_for`): the channels of
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

This module does the I/O (MNE, files) for ``Codec.tokenize`` / ``Codec.detokenize``; it does not
import :mod:`biocodec_jax.codec` at run time (the codec's API is all it uses).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mne
import numpy as np
from mne.io.constants import FIFF

from data_pipelines.channels import pick_channels
from data_pipelines.config import PrepareConfig, config_from_dict, prepare_preset
from data_pipelines.errors import ChannelError, RecordingError, source_of
from data_pipelines.preprocess import clip, filter_and_resample, robust_normalize, robust_stats, unusable_channels
from data_pipelines.readers import read_raw

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec

FORMAT = "biocodec-jax tokens v1"


class TokenizeError(RecordingError, ValueError):
    """A recording cannot be tokenized (wrong modality or rate, too short, no usable channel, ...); names it."""


class TokensFileError(ValueError):
    """A file is not a readable tokens file (truncated, not an ``.npz``, keys or values missing or
    malformed, unknown format); ``path`` is the file, ``reason`` says what is wrong."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class DroppedChannelsWarning(UserWarning):
    """:func:`tokenize` left out channels it could not use (listed in ``Tokens.dropped_channels``)."""


# ---------------------------------------------------------------------------------------------
# Units.

# MNE's unit codes (``info["chs"][i]["unit"]``) <-> the names tokens carry. "AU": no physical unit
# (FIFF_UNIT_NONE, or unitless), e.g. ADC counts without a published gain.
UNIT_NAMES: dict[int, str] = {
    int(FIFF.FIFF_UNIT_V): "V", int(FIFF.FIFF_UNIT_T): "T", int(FIFF.FIFF_UNIT_T_M): "T/m",
    int(FIFF.FIFF_UNIT_MOL): "M", int(FIFF.FIFF_UNIT_M): "m", int(FIFF.FIFF_UNIT_RAD): "rad",
    int(FIFF.FIFF_UNIT_SEC): "s", int(FIFF.FIFF_UNIT_S): "S", int(FIFF.FIFF_UNIT_CEL): "C",
    int(FIFF.FIFF_UNIT_PX): "px", int(FIFF.FIFF_UNIT_UNITLESS): "AU", int(FIFF.FIFF_UNIT_NONE): "AU",
}
_UNIT_CODES: dict[str, int] = {name: code for code, name in UNIT_NAMES.items() if code != FIFF.FIFF_UNIT_UNITLESS}


def channel_units(info: mne.Info) -> tuple[str, ...]:
    """The unit of each channel of ``info`` as the recording declares it (``info["chs"][i]["unit"]``):
    ``"V"`` for volts, ``"AU"`` for none (``FIFF_UNIT_NONE``: e.g. Myo ADC counts) or a code not in
    :data:`UNIT_NAMES`. Not the unit MNE's defaults give the channel *type* (``V`` for ``emg``)."""
    return tuple(UNIT_NAMES.get(int(ch["unit"]), "AU") for ch in info["chs"])


def _set_units(info: mne.Info, units: tuple[str, ...]) -> mne.Info:
    """Give the channels of ``info`` the ``units`` (names of :data:`UNIT_NAMES`); an unknown name
    leaves the channel type's default."""
    for ch, name in zip(info["chs"], units):
        if name in _UNIT_CODES:
            ch["unit"] = _UNIT_CODES[name]
            ch["unit_mul"] = FIFF.FIFF_UNITM_NONE
    return info


# ---------------------------------------------------------------------------------------------
# Codec identity.


def fingerprint(codec: "Codec") -> str:
    """``codec.fingerprint()`` (:meth:`biocodec_jax.codec.Codec.fingerprint`, its one definition);
    this name stays for existing imports."""
    return codec.fingerprint()


# ---------------------------------------------------------------------------------------------
# Tokens.


@dataclasses.dataclass(frozen=True, eq=False)
class Tokens:
    """The codes of one recording plus what is needed to turn them back into it.

    ``codes`` int32 ``[C, K, T']``; ``n_samples`` samples at ``sample_rate`` (the codec's) were
    encoded, ``original_n_samples`` at ``original_sample_rate`` were recorded. ``preprocessing``
    holds the preparation parameters and per-channel ``median`` / ``iqr`` arrays (recording units);
    ``start_time`` ``{"meas_date": ISO string or None, "first_samp": int, "offset_s": float}``.
    ``dropped_channels``: the recording's channels of the codec's modality that were left out, each
    ``{"channel": as the recording names it, "canonical": as the codec's data does, "reason": ...}``
    (NaN/Inf samples or flat; the rule of ``prepare``, :func:`data_pipelines.preprocess.unusable_channels`);
    ``codes`` and the other per-channel fields hold only the kept channels.
    """

    codes: np.ndarray
    channel_names: tuple[str, ...]  # as the recording names them (what detokenize restores)
    canonical_channel_names: tuple[str, ...]  # as the codec's training data names them ("C3" for "C3..")
    ch_types: tuple[str, ...]
    units: tuple[str, ...]  # as recorded, per channel: "V", or "AU" without a physical unit (channel_units)
    token_rate: float
    sample_rate: float
    original_sample_rate: float
    n_samples: int
    original_n_samples: int
    codec_id: str
    preprocessing: dict
    start_time: dict
    source: str = "<raw>"
    dropped_channels: tuple[dict, ...] = ()

    @property
    def n_channels(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[1])

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[2])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickles: strings and dicts as JSON); returns the path written."""
        path = Path(path)
        prep = {k: v for k, v in self.preprocessing.items() if k not in ("median", "iqr")}
        meta = {
            "format": FORMAT,
            "channel_names": list(self.channel_names),
            "canonical_channel_names": list(self.canonical_channel_names),
            "ch_types": list(self.ch_types),
            "units": list(self.units),
            "token_rate": self.token_rate,
            "sample_rate": self.sample_rate,
            "original_sample_rate": self.original_sample_rate,
            "n_samples": self.n_samples,
            "original_n_samples": self.original_n_samples,
            "codec_id": self.codec_id,
            "preprocessing": prep,
            "start_time": self.start_time,
            "source": self.source,
            "dropped_channels": [dict(d) for d in self.dropped_channels],
        }
        with open(path, "wb") as f:  # a file object: numpy would otherwise append ".npz"
            np.savez(
                f,
                codes=np.asarray(self.codes, np.int32),
                median=np.asarray(self.preprocessing["median"], np.float64),
                iqr=np.asarray(self.preprocessing["iqr"], np.float64),
                meta=np.array(json.dumps(meta)),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokens":
        """Read a file written by :meth:`save`; :class:`TokensFileError` (a ValueError naming the
        file) if it is missing, damaged (truncated, not an ``.npz``) or not a tokens file."""
        path = Path(path)
        if not path.is_file():
            raise TokensFileError(path, "no such file")
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise TokensFileError(path, f"cannot be read ({type(e).__name__}: {e})") from e
        if magic[:2] != b"PK":  # np.load would otherwise try to read it as a pickle or a .npy
            raise TokensFileError(path, "not a tokens file: " + ("empty" if not magic else "not an .npz (zip) archive"))
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = sorted({"codes", "median", "iqr", "meta"} - set(z.files))
                if missing:
                    raise TokensFileError(path, f"not a tokens file: no {', '.join(missing)} in it")
                meta = json.loads(str(z["meta"][()]))
                codes, median, iqr = z["codes"], z["median"], z["iqr"]
        except TokensFileError:
            raise
        except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError, ... : a damaged file
            raise TokensFileError(path, f"damaged or truncated tokens file ({type(e).__name__}: {e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise TokensFileError(path, f"unknown tokens format {found!r}; expected {FORMAT!r}")
        try:
            return _tokens_from(meta, codes, median, iqr)
        except (KeyError, TypeError, ValueError) as e:
            what = f"no {e.args[0]!r} in its metadata" if isinstance(e, KeyError) else str(e)
            raise TokensFileError(path, f"malformed tokens file: {what}") from e


def _tokens_from(meta: dict, codes: np.ndarray, median: np.ndarray, iqr: np.ndarray) -> Tokens:
    """A :class:`Tokens` from a file's arrays and metadata, checked for consistency (KeyError,
    TypeError or ValueError saying what is wrong)."""

    def strings(key: str, default: Any = None) -> tuple[str, ...]:
        value = meta.get(key, default) if default is not None else meta[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{key} is not a list of strings")
        return tuple(value)

    def number(key: str, kind=float):  # a positive float or int
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (kind is int and value != int(value)):
            raise TypeError(f"{key} is not {'an integer' if kind is int else 'a number'}: {value!r}")
        if value <= 0:
            raise ValueError(f"{key} must be positive; got {value!r}")
        return kind(value)

    if codes.ndim != 3 or not np.issubdtype(codes.dtype, np.integer) or 0 in codes.shape:
        raise ValueError(f"codes must be a non-empty integer array [channels, quantizers, frames]; got {codes.dtype} {codes.shape}")
    if codes.min() < 0 or codes.max() > np.iinfo(np.int32).max:
        raise ValueError(f"codes must be codebook indices (0 or more); found {int(codes.min())}..{int(codes.max())}")
    n_channels = codes.shape[0]
    names = strings("channel_names")
    per_channel = {"channel_names": names, "canonical_channel_names": strings("canonical_channel_names", list(names)),
                   "ch_types": strings("ch_types"), "units": strings("units")}
    for key, value in per_channel.items():
        if len(value) != n_channels:
            raise ValueError(f"{key} has {len(value)} entries for {n_channels} channels of codes")
    for key, a in (("median", median), ("iqr", iqr)):
        if a.shape != (n_channels,) or not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
            raise ValueError(f"{key} must be {n_channels} finite floats (one a channel); got {a.dtype} {a.shape}")
    if not (iqr > 0).all():
        raise ValueError("iqr must be positive")
    token_rate, sample_rate = number("token_rate"), number("sample_rate")
    n_samples = number("n_samples", int)
    hop = max(1, round(sample_rate / token_rate))
    if n_samples > codes.shape[2] * hop:
        raise ValueError(f"n_samples {n_samples} is more than {codes.shape[2]} frames of {hop} samples hold")
    for key, kind in (("codec_id", str), ("preprocessing", dict), ("start_time", dict)):
        if not isinstance(meta[key], kind):
            raise TypeError(f"{key} is not a {kind.__name__}")
    if not isinstance(meta.get("source", ""), str):
        raise TypeError("source is not a str")
    start = meta["start_time"]
    if start.get("meas_date") is not None:
        datetime.datetime.fromisoformat(start["meas_date"])  # ValueError if it is not a date
    for key in ("first_samp", "offset_s"):
        if key in start and (isinstance(start[key], bool) or not isinstance(start[key], (int, float))):
            raise TypeError(f"start_time.{key} is not a number")
    dropped = meta.get("dropped_channels", [])
    if not isinstance(dropped, list) or not all(isinstance(d, dict) and isinstance(d.get("channel"), str) for d in dropped):
        raise TypeError("dropped_channels is not a list of {channel, reason}")
    return Tokens(
        codes=codes.astype(np.int32),
        channel_names=names,
        canonical_channel_names=per_channel["canonical_channel_names"],
        ch_types=per_channel["ch_types"],
        units=per_channel["units"],
        token_rate=token_rate,
        sample_rate=sample_rate,
        original_sample_rate=number("original_sample_rate"),
        n_samples=n_samples,
        original_n_samples=number("original_n_samples", int),
        codec_id=meta["codec_id"],
        preprocessing={**meta["preprocessing"], "median": median.astype(np.float64), "iqr": iqr.astype(np.float64)},
        start_time=start,
        source=meta.get("source", "<raw>"),
        dropped_channels=tuple(dropped),
    )


# ---------------------------------------------------------------------------------------------
# Recording -> normalised signal -> tokens.


def prepare_config_for(codec: "Codec") -> PrepareConfig:
    """How ``codec``'s training data was prepared: the ``prepare`` config stored with the codec
    (:attr:`Codec.preprocessing`: a training run's ``preprocessing.json`` or a saved codec's
    ``metadata.json``), else the preset of its modality (``emg`` for the emg preset, else ``eeg``)
    at its rate, e.g. for the original's ``.pt`` which records none."""
    if codec.preprocessing:
        try:
            prep = config_from_dict(codec.preprocessing)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the codec's stored preprocessing is not a prepare config: {e}") from e
        if prep.sample_rate != codec.sample_rate:
            raise ValueError(
                f"the codec's stored preprocessing resamples to {prep.sample_rate:g} Hz but the codec runs at "
                f"{codec.sample_rate} Hz"
            )
        return prep
    modality = "emg" if codec.config.preset == "emg" else "eeg"
    prep = prepare_preset(modality)
    if prep.sample_rate != codec.sample_rate:
        prep = dataclasses.replace(prep, sample_rate=float(codec.sample_rate))
    return prep


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A recording prepared for the codec: ``x`` float32 ``[C, n_samples]`` normalised and clipped.

    ``dropped_channels``: the channels of the modality left out (see :attr:`Tokens.dropped_channels`)."""

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
    """Pick, filter, resample, normalise and clip ``recording`` as the codec's training data was.

    A channel holding NaN/Inf samples or flat (IQR 0) in the recording is left out and listed in
    ``dropped_channels``, as ``prepare`` drops it from training data (the one rule of
    :func:`data_pipelines.preprocess.unusable_channels`). Raises :class:`TokenizeError` (a ValueError
    naming the recording) for a recording without channels of the codec's modality, sampled below
    ``prep.min_sample_rate``, shorter than one frame at the codec's rate, or with no usable channel.
    """
    prep = prep or prepare_config_for(codec)
    if prep.sample_rate != codec.sample_rate:
        raise ValueError(f"preparation rate {prep.sample_rate:g} Hz differs from the codec's {codec.sample_rate} Hz")
    raw, source = _as_raw(recording, source)
    try:
        source_names = tuple(raw.ch_names)
        pick_channels(raw, prep.modality, only=prep.channels)
        picked_source_names = tuple(_orig_names(raw, source_names))
        sfreq = float(raw.info["sfreq"])
        if sfreq < prep.min_sample_rate:
            raise RecordingError(
                source,
                f"sampling rate {sfreq:g} Hz is below the minimum of {prep.min_sample_rate:g} Hz "
                f"for the {codec.sample_rate} Hz {prep.modality.upper()} codec",
            )
        n_target = int(round(raw.n_times * prep.sample_rate / sfreq))
        if n_target < codec.hop_length:
            raise RecordingError(
                source,
                f"too short: {raw.n_times} samples at {sfreq:g} Hz ({n_target} at {codec.sample_rate} Hz) "
                f"is less than one frame of {codec.hop_length} samples",
            )
        # As prepare does: NaN/Inf would be smeared over the channel by filtering and a flat line
        # turned into rounding noise; judge the data as recorded and leave such channels out.
        unusable = unusable_channels(raw.get_data(), raw.ch_names)
        recorded_name = dict(zip(raw.ch_names, picked_source_names))
        dropped = tuple({"channel": recorded_name[name], "canonical": name, "reason": reason} for name, reason in unusable)
        bad = {name for name, _ in unusable}
        if len(bad) == len(raw.ch_names):
            raise RecordingError(source, "no usable channel (" + "; ".join(f"{d['channel']!r}: {d['reason']}" for d in dropped) + ")")
        if bad:
            picked_source_names = tuple(recorded_name[name] for name in raw.ch_names if name not in bad)
            raw.drop_channels(sorted(bad))
        info = raw.info.copy()
        original_n, first_samp = raw.n_times, int(raw.first_samp)
        filter_and_resample(raw, prep.sample_rate, l_freq=prep.l_freq, h_freq=prep.h_freq, notch_freqs=prep.notch_freqs(sfreq))
        data = raw.get_data()
        x = robust_normalize(data, raw.ch_names, source)  # raises ChannelError for a flat channel
        median, iqr = robust_stats(data)
    except RecordingError as e:
        if isinstance(e, TokenizeError):
            raise
        reason = f"channel {e.channel!r}: {e.reason}" if isinstance(e, ChannelError) else e.reason
        raise TokenizeError(source if e.path in ("<raw>", "<array>") else e.path, reason) from e
    x = np.ascontiguousarray(clip(x, prep.clip), dtype=np.float32)
    return Prepared(x, median, iqr, info, picked_source_names, sfreq, original_n, first_samp, source, prep, dropped)


def _orig_names(raw: mne.io.BaseRaw, source_names: tuple[str, ...]) -> list[str]:
    """The names the picked channels had in the recording (pick_channels renames them in place)."""
    from data_pipelines.channels import normalize_channel_name

    by_canonical = {normalize_channel_name(n): n for n in source_names}
    return [by_canonical.get(n, n) for n in raw.ch_names]


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
    info = _set_units(mne.create_info(list(tokens.channel_names), tokens.sample_rate, list(tokens.ch_types)), tokens.units)
    raw = mne.io.RawArray(y, info, verbose=False)
    if resample and tokens.original_sample_rate != tokens.sample_rate:
        raw.resample(tokens.original_sample_rate, verbose=False)
        y = raw.get_data()
        n = tokens.original_n_samples
        if y.shape[1] >= n:
            y = y[:, :n]
        else:  # resampling rounded one sample short: repeat the edge
            y = np.pad(y, ((0, 0), (0, n - y.shape[1])), mode="edge")
        info = _set_units(mne.create_info(list(tokens.channel_names), tokens.original_sample_rate, list(tokens.ch_types)),
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
]


# --- files in, files out (``biocodec-jax tokenize`` / ``reconstruct``) --------------------------

TOKENS_SUFFIX = "_tokens.npz"


def _inputs(path: Path, pattern: str) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob(pattern) if p.is_file())
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{path}: no such file or directory")


class _AlreadyDone(Exception):
    """``write_one`` found the output of a file already there (and not asked to overwrite it)."""

    def __init__(self, target: Path):
        super().__init__(str(target))
        self.target = target


EXISTS_REASON = "exists (use --force to overwrite)"


def _each_file(files: list[Path], desc: str, progress: bool, write_one, errors: tuple) -> dict[str, list]:
    """``write_one(path) -> written path`` for every file; a file raising an exception is reported
    and skipped, the rest done. Returns ``{"written": [paths], "failed": [(path, reason)],
    "existing": [(path, output)]}``: the reason is the message of one of the expected ``errors``
    (without the path it may start with), or ``"unexpected <type>: <message>"`` for any other
    exception (a reader or MNE failing in an unforeseen way must not stop a batch job, as in
    ``prepare``); ``existing``: the files whose output was already there (``write_one`` raised
    :class:`_AlreadyDone`), left as they are."""
    from tqdm import tqdm

    report: dict[str, list] = {"written": [], "failed": [], "existing": []}
    for path in tqdm(files, desc=desc, unit="file", disable=not progress):
        try:
            report["written"].append(write_one(path))
        except _AlreadyDone as done:
            report["existing"].append((path, done.target))
        except errors as err:
            reason = str(err)
            report["failed"].append((path, reason[len(f"{path}: "):] if reason.startswith(f"{path}: ") else reason))
        except Exception as err:
            report["failed"].append((path, f"unexpected {type(err).__name__}: {err}"))
    return report


def _write_whole(target: Path, partial: Path, save) -> Path:
    """``save(partial)``, then rename it to ``target``: a failure never leaves a half-written
    ``target`` (nor the partial file)."""
    try:
        save(partial)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


class _Outputs:
    """The output folder of a batch: created with the first file written into it (never left
    empty: removed again, with the parents made for it, if nothing stayed in it), and the output
    name each input claims (two inputs of one run with the same output name: the second fails)."""

    def __init__(self, folder: Path):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a directory; --output is the folder to write into")
        self.folder = folder
        self.missing: list[Path] = []  # the folder and its missing parents, deepest first
        p = folder
        while not p.exists() and p.parent != p:
            self.missing.append(p)
            p = p.parent
        self.claimed: dict[Path, Path] = {}

    def claim(self, target: Path, path: Path) -> None:
        first = self.claimed.setdefault(target, path)
        if first != path:
            raise ValueError(f"its output {target.name} is also that of {first} in this run (the same name); "
                             "write one of them into another --output")

    def make(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def tidy(self) -> None:
        for d in self.missing:
            try:
                d.rmdir()  # only if empty
            except OSError:
                break


def _existing_tokens_problem(path: Path, codec_id: str, n_q: int) -> str | None:
    """None if ``path`` holds tokens of the codec ``codec_id`` with ``n_q`` quantizers (read from its
    metadata and the header of its codes, not the codes themselves), else what differs."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            with z.zip.open("codes.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read_header(f)[0]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or len(shape) != 3:
            raise ValueError("not a tokens file")
    except Exception:
        return "is not a readable tokens file"
    if meta.get("codec_id") != codec_id:
        return f"holds tokens of codec {meta.get('codec_id')}, not of this codec {codec_id}"
    if shape[1] != n_q:
        return f"holds {shape[1]} quantizers, not the {n_q} asked for"
    return None


def tokenize_files(codec: "Codec", source: str | Path, output: str | Path, *, n_q: int | None = None,
                   progress: bool = True, force: bool = False) -> dict[str, list]:
    """Tokenize a recording, or every recording under a directory, into ``output/<name>_tokens.npz``.

    A bad recording is reported and skipped, never half-written (each file is written whole, then
    renamed into place). Channels :func:`tokenize` leaves out (NaN/Inf, flat) are listed in each
    file's tokens and reported here. An output that is already there, tokens of this codec with as
    many quantizers, is left as it is and listed under ``existing`` (already done: re-running on a
    grown corpus tokenizes the new recordings only); ``force=True`` recomputes it. An existing
    output of another codec or quantizer count, or not a tokens file, is a failure unless
    ``force``. ``output`` is created with the first file written into it. Returns
    ``{"written": [paths], "failed": [(path, reason)], "existing": [(path, output)],
    "dropped": [(path, channel, reason)]}``.
    """
    from data_pipelines.readers import SUPPORTED_SUFFIXES, recording_format

    source, output = Path(source), Path(output)
    files = _inputs(source, "*")
    if source.is_dir():
        files = [f for f in files if f.name.lower().endswith(SUPPORTED_SUFFIXES)]
        if not files:
            raise FileNotFoundError(f"{source}: no recordings ({', '.join(SUPPORTED_SUFFIXES)})")
    outputs = _Outputs(output)
    want_n_q = codec.n_q if n_q is None else int(n_q)
    this_codec: dict[str, str] = {}  # its fingerprint, computed once when first needed

    dropped: list[tuple[Path, str, str]] = []

    def write_one(path: Path) -> Path:
        name = path.name[: -len(recording_format(path))] + TOKENS_SUFFIX
        target = output / name
        outputs.claim(target, path)
        if target.exists() and not force:
            if "id" not in this_codec:
                this_codec["id"] = fingerprint(codec)
            problem = _existing_tokens_problem(target, this_codec["id"], want_n_q)
            if problem is None:
                raise _AlreadyDone(target)
            raise ValueError(f"{target} exists and {problem} (use --force to overwrite)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedChannelsWarning)  # reported in "dropped" instead
            tokens = tokenize(codec, path, n_q=n_q)
        written = _write_whole(target, outputs.make() / f".{name}.partial.npz", tokens.save)
        dropped.extend((path, d["channel"], d["reason"]) for d in tokens.dropped_channels)
        return written

    try:
        report = _each_file(files, "tokenize", progress, write_one, (RecordingError, ValueError, OSError))
    finally:
        outputs.tidy()
    report["dropped"] = dropped
    return report


def reconstruct_files(codec: "Codec", source: str | Path, output: str | Path, *, progress: bool = True,
                      force: bool = False) -> dict[str, list]:
    """Decode ``*_tokens.npz`` (one file or a directory of them) into ``output/<name>_recon_raw.fif``
    (physical units, original rate and channel names). Like :func:`tokenize_files`, bad inputs
    (missing, truncated or malformed: :class:`TokensFileError`; another codec's tokens) are
    reported and skipped, an existing output is left as it is (``existing``; ``force=True``
    recomputes it) and ``output`` is created with the first file written. Returns
    ``{"written": [paths], "failed": [(path, reason)], "existing": [(path, output)]}``."""
    source, output = Path(source), Path(output)
    files = _inputs(source, f"*{TOKENS_SUFFIX}")
    if not files:
        raise FileNotFoundError(f"{source}: no *{TOKENS_SUFFIX} files")
    outputs = _Outputs(output)

    def write_one(path: Path) -> Path:
        stem = path.name[: -len(TOKENS_SUFFIX)] if path.name.endswith(TOKENS_SUFFIX) else path.stem
        target = output / f"{stem}_recon_raw.fif"
        outputs.claim(target, path)
        if target.exists() and not force:
            raise _AlreadyDone(target)
        raw = detokenize(codec, Tokens.load(path))
        return _write_whole(target, outputs.make() / f".{stem}.partial_raw.fif",
                            lambda tmp: raw.save(tmp, overwrite=True, verbose=False))

    try:
        return _each_file(files, "reconstruct", progress, write_one, (ValueError, OSError))
    finally:
        outputs.tidy()
