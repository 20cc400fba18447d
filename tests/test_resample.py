"""Resampling in ``prepare`` (``PrepareConfig.resample``): polyphase by default, MNE's FFT method
kept bit for bit for configs stored before the field existed; and the faster quartiles."""

from dataclasses import replace
from pathlib import Path

import mne
import numpy as np
import pytest

from data_pipelines.config import (LEGACY_RESAMPLE, codec_prepare_config, config_from_dict, config_to_dict,
                                   load_prepare_config, prepare_preset)
from data_pipelines.preprocess import (make_windows, polyphase_factors, preprocess_recording, quartiles,
                                      resample_length, resample_signal, robust_stats)
from data_pipelines.readers import read_raw

DATA = Path(__file__).resolve().parents[1] / "data" / "eegmmidb"
RECORDINGS = sorted(DATA.glob("S00*/S00*R04.edf"))[:3]

# Measured on the 41 EEGMMI recordings of shared/data (64 ch, 160 Hz -> 250 Hz): below 60 Hz the two
# methods' outputs differ by at most 9.4e-4 of the signal's RMS (worst channel, first and last 2 s
# left out); the normalised windows' median and IQR by at most 3.8 %; a recording's median sample of
# the normalised windows by 0.0048 IQR units (0.029 in the worst of the 41 and the 4 bundled ones).
# The tolerances below are about 3x those.
PASSBAND_HZ = 60.0
PASSBAND_RMS_TOL = 3e-3
STATS_REL_TOL = 0.12
MEDIAN_ABS_DIFF_TOL = 0.08


def _lowpass(x: np.ndarray, cutoff: float, rate: float) -> np.ndarray:
    spectrum = np.fft.rfft(x, axis=-1)
    spectrum[:, np.fft.rfftfreq(x.shape[-1], 1 / rate) > cutoff] = 0
    return np.fft.irfft(spectrum, n=x.shape[-1], axis=-1)


# --- the config field -------------------------------------------------------------------------


def test_resample_field_default_and_legacy_loading():
    eeg = prepare_preset("eeg")
    assert eeg.resample == "polyphase" and prepare_preset("emg").resample == "polyphase"
    assert config_to_dict(eeg)["resample"] == "polyphase"
    assert config_from_dict(config_to_dict(eeg)) == eeg  # round trip keeps the method
    old = {k: v for k, v in config_to_dict(eeg).items() if k != "resample"}  # a manifest from before the field
    assert LEGACY_RESAMPLE == "fft" and config_from_dict(old).resample == "fft"
    assert config_from_dict(old) == replace(eeg, resample="fft")
    # A codec's stored preprocessing without the field, and a codec storing none: what they were fed.
    assert codec_prepare_config(old, sample_rate=250.0, modality="eeg").resample == "fft"
    assert codec_prepare_config(None, sample_rate=250.0, modality="eeg").resample == "fft"
    assert codec_prepare_config(None, sample_rate=1000.0, modality="emg").resample == "fft"
    assert codec_prepare_config(config_to_dict(eeg), sample_rate=250.0, modality="eeg").resample == "polyphase"
    assert load_prepare_config("eeg", overrides=["resample=fft"]).resample == "fft"
    with pytest.raises(ValueError, match="resample"):
        config_from_dict({**old, "resample": "sinc"})


# --- resample_signal --------------------------------------------------------------------------


def test_fft_method_is_mne_raw_resample_bit_for_bit():
    raw = read_raw(RECORDINGS[0])
    x = raw.get_data()
    expected = raw.copy().resample(250.0, verbose=False).get_data()
    np.testing.assert_array_equal(resample_signal(x, 160.0, 250.0, "fft"), expected)


def test_fft_config_prepares_exactly_as_before():
    """resample="fft": the old path (MNE's Raw.resample after the filters), channels drawn first or not."""
    fft = replace(prepare_preset("eeg"), resample="fft", channels_per_recording=5, l_freq=0.5, h_freq=40.0)
    p = preprocess_recording(read_raw(RECORDINGS[0]), fft, recording_id="S001R04")
    raw = read_raw(RECORDINGS[0])
    mne.rename_channels(raw.info, {n: n.strip(".").upper() for n in raw.ch_names})
    raw.pick([n for n in raw.ch_names if n.upper() in {c.upper() for c in p.channel_names}])
    raw.filter(0.5, 40.0, picks="all", verbose=False).resample(250.0, verbose=False)
    x = raw.get_data()
    median, iqr = np.median(x, axis=1), np.subtract(*np.percentile(x, [75, 25], axis=1))
    np.testing.assert_array_equal(p.median, median)
    np.testing.assert_array_equal(p.signal, np.clip(((x - median[:, None]) / iqr[:, None]).astype(np.float32), -10, 10))


@pytest.mark.parametrize(
    "source, target, factors",
    [(160.0, 250.0, (25, 16)), (200.0, 1000.0, (5, 1)), (2000.0, 1000.0, (1, 2)), (256.0, 250.0, (125, 128)),
     (512.0, 250.0, (125, 256))],
)
def test_polyphase_factors(source, target, factors):
    assert polyphase_factors(source, target) == factors


def test_polyphase_factors_of_awkward_ratios():
    assert polyphase_factors(173.61, 250.0) == (25000, 17361)  # Bonn, exact
    up, down = polyphase_factors(1000.0001, 250.0)  # 2500000/10000001: approximated, bounded terms
    assert (up, down) == (1, 4) and abs(up / down / (250.0 / 1000.0001) - 1) < 2e-7  # its best bounded fraction
    x = np.random.default_rng(0).standard_normal((1, 4000))
    assert resample_signal(x, 1000.0001, 250.0).shape == (1, resample_length(4000, 1000.0001, 250.0))


@pytest.mark.parametrize("n", [1000, 1001, 1007, 20000])
@pytest.mark.parametrize("source, target", [(160.0, 250.0), (256.0, 250.0), (173.61, 250.0), (200.0, 1000.0)])
def test_both_methods_give_mne_lengths(n, source, target):
    x = np.random.default_rng(n).standard_normal((2, n))
    expected = mne.filter.resample(x, up=target, down=source, npad="auto", verbose=False).shape[-1]
    assert resample_length(n, source, target) == expected
    assert resample_signal(x, source, target, "polyphase").shape == (2, expected)
    assert resample_signal(x, source, target, "fft").shape == (2, expected)


def test_polyphase_same_windows_and_starts_close_in_the_passband():
    poly = prepare_preset("eeg")
    fft = replace(poly, resample="fft")
    for path in RECORDINGS:
        a = preprocess_recording(read_raw(path), fft)
        b = preprocess_recording(read_raw(path), poly)
        assert b.signal.shape == a.signal.shape and b.signal.dtype == np.float32 and b.signal.flags.c_contiguous
        assert b.windows().shape == a.windows().shape
        np.testing.assert_array_equal(b.window_starts(), a.window_starts())
        assert np.all(np.abs(b.iqr / a.iqr - 1) < STATS_REL_TOL)
        assert np.all(np.abs(b.median - a.median) < STATS_REL_TOL * a.iqr)
        assert np.median(np.abs(b.signal - a.signal)) < MEDIAN_ABS_DIFF_TOL

        x = read_raw(path).get_data()
        x = x - np.median(x, axis=1, keepdims=True)
        ya, yb = resample_signal(x, 160.0, 250.0, "fft"), resample_signal(x, 160.0, 250.0, "polyphase")
        inner = slice(500, -500)
        la, ld = _lowpass(ya, PASSBAND_HZ, 250.0)[:, inner], _lowpass(yb - ya, PASSBAND_HZ, 250.0)[:, inner]
        rel = np.sqrt(np.mean(ld**2, axis=1) / np.mean(la**2, axis=1))
        assert rel.max() < PASSBAND_RMS_TOL, rel.max()


def test_polyphase_resamples_a_sine():
    rate, target, f = 160.0, 250.0, 10.0
    t = np.arange(16000) / rate
    y = resample_signal(np.sin(2 * np.pi * f * t)[None], rate, target, "polyphase")[0]
    expected = np.sin(2 * np.pi * f * np.arange(y.size) / target)
    np.testing.assert_allclose(y[50:-50], expected[50:-50], atol=5e-3)


def test_equal_rates_are_left_alone():
    x = np.ones((2, 100))
    assert resample_signal(x, 250.0, 250.0) is x


# --- the cheaper steps give the values they gave -----------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 15, 16, 17, 18, 19, 64, 1001, 1002, 30001])
def test_quartiles_equal_numpy_percentile(n):
    rng = np.random.default_rng(n)
    cases = [rng.standard_normal((4, n)), np.round(rng.standard_normal((4, n)) * 2) + 0.5,
             rng.integers(-3, 3, (4, n)).astype(float) * 1e-6]
    flat = rng.standard_normal((2, n))
    flat[:, : n // 2 + 1] = 3.0
    cases.append(flat)
    nan = rng.standard_normal((2, n))
    nan[1, 0] = np.nan
    cases.append(nan)
    for x in cases:
        np.testing.assert_array_equal(np.stack(quartiles(x)), np.percentile(x, [25, 50, 75], axis=-1))
    median, iqr = robust_stats(cases[0])
    q25, q50, q75 = np.percentile(cases[0], [25, 50, 75], axis=-1)
    np.testing.assert_array_equal(median, q50)
    np.testing.assert_array_equal(iqr, q75 - q25)


def test_quartiles_of_a_recording():
    x = read_raw(RECORDINGS[0]).get_data()
    np.testing.assert_array_equal(np.stack(quartiles(x)), np.percentile(x, [25, 50, 75], axis=-1))


def test_back_to_back_windows_equal_the_indexed_ones():
    x = np.random.default_rng(0).standard_normal((3, 5003)).astype(np.float32)
    windows = make_windows(x, 1000)
    index = np.arange(5)[:, None] * 1000 + np.arange(1000)[None, :]
    np.testing.assert_array_equal(windows, x[:, index].transpose(1, 0, 2))
    np.testing.assert_array_equal(make_windows(x, 1000, 500)[::2], windows)
