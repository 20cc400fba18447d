"""Signal preprocessing: a recording -> the codec's input (:func:`preprocess_recording`), and its steps.

:func:`preprocess_recording` is the one path from an ``mne.io.Raw`` to normalised windows, used for
training data (:mod:`data_pipelines.prepare`) and at inference (``Codec.tokenize``, ``report``):
pick and name the channels, reject a recording it cannot use, drop unusable channels, then the
pre-training recipe of the original BioCodec, one step a function:

1. band-pass / notch (optional, off by default; MNE) and resampling to the codec's rate
   (:func:`resample_signal`: ``config.resample``, polyphase by default, or MNE's FFT method);
2. per-channel robust normalisation over the whole recording, ``(x - median) / IQR`` with
   ``IQR = q75 - q25``;
3. clipping to ``+-clip`` (10 by default; the original's loader does this);
4. non-overlapping windows of ``window_samples`` (``stride`` may make them overlap or skip).

All but step 1 are pure numpy functions on ``[channels, samples]`` arrays. Non-finite values and
flat channels (IQR 0) raise :class:`ChannelError` naming the recording and the channel; a
recording shorter than one window raises :class:`RecordingError`. Rates and window lengths are
arguments (take them from the model's config): this package does not import the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mne
import numpy as np

from data_pipelines.channels import normalize_channel_name, pick_channels
from data_pipelines.config import PrepareConfig, Resample
from data_pipelines.errors import ChannelError, RecordingError, source_of

DEFAULT_CLIP = 10.0


def filter_and_resample(
    raw: mne.io.BaseRaw,
    sample_rate: float,
    *,
    l_freq: float | None = None,
    h_freq: float | None = None,
    notch_freqs: float | Sequence[float] | None = None,
) -> mne.io.BaseRaw:
    """Band-pass (``l_freq``..``h_freq``, either may be None), notch, then resample to ``sample_rate``.

    MNE's default zero-phase FIR filters and FFT resampling (``resample="fft"`` of a prepare config;
    :func:`preprocess_recording` filters with this and resamples by :func:`resample_signal`). Works
    in place on a preloaded ``raw`` and returns it. With every filter None and the rate already
    right, nothing changes.

    Every channel of ``raw`` is filtered, whatever its type (pick the channels to use first, as
    ``prepare`` and ``tokenize`` do): MNE's own default picks only its "data" types, which leave
    out ``emg`` (an EMG recording would raise "yielded no channels"), and bad channels.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive; got {sample_rate}")
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, picks="all", verbose=False)
    if notch_freqs is not None:
        raw.notch_filter(notch_freqs, picks="all", verbose=False)
    if raw.info["sfreq"] != sample_rate:
        raw.resample(sample_rate, verbose=False)
    return raw


# Polyphase resampling runs at an exact rational ratio up/down of the two rates, with a FIR of
# 20 * max(up, down) + 1 taps (173.61 Hz -> 250 Hz: 25000/17361, 500,001 taps); a ratio with larger terms is
# replaced by its nearest fraction with terms about this size (1000.0001 Hz -> 250 Hz: 1/4, 1e-7 off).
MAX_POLYPHASE_FACTOR = 65536


def resample_length(n_samples: int, from_rate: float, to_rate: float) -> int:
    """Samples of a recording of ``n_samples`` at ``from_rate`` once resampled to ``to_rate``: MNE's
    rule (``round(n * to / from)``, at least 1), whichever method resamples it."""
    return max(int(round(float(to_rate) / from_rate * n_samples)), 1)


def polyphase_factors(from_rate: float, to_rate: float) -> tuple[int, int]:
    """``(up, down)``, coprime, with ``to_rate / from_rate == up / down`` (rates taken as the decimals
    they print as: 173.61 Hz is 17361/100), approximated where a term would exceed
    :data:`MAX_POLYPHASE_FACTOR`."""
    ratio = Fraction(repr(float(to_rate))) / Fraction(repr(float(from_rate)))
    if max(ratio.numerator, ratio.denominator) > MAX_POLYPHASE_FACTOR:
        ratio = ratio.limit_denominator(max(1, int(MAX_POLYPHASE_FACTOR / max(1.0, float(ratio)))))
    return ratio.numerator, ratio.denominator


def resample_signal(x: np.ndarray, from_rate: float, to_rate: float, method: Resample = "polyphase") -> np.ndarray:
    """``x`` ``[C, T]`` resampled from ``from_rate`` to ``to_rate`` Hz, each channel on its own:
    ``[C, resample_length(T)]`` float64 (``x`` itself when the rates are equal).

    ``"polyphase"``: :func:`scipy.signal.resample_poly` at the rates' ratio :func:`polyphase_factors`,
    SciPy's default anti-aliasing FIR (Kaiser window, beta 5, cut-off at the lower of the two Nyquist
    frequencies) with the ends reflect-padded (as MNE's polyphase method pads), cut to MNE's length.
    ``"fft"``: MNE's FFT resampling (:func:`mne.filter.resample`, its defaults: boxcar spectrum,
    ``npad="auto"``, reflect-limited padding), the same values as ``raw.resample`` of a one-segment raw.
    """
    x = np.asarray(x)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive; got {from_rate}, {to_rate}")
    if float(from_rate) == float(to_rate):
        return x
    if method == "fft":
        return mne.filter.resample(x, up=float(to_rate), down=float(from_rate), npad="auto", method="fft", verbose=False)
    if method != "polyphase":
        raise ValueError(f"unknown resampling method {method!r}; choose 'polyphase' or 'fft'")
    import scipy.signal  # here, not at the top: half a second of imports a process that only reads shards never needs

    up, down = polyphase_factors(from_rate, to_rate)
    n_out = resample_length(x.shape[-1], from_rate, to_rate)
    y = scipy.signal.resample_poly(np.asarray(x, np.float64), up, down, axis=-1, padtype="reflect")
    if y.shape[-1] < n_out:  # an approximated ratio may give a sample fewer: repeat the last one
        y = np.concatenate([y, np.repeat(y[..., -1:], n_out - y.shape[-1], axis=-1)], axis=-1)
    return y[..., :n_out]


def _channel_name(channel_names: Sequence[str] | None, index: int) -> str:
    return str(channel_names[index]) if channel_names is not None else f"#{index}"


def _check_2d(x: np.ndarray, source: str | Path | None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise RecordingError(source, f"expected a [channels, samples] array; got shape {x.shape}")
    return x


def check_finite(x: np.ndarray, channel_names: Sequence[str] | None = None, source: str | Path | None = None) -> None:
    """Raise :class:`ChannelError` for the first channel of ``x`` ``[C, T]`` holding NaN or +-Inf."""
    x = _check_2d(x, source)
    bad = ~np.isfinite(x)
    if bad.any():
        channel = int(np.flatnonzero(bad.any(axis=1))[0])
        count = int(bad[channel].sum())
        raise ChannelError(source, _channel_name(channel_names, channel), f"{count} non-finite (NaN/Inf) sample(s)")


def quartiles(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row 25th, 50th and 75th percentiles of ``x`` ``[C, T]``, float64: the values of
    ``np.percentile(x, [25, 50, 75], axis=-1)`` (linear interpolation; equal values, bit for bit
    but for the sign of a zero where +0 and -0 tie), in a third of its time.

    NumPy partitions each row around all six order statistics at once, which is several times
    slower than one partition around the median followed by one in each half (what is done here);
    the upper neighbour of each order statistic is the minimum of the part above it, and the
    interpolation is NumPy's own formula (``_lerp``). Rows holding NaN/Inf, and short rows, go to
    ``np.percentile`` itself.
    """
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    if x.ndim != 2 or n < 16 or not np.isfinite(x).all():
        q25, median, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=-1)
        return q25, median, q75
    part = np.array(x, dtype=np.float64, order="C")  # partitioned in place
    virtual = (n - 1) * np.array([0.25, 0.5, 0.75])  # NumPy's "linear" virtual indices
    a, b, c = (int(v) for v in np.floor(virtual))  # a < a + 1 < b < b + 1 < c < n - 1 for n >= 16
    gamma = virtual - np.floor(virtual)
    part.partition(b, axis=-1)
    part[:, :b].partition(a, axis=-1)
    part[:, b + 1 :].partition(c - b - 1, axis=-1)
    lower = (part[:, a], part[:, b], part[:, c])
    upper = (part[:, a + 1 : b + 1].min(axis=-1), part[:, b + 1 :].min(axis=-1), part[:, c + 1 :].min(axis=-1))
    out = []
    for lo, hi, t in zip(lower, upper, gamma):  # numpy.lib._function_base_impl._lerp
        diff = hi - lo
        out.append(hi - diff * (1 - t) if t >= 0.5 else lo + diff * t)
    return out[0], out[1], out[2]


def robust_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(median, IQR)`` of ``x`` ``[C, T]`` (linear-interpolated quantiles, float64:
    :func:`quartiles`, NumPy's ``percentile`` values)."""
    q25, median, q75 = quartiles(x)
    return median, q75 - q25


def flat_channels(x: np.ndarray) -> list[int]:
    """Indices of the channels of ``x`` ``[C, T]`` whose IQR is 0 (robust normalisation undefined)."""
    _, iqr = robust_stats(x)
    return [int(i) for i in np.flatnonzero(iqr == 0)]


def unusable_channels(x: np.ndarray, channel_names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(channel name, reason)`` for each channel of ``x`` ``[C, T]`` that cannot be used: one
    holding NaN/Inf samples, then one that is flat (IQR 0, judged on its finite samples).

    The one rule for dropping a channel, shared by ``prepare`` (training data) and ``tokenize``:
    apply it to the data as recorded, before filtering and resampling (filtering would smear a
    NaN over the channel and turn a flat line into rounding noise). Empty if every channel is fine.
    """
    x = _check_2d(x, None)
    finite = np.isfinite(x)
    out = []
    for i in np.flatnonzero(~finite.all(axis=1)):
        out.append((_channel_name(channel_names, int(i)), f"{int((~finite[i]).sum())} non-finite (NaN/Inf) sample(s)"))
    _, iqr = robust_stats(x if finite.all() else np.where(finite, x, 0.0))
    for i in np.flatnonzero(finite.all(axis=1) & (iqr == 0)):
        out.append((_channel_name(channel_names, int(i)), "flat signal (interquartile range 0)"))
    return out


def robust_normalize(
    x: np.ndarray,
    channel_names: Sequence[str] | None = None,
    source: str | Path | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``(x - median) / IQR`` per channel over the whole recording ``[C, T]`` -> float32.

    ``stats``: ``x``'s :func:`robust_stats` where the caller has them already. Raises
    :class:`ChannelError` naming the channel if it holds NaN/Inf or is flat (IQR 0).
    """
    x = _check_2d(x, source)
    check_finite(x, channel_names, source)
    median, iqr = robust_stats(x) if stats is None else stats
    flat = np.flatnonzero(iqr == 0)
    if flat.size:
        name = _channel_name(channel_names, int(flat[0]))
        raise ChannelError(source, name, "flat signal (interquartile range 0); drop it before normalising")
    y = np.subtract(x, median[:, None], dtype=np.float64)  # one float64 temporary, divided in place:
    y /= iqr[:, None]  # the values of ((x - median) / iqr) computed out of place
    return y.astype(np.float32)


def clip(x: np.ndarray, limit: float | None = DEFAULT_CLIP) -> np.ndarray:
    """``x`` clipped to ``[-limit, limit]`` (unchanged when ``limit`` is None)."""
    if limit is None:
        return x
    if limit <= 0:
        raise ValueError(f"clip limit must be positive; got {limit}")
    return np.clip(x, -limit, limit)


def _clip_in_place(x: np.ndarray, limit: float | None) -> np.ndarray:
    """:func:`clip` writing into ``x`` (a temporary of the caller's): the same values, no copy."""
    if limit is None:
        return x
    if limit <= 0:
        raise ValueError(f"clip limit must be positive; got {limit}")
    return np.clip(x, -limit, limit, out=x)


def count_windows(n_samples: int, window_samples: int, stride: int | None = None) -> int:
    """Whole windows of ``window_samples`` every ``stride`` (default: the window) in ``n_samples``."""
    stride = window_samples if stride is None else stride
    if window_samples <= 0 or stride <= 0:
        raise ValueError(f"window_samples and stride must be positive; got {window_samples}, {stride}")
    return 0 if n_samples < window_samples else 1 + (n_samples - window_samples) // stride


def make_windows(
    x: np.ndarray, window_samples: int, stride: int | None = None, source: str | Path | None = None
) -> np.ndarray:
    """Cut ``x`` ``[C, T]`` into ``[n_windows, C, window_samples]`` float32 windows.

    Windows start every ``stride`` samples (default ``window_samples``: back to back, no overlap);
    a trailing remainder shorter than a window is dropped. A recording shorter than one window
    raises :class:`RecordingError`.
    """
    x = _check_2d(x, source)
    stride = window_samples if stride is None else stride
    n = count_windows(x.shape[1], window_samples, stride)
    if n == 0:
        raise RecordingError(source, f"{x.shape[1]} samples is shorter than one window of {window_samples}")
    if stride == window_samples:  # back to back: a reshape, one copy
        blocks = x[:, : n * window_samples].reshape(x.shape[0], n, window_samples)
        return np.ascontiguousarray(blocks.transpose(1, 0, 2), dtype=np.float32)
    starts = np.arange(n) * stride
    index = starts[:, None] + np.arange(window_samples)[None, :]  # [n, W]
    return np.ascontiguousarray(x[:, index].transpose(1, 0, 2), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# The one path: a recording -> the codec's input.


class NoUsableChannelError(RecordingError):
    """Every channel of the modality is unusable (NaN/Inf or flat); ``dropped_channels`` says why, each."""

    def __init__(self, path: str | Path | None, dropped_channels: tuple[dict, ...]):
        self.dropped_channels = tuple(dropped_channels)
        detail = "; ".join(f"{d['channel']!r}: {d['reason']}" for d in self.dropped_channels)
        super().__init__(path, f"no usable channel ({detail})")

    def __reduce__(self):
        return (type(self), (self.path, self.dropped_channels))


@dataclass(frozen=True, eq=False)
class PreprocessedRecording:
    """A recording as the codec sees it: what :func:`preprocess_recording` made of it.

    ``signal`` float32 ``[C, n_samples]`` at ``config.sample_rate``, robustly normalised per
    channel and clipped; ``median`` / ``iqr`` float64 ``[C]`` (the recording's units) undo the
    normalisation. ``channel_names`` are canonical (what the training data calls them: ``"C3"``),
    ``recorded_names`` as the recording has them (``"C3.."``); ``info`` describes the kept
    channels at the recording's rate, before filtering (types, units, ``meas_date``).
    ``dropped_channels``: the channels of the modality left out, each ``{"channel": as recorded,
    "canonical": ..., "reason": ...}`` (:func:`unusable_channels`).
    """

    signal: np.ndarray
    channel_names: tuple[str, ...]
    recorded_names: tuple[str, ...]
    median: np.ndarray
    iqr: np.ndarray
    info: mne.Info
    source_rate: float
    source_samples: int
    first_samp: int
    config: PrepareConfig
    source: str
    dropped_channels: tuple[dict, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    def windows(self) -> np.ndarray:
        """``[n_windows, C, window_samples]`` float32 windows of ``config`` (:func:`make_windows`)."""
        return make_windows(self.signal, self.config.window_samples, self.config.stride_samples, self.source)

    def window_starts(self) -> np.ndarray:
        """First sample of each of :meth:`windows`, at ``config.sample_rate``."""
        n = count_windows(self.n_samples, self.config.window_samples, self.config.stride_samples)
        return np.arange(n) * self.config.stride_samples

    def channel_stats(self) -> dict[str, dict[str, float]]:
        """``{canonical name: {"median", "iqr"}}`` (recording units), as the manifest lists them."""
        return {name: {"median": float(m), "iqr": float(q)} for name, m, q in zip(self.channel_names, self.median, self.iqr)}


def _recorded_names(raw: mne.io.BaseRaw, recorded: Sequence[str]) -> list[str]:
    """The names the picked channels of ``raw`` had in the recording (pick_channels renames them)."""
    by_canonical = {normalize_channel_name(n): n for n in recorded}
    return [by_canonical.get(n, n) for n in raw.ch_names]


def _recording_seed(seed: int, recording_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{recording_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def choose_channels(names: Sequence[str], k: int | None, seed: int, recording_id: str) -> list[int]:
    """Indices of ``k`` channels drawn at random (in recording order), the same on every run."""
    if k is None or k >= len(names):
        return list(range(len(names)))
    rng = np.random.default_rng(_recording_seed(seed, recording_id))
    return sorted(rng.choice(len(names), size=k, replace=False).tolist())


def preprocess_recording(
    raw: mne.io.BaseRaw,
    config: PrepareConfig,
    *,
    source: str | Path | None = None,
    channels: Sequence[str] | None = None,
    recording_id: str | None = None,
    min_length: tuple[int, str] | None = None,
    notch_freqs: float | Sequence[float] | None = None,
    drop_unusable: bool = True,
) -> PreprocessedRecording:
    """Pick, check, filter, resample, normalise and clip ``raw`` by ``config``: the one path from a
    recording to the codec's input, for its training data (``prepare``) and for inference
    (``Codec.tokenize``, ``report``), so that the two agree by construction.

    1. the channels of ``config.modality`` are picked and canonically named
       (:func:`~data_pipelines.channels.pick_channels`; ``channels``, else ``config.channels``,
       restricts them to those canonical names);
    2. a rate below ``config.min_sample_rate``, or fewer samples at the target rate than
       ``min_length`` (``(samples, what they are)``; default one window of ``config``), raises
       :class:`RecordingError`;
    3. channels holding NaN/Inf samples or flat, judged as recorded (:func:`unusable_channels`),
       are dropped and listed in ``dropped_channels``; none left raises :class:`NoUsableChannelError`.
       ``drop_unusable=False`` (a protocol with a fixed channel set): the first raises :class:`ChannelError`;
    4. with ``recording_id``, ``config.channels_per_recording`` channels drawn for it
       (:func:`choose_channels`: training data); without, every channel;
    5. band-pass / notch of those channels (if ``config`` has them; ``notch_freqs``, if given, are
       the notch frequencies instead of ``config.notch_freqs``: :func:`filter_and_resample`) and
       resampling by ``config.resample`` (:func:`resample_signal`; each channel is filtered and
       resampled on its own, so drawing the channels first changes no value);
    6. per-channel robust normalisation over the whole recording (:func:`robust_normalize`) and
       clipping to ``config.clip``; a channel non-finite or flat after resampling raises :class:`ChannelError`.

    ``raw`` must be preloaded and is changed in place (pass a copy to keep it): channels picked,
    filtered, and (``resample="fft"``) resampled. Windows:
    :meth:`PreprocessedRecording.windows`.
    """
    source = str(source) if source is not None else source_of(raw)
    recorded = tuple(raw.ch_names)
    pick_channels(raw, config.modality, only=config.channels if channels is None else channels)
    recorded_name = dict(zip(raw.ch_names, _recorded_names(raw, recorded)))
    sfreq = float(raw.info["sfreq"])
    if sfreq < config.min_sample_rate:
        raise RecordingError(
            source,
            f"sampling rate {sfreq:g} Hz is below the minimum of {config.min_sample_rate:g} Hz "
            f"for {config.modality.upper()} at {config.sample_rate:g} Hz",
        )
    min_samples, what = min_length or (config.window_samples, f"one {config.window_seconds:g}-s window")
    n_target = int(round(raw.n_times * config.sample_rate / sfreq))
    if n_target < min_samples:
        raise RecordingError(
            source,
            f"too short: {raw.n_times / sfreq:.2f} s ({raw.n_times} samples at {sfreq:g} Hz, {n_target} at "
            f"{config.sample_rate:g} Hz) is less than {what}",
        )
    # Non-finite samples would be smeared over the channel by filtering, and a constant channel
    # could pick up rounding noise from resampling: judge both on the data as recorded.
    unusable = unusable_channels(raw.get_data(), raw.ch_names)
    dropped = tuple({"channel": recorded_name[name], "canonical": name, "reason": reason} for name, reason in unusable)
    if unusable and not drop_unusable:
        raise ChannelError(source, *unusable[0])
    bad = {name for name, _ in unusable}
    if len(bad) == len(raw.ch_names):
        raise NoUsableChannelError(source, dropped)
    if bad:
        raw.drop_channels(sorted(bad))
    info = raw.info.copy()
    source_samples, first_samp = int(raw.n_times), int(raw.first_samp)
    keep = list(range(len(raw.ch_names)))
    if recording_id is not None:
        keep = choose_channels(raw.ch_names, config.channels_per_recording, config.seed, recording_id)
    names = tuple(raw.ch_names[i] for i in keep)
    if len(keep) != len(raw.ch_names):  # only the drawn channels are filtered and resampled
        raw.pick(list(names))
    notch = config.notch_freqs(sfreq) if notch_freqs is None else notch_freqs
    if config.resample == "fft":  # as before the field existed: MNE's Raw.resample
        filter_and_resample(raw, config.sample_rate, l_freq=config.l_freq, h_freq=config.h_freq, notch_freqs=notch)
        x = raw.get_data()
    else:
        filter_and_resample(raw, sfreq, l_freq=config.l_freq, h_freq=config.h_freq, notch_freqs=notch)  # filters only
        x = resample_signal(raw.get_data(), sfreq, config.sample_rate, config.resample)
    median, iqr = robust_stats(x)
    # Normalised in float32, then clipped: the same values as clipping in float64 first (rounding is
    # monotone), which is what prepare did; training windows and tokenized signals are unchanged.
    x = robust_normalize(x, names, source, stats=(median, iqr))  # ChannelError: NaN/Inf or flat after resampling
    signal = _clip_in_place(x, config.clip)
    if len(keep) != len(info.ch_names):
        info = mne.pick_info(info, keep)
    return PreprocessedRecording(
        signal=signal,
        channel_names=names,
        recorded_names=tuple(recorded_name[n] for n in names),
        median=median,
        iqr=iqr,
        info=info,
        source_rate=sfreq,
        source_samples=source_samples,
        first_samp=first_samp,
        config=config,
        source=source,
        dropped_channels=dropped,
    )
