"""data_pipelines: reading, channel picking/naming, robust normalisation, clipping and windowing."""

from dataclasses import replace
from pathlib import Path

import mne
import numpy as np
import pytest

from data_pipelines.channels import eeg_channel_indices, normalize_channel_name, pick_eeg
from data_pipelines.config import prepare_preset
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.prepare import recording_windows
from data_pipelines.preprocess import (NoUsableChannelError, clip, count_windows, filter_and_resample, flat_channels,
                                      make_windows, preprocess_recording, robust_normalize)
from data_pipelines.readers import read_raw, recording_format

DATA = Path(__file__).resolve().parents[1] / "data" / "eegmmidb"
S001 = DATA / "S001" / "S001R04.edf"


def _raw(data, names, types="eeg", sfreq=250.0):
    info = mne.create_info(list(names), sfreq, types)
    return mne.io.RawArray(np.asarray(data, np.float64), info, verbose=False)


# --- readers ---------------------------------------------------------------------------------


def test_read_bundled_edf():
    raw = read_raw(S001)
    assert len(raw.ch_names) == 64
    assert raw.info["sfreq"] == 160.0
    assert raw.n_times == 125 * 160
    assert raw.ch_names[0] == "Fc5."
    assert abs(raw.get_data()).max() < 1e-2  # volts


@pytest.mark.parametrize(
    "name, suffix",
    [("a.edf", ".edf"), ("A.EDF", ".edf"), ("b.bdf", ".bdf"), ("c.gdf", ".gdf"), ("d_raw.fif", ".fif"),
     ("e_raw.fif.gz", ".fif.gz"), ("f.set", ".set"), ("g.vhdr", ".vhdr")],
)
def test_recording_format(name, suffix):
    assert recording_format(name) == suffix


def test_unknown_extension_names_file_and_format(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(RecordingError, match=r"notes\.csv: unknown recording format '\.csv'") as e:
        read_raw(path)
    assert e.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        read_raw(tmp_path / "absent.edf")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # MNE warns about the header before failing
def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.edf"
    path.write_bytes(S001.read_bytes()[:100])  # a truncated header
    with pytest.raises(RecordingError, match=r"broken\.edf: cannot be read") as e:
        read_raw(path)
    assert e.value.__cause__ is not None


# --- channels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_name, expected",
    [("Fc5.", "FC5"), ("Cz..", "CZ"), ("Fp1.", "FP1"), ("Afz.", "AFZ"), ("T10.", "T10"), ("Iz..", "IZ"),
     ("EEG FP1-REF", "FP1"), ("EEG T3-LE", "T3"), ("EEG EKG1-REF", "EKG1"), (" O2 ", "O2"), ("ECG", "ECG")],
)
def test_normalize_channel_name(raw_name, expected):
    assert normalize_channel_name(raw_name) == expected


def test_eeg_channel_indices_by_type_and_name():
    names = ["EEG FP1-REF", "EOG L", "EEG EKG1-REF", "STI 014", "Cz..", "EMG chin", "PHOTIC PH", "O1"]
    types = ["eeg", "eog", "eeg", "stim", "eeg", "emg", "eeg", "misc"]
    assert eeg_channel_indices(names, types) == [0, 4]


def test_pick_eeg_drops_non_eeg_and_renames():
    raw = _raw(np.random.default_rng(0).normal(size=(4, 500)), ["EEG FP1-REF", "EEG EKG1-REF", "HEOG", "Cz.."],
               ["eeg", "eeg", "eog", "eeg"])
    pick_eeg(raw)
    assert raw.ch_names == ["FP1", "CZ"]


def test_pick_eeg_errors():
    with pytest.raises(RecordingError, match="no EEG channels"):
        pick_eeg(_raw(np.zeros((1, 10)), ["EOG"], ["eog"]))
    with pytest.raises(RecordingError, match=r"collide.*'FP1'"):
        pick_eeg(_raw(np.zeros((2, 10)), ["Fp1.", "EEG FP1-REF"]))


# --- normalisation and clipping ---------------------------------------------------------------


def test_robust_normalize_matches_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, size=(5, 4001)) * rng.uniform(1e-6, 1e-4, size=(5, 1)) + rng.normal(size=(5, 1)) * 1e-5
    ref = np.empty_like(x)
    for c in range(len(x)):
        q25, q50, q75 = np.quantile(x[c], [0.25, 0.5, 0.75])
        ref[c] = (x[c] - q50) / (q75 - q25)
    y = robust_normalize(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.median(y, axis=1), 0, atol=1e-5)
    q25, q75 = np.quantile(y, [0.25, 0.75], axis=1)
    np.testing.assert_allclose(q75 - q25, 1, rtol=1e-5)


def test_clip():
    x = np.array([[-12.0, -10.0, -3.0, 0.0, 9.99, 10.0, 1e6]])
    np.testing.assert_array_equal(clip(x), [[-10, -10, -3, 0, 9.99, 10, 10]])
    np.testing.assert_array_equal(clip(x, 2.5), np.clip(x, -2.5, 2.5))
    assert clip(x, None) is x
    with pytest.raises(ValueError):
        clip(x, 0)


def test_nan_channel_is_named():
    x = np.random.default_rng(0).normal(size=(3, 100))
    x[1, 17] = np.nan
    with pytest.raises(ChannelError, match=r"rec\.edf: channel 'CZ': 1 non-finite") as e:
        robust_normalize(x, ["FZ", "CZ", "PZ"], source="rec.edf")
    assert e.value.channel == "CZ" and e.value.path == "rec.edf"


def test_inf_channel_without_names_uses_index():
    x = np.ones((2, 10))
    x[0, 0] = np.inf
    with pytest.raises(ChannelError, match="channel '#0'"):
        robust_normalize(x)


def test_flat_channel_is_named():
    x = np.random.default_rng(0).normal(size=(3, 100))
    x[2] = 4e-6
    assert flat_channels(x) == [2]
    with pytest.raises(ChannelError, match=r"channel 'PZ': flat signal") as e:
        robust_normalize(x, ["FZ", "CZ", "PZ"], source="rec.edf")
    assert e.value.channel == "PZ"


# --- windowing -------------------------------------------------------------------------------


def test_window_counts_and_contents():
    x = np.arange(2 * 2600, dtype=np.float64).reshape(2, 2600)
    w = make_windows(x, 1250)
    assert w.shape == (2, 2, 1250) and w.dtype == np.float32
    np.testing.assert_array_equal(w[1, 0], x[0, 1250:2500])
    np.testing.assert_array_equal(w[0, 1], x[1, :1250])
    assert make_windows(x, 1250, stride=625).shape == (3, 2, 1250)
    assert count_windows(2600, 1250) == 2
    assert count_windows(2500, 1250) == 2
    assert count_windows(2499, 1250) == 1
    assert count_windows(1249, 1250) == 0
    assert count_windows(31250, 1250) == 25


def test_too_short_recording():
    with pytest.raises(RecordingError, match=r"short\.edf: 1000 samples is shorter than one window of 1250"):
        make_windows(np.zeros((2, 1000)), 1250, source="short.edf")


def test_filter_and_resample():
    raw = _raw(np.random.default_rng(0).normal(size=(2, 1600)) * 1e-5, ["C3", "C4"], sfreq=160.0)
    filter_and_resample(raw, 250, l_freq=0.5, h_freq=40.0, notch_freqs=50.0)
    assert raw.info["sfreq"] == 250 and raw.n_times == 2500


def test_bundled_recording_to_windows():
    rec = recording_windows(S001, prepare_preset("eeg"))
    assert rec.windows.shape == (25, 64, 1250)  # 125 s at 250 Hz = 25 windows of 5 s
    assert rec.windows.dtype == np.float32
    assert rec.channels[:3] == ("FC5", "FC3", "FC1") and len(rec.channels) == 64
    assert np.abs(rec.windows).max() <= 10.0
    assert rec.single_channel().shape == (25 * 64, 1, 1250)
    np.testing.assert_array_equal(rec.single_channel()[65, 0], rec.windows[1, 1])
    # Robust-normalised over the recording: per-channel median ~0 and IQR ~1 (before the dropped tail).
    flat = rec.windows.transpose(1, 0, 2).reshape(64, -1)
    assert np.abs(np.median(flat, axis=1)).max() < 0.05
    iqr = np.subtract(*np.quantile(flat, [0.75, 0.25], axis=1))
    assert np.abs(iqr - 1).max() < 0.05


def test_emg_channels_are_filtered():
    """MNE's default picks leave ``emg`` out ("yielded no channels"): band-pass and notch must filter
    EMG, and remove what they are meant to (5 Hz motion artefact, 50 Hz mains), keep the band."""
    from dataclasses import replace

    sfreq, n = 1000.0, 10_000
    t = np.arange(n) / sfreq
    tones = {5.0: 1.0, 50.0: 1.0, 120.0: 1.0}
    x = 1e-4 * sum(a * np.sin(2 * np.pi * f * t) for f, a in tones.items())
    raw = _raw(np.stack([x, 0.5 * x]), ["EMG1", "EMG2"], types="emg", sfreq=sfreq)
    emg = replace(prepare_preset("emg"), l_freq=20.0, h_freq=450.0, notch_freq=50.0)
    filter_and_resample(raw, emg.sample_rate, l_freq=emg.l_freq, h_freq=emg.h_freq, notch_freqs=emg.notch_freqs(sfreq))
    middle = slice(2000, 8000)  # away from the edges; 6 s: whole periods of every tone

    def amplitude(signal, f):
        spectrum = np.abs(np.fft.rfft(signal[..., middle], axis=-1))
        return spectrum[..., int(round(f * 6))]

    y = raw.get_data()
    for f, kept in ((5.0, False), (50.0, False), (120.0, True)):
        gain = amplitude(y, f) / amplitude(np.stack([x, 0.5 * x]), f)
        assert (np.all(gain > 0.95) if kept else np.all(gain < 0.05)), (f, gain)

    # The emg preset with a band-pass over the Myo fixture (200 Hz counts) through prepare's path.
    myo = Path(__file__).parent / "fixtures" / "myo" / "12345-1" / "0.txt"
    rec = recording_windows(myo, replace(prepare_preset("emg"), l_freq=20.0, h_freq=90.0), dataset="myo")
    assert rec.windows.shape[1:] == (8, 5000) and rec.windows.shape[0] >= 10 and np.isfinite(rec.windows).all()


# --- the one path: preprocess_recording -------------------------------------------------------


def test_preprocess_recording_is_what_prepare_writes():
    """prepare's windows, channels and stats are preprocess_recording's (tokenize calls it too)."""
    eeg = prepare_preset("eeg")
    p = preprocess_recording(read_raw(S001), eeg)
    rec = recording_windows(S001, eeg)
    np.testing.assert_array_equal(p.windows(), rec.windows)
    np.testing.assert_array_equal(p.window_starts(), rec.starts)
    assert p.channel_names == rec.channels and p.channel_stats() == rec.channel_stats
    assert p.recorded_names[:2] == ("Fc5.", "Fc3.") and p.channel_names[:2] == ("FC5", "FC3")
    assert p.signal.dtype == np.float32 and p.signal.shape == (64, 125 * 250) and np.abs(p.signal).max() <= 10.0
    assert p.source_rate == 160.0 and p.source_samples == 125 * 160 and p.source == str(S001)
    # Training data draws channels_per_recording channels for a recording id; tokenize keeps them all.
    five = replace(eeg, channels_per_recording=5)
    drawn = preprocess_recording(read_raw(S001), five, recording_id="S001R04")
    assert len(drawn.channel_names) == 5 and len(preprocess_recording(read_raw(S001), five).channel_names) == 64
    np.testing.assert_array_equal(drawn.windows(), recording_windows(S001, five).windows)


def test_preprocess_recording_drops_or_refuses_unusable_channels():
    x = np.random.default_rng(0).normal(size=(3, 2500)) * 1e-5
    x[1, 3] = np.nan
    raw = _raw(x, ["C3..", "Cz..", "C4.."])
    p = preprocess_recording(raw.copy(), prepare_preset("eeg"))
    assert p.channel_names == ("C3", "C4") and p.recorded_names == ("C3..", "C4..")
    assert p.dropped_channels == ({"channel": "Cz..", "canonical": "CZ", "reason": "1 non-finite (NaN/Inf) sample(s)"},)
    assert p.info.ch_names == ["C3", "C4"] and p.windows().shape == (2, 2, 1250)
    with pytest.raises(ChannelError, match=r"channel 'CZ': 1 non-finite"):  # a protocol needing every channel
        preprocess_recording(raw.copy(), prepare_preset("eeg"), drop_unusable=False)
    with pytest.raises(NoUsableChannelError, match=r"no usable channel \('C3..': flat") as e:
        preprocess_recording(_raw(np.zeros((2, 2500)), ["C3..", "C4.."]), prepare_preset("eeg"))
    assert [d["canonical"] for d in e.value.dropped_channels] == ["C3", "C4"]
    with pytest.raises(RecordingError, match=r"too short: .* less than one 5-s window"):
        preprocess_recording(_raw(x[:, :1000], ["C3", "CZ", "C4"]), prepare_preset("eeg"))
    short = preprocess_recording(_raw(x[[0, 2], :1000], ["C3", "C4"]), prepare_preset("eeg"), min_length=(320, "one frame"))
    assert short.n_samples == 1000 and short.window_starts().size == 0
