"""The tokens of one recording (:class:`Tokens`) and their file format (``.npz``, no pickles).

>>> tokens.save("S004R04.tokens.npz"); tokens = Tokens.load("S004R04.tokens.npz")

``Tokens.codes`` int32 ``[channels, quantizers, frames]`` with what turns them back into the
recording: channel names (as recorded and canonical), types and units, rates and lengths, the
per-channel median and IQR of the normalisation, the start time, and the fingerprint of the codec
that made them (``codec_id``). A damaged or malformed tokens file raises :class:`TokensFileError`,
a ``ValueError`` naming the file.

Units are the recording's, channel by channel (``info["chs"][i]["unit"]``, not the channel type):
``Tokens.units`` holds ``"V"`` for volts and ``"AU"`` for channels without a physical unit (MNE's
``FIFF_UNIT_NONE``, e.g. the Myo armband's ADC counts, see :func:`channel_units`).

Made by :mod:`biocodec_jax.tokenizer` (recording -> tokens -> recording); this module knows no codec.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import mne
import numpy as np
from mne.io.constants import FIFF

FORMAT = "biocodec-jax tokens v1"


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


def set_units(info: mne.Info, units: tuple[str, ...]) -> mne.Info:
    """Give the channels of ``info`` the ``units`` (names of :data:`UNIT_NAMES`); an unknown name
    leaves the channel type's default."""
    for ch, name in zip(info["chs"], units):
        if name in _UNIT_CODES:
            ch["unit"] = _UNIT_CODES[name]
            ch["unit_mul"] = FIFF.FIFF_UNITM_NONE
    return info



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



__all__ = ["Tokens", "TokensFileError", "DroppedChannelsWarning", "FORMAT", "UNIT_NAMES", "channel_units", "set_units"]
