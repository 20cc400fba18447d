"""TUAB, TUEV and Sleep-EDF task programs on tiny synthetic copies laid out as the publishers distribute them.

The copies (tests/synthetic_data) are TUH-style EDF files and Sleep-EDF PSG/hypnogram pairs written
by our EDF writer; each electrode / stage carries a known tone, so the tests can check channel
order, montage and label alignment from the processed windows themselves. No model is trained.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows
from biocodec_jax.evaluation.splits import split_indices
from data_pipelines.errors import ChannelError, RecordingError
from experiments.tasks import sleep_edf, tuab, tuev
from tests.synthetic_data.edf import EdfAnnotation, EdfSignal, write_edf
from tests.synthetic_data.sleep_edf import LONG_NIGHT, PZ_OZ_HZ, SHORT_NIGHT, STAGE_HZ, make_sleep_edf
from tests.synthetic_data.tuab import make_tuab
from tests.synthetic_data.tuev import BURST_ELECTRODE, make_tuev, rec_text
from tests.synthetic_data.tuh import ELECTRODE_HZ

RATE = 250.0
WINDOW = 1250


def spectrum_peaks(x: np.ndarray, rate: float, n: int = 1) -> list[float]:
    """The ``n`` largest spectral peaks of a 1-D signal, at least 1 Hz apart (Hz)."""
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    power = np.abs(np.fft.rfft(x - x.mean()))
    peaks = []
    for k in np.argsort(power)[::-1]:
        if all(abs(freqs[k] - p) > 1.0 for p in peaks):
            peaks.append(round(float(freqs[k]), 1))
        if len(peaks) == n:
            return peaks
    return peaks


def check_splits_leak_free(data: LabelledWindows, splits) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    parts = []
    for split in splits:
        train, val, test = split_indices(data, split)  # raises on leakage
        groups = [set(data.subjects[i].tolist()) for i in (train, val, test)]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert len(train) + len(val) + len(test) == len(data.y)
        parts.append((train, val, test))
    return parts


# ---------------------------------------------------------------------------------------------
# EDF writer


def test_edf_writer_round_trips_signals_and_annotations(tmp_path):
    import mne

    rng = np.random.default_rng(0)
    fast, slow = rng.normal(0, 30, 100 * 60), rng.normal(37, 0.1, 60)
    path = write_edf(tmp_path / "x.edf", [EdfSignal("EEG Fpz-Cz", fast, 100.0), EdfSignal("Temp rectal", slow, 1.0, "DegC")],
                     record_duration=30.0, annotations=[EdfAnnotation(0, 30, "Sleep stage W"), EdfAnnotation(12.5, None, "x")])
    raw = mne.io.read_raw_edf(path, preload=True, verbose=False)
    assert raw.ch_names == ["EEG Fpz-Cz", "Temp rectal"] and raw.info["sfreq"] == 100.0 and raw.n_times == 6000
    step = (fast.max() - fast.min() + 2) / 65535  # one digital step of the default physical range
    np.testing.assert_allclose(raw.get_data()[0] * 1e6, fast, atol=step)
    assert list(raw.annotations.description) == ["Sleep stage W", "x"]
    np.testing.assert_allclose(raw.annotations.onset, [0, 12.5])
    np.testing.assert_allclose(raw.annotations.duration, [30, 0])

    # An annotations-only EDF+C file, the header of Sleep-EDF's SC4001EC-Hypnogram.edf.
    hyp = write_edf(tmp_path / "h.edf", [], record_duration=0.0, patient="X F X Female_33yr",
                    recording="Startdate 24-APR-1989 X X X",
                    annotations=[EdfAnnotation(0, 30630, "Sleep stage W"), EdfAnnotation(30630, 120, "Sleep stage 1")])
    head = hyp.read_bytes()[:256]
    assert head[192:197] == b"EDF+C" and head[236:256] == b"1       0       1   "
    annotations = mne.read_annotations(hyp)
    assert list(annotations.description) == ["Sleep stage W", "Sleep stage 1"]
    np.testing.assert_allclose(annotations.duration, [30630, 120])


def test_task_modules_follow_the_contract_and_need_no_torch():
    """The task contract (experiments/tasks/__init__.py); their imports are at the top of the module
    (tests/test_import_rules.py), and only the PyTorch baselines need torch, when they run."""
    from experiments.tasks import get_task

    for module, name, variants in ((tuab, "tuab", ("abnormal",)), (tuev, "tuev", ("events",)),
                                   (sleep_edf, "sleep_edf", ("all", "cassette", "telemetry"))):
        assert module.NAME == name and module.MODALITY == "eeg" and module.VARIANTS == variants
        assert get_task(name) is module and callable(module.load) and callable(module.make_splits)
    code = ("import sys, experiments.tasks.tuab, experiments.tasks.tuev, experiments.tasks.sleep_edf; "
            "print(sorted(m for m in ('torch', 'braindecode') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# TUAB

TUAB_CHANNELS = ("FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3", "PZ", "P4",
                 "T6", "O1", "O2", "A1", "A2")


@pytest.fixture(scope="module")
def tuab_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuh_eeg_abnormal") / "v3.0.1"
    written = make_tuab(root)
    return root, written, tuab.load(root, RATE, workdir=root.parent / "windows")


def test_tuab_windows_labels_segments_and_partitions(tuab_copy):
    root, written, data = tuab_copy
    assert data.channel_names == TUAB_CHANNELS and data.class_names == ("normal", "abnormal")
    assert data.x.shape[1:] == (21, WINDOW) and data.x.dtype == np.float32 and data.sample_rate == RATE
    expected_total = 0
    for rec in written:
        name = str(rec.path.relative_to(root / "edf").with_suffix(""))
        index = np.flatnonzero(data.recordings == name)
        n = 2 * (rec.duration_s // 10)  # back-to-back 10-s segments, two 5-s windows each
        assert len(index) == n, name
        assert set(data.y[index]) == {("normal", "abnormal").index(rec.label)}
        assert set(data.subjects[index]) == {rec.subject} and set(data.partitions[index]) == {rec.partition}
        np.testing.assert_array_equal(data.segments[index], np.arange(n) // 2)
        expected_total += n
    assert len(data.y) == expected_total
    assert np.bincount(data.y).tolist() == [24, 36]
    assert len(np.unique(data.score_groups())) == expected_total // 2
    # Robust-normalised and clipped like the codec's pre-training data, over each 5-s window (never over
    # a file: every TUAB file is one class), and written to disk recording by recording (a read-only memmap).
    assert np.abs(data.x).max() <= 10.0 and 0.3 < data.x.std() < 1.0
    assert data.preprocessing["normalisation_scope"] == "window" and data.preprocessing["flat_window_channels"] == 0
    q25, median, q75 = np.percentile(np.asarray(data.x, np.float64), [25, 50, 75], axis=-1)
    np.testing.assert_allclose(median, 0.0, atol=1e-5)
    np.testing.assert_allclose(q75 - q25, 1.0, rtol=1e-4)
    assert isinstance(data.x, np.memmap) and not data.x.flags.writeable
    assert data.preprocessing["notch_hz"] == 60.0 and data.preprocessing["band_pass_hz"] == [0.1, 75.0]


def test_tuab_channels_come_out_in_protocol_order(tuab_copy):
    _, _, data = tuab_copy
    for w in data.x[:: len(data.x) // 6]:  # windows of recordings at 250, 256 and 512 Hz
        assert [spectrum_peaks(w[c], RATE)[0] for c in range(21)] == [ELECTRODE_HZ[c] for c in TUAB_CHANNELS]


def test_tuab_splits_test_on_the_official_eval_set(tuab_copy):
    _, _, data = tuab_copy
    splits = tuab.make_splits(data, seed=0)
    train_subjects = sorted(set(data.subjects[data.partitions == "train"].tolist()))
    assert len(splits) == 4  # 5 folds, capped at the 4 training subjects
    vals = []
    for (train, val, test), split in zip(check_splits_leak_free(data, splits), splits):
        np.testing.assert_array_equal(test, np.flatnonzero(data.partitions == "eval"))
        assert set(data.partitions[np.concatenate([train, val])]) == {"train"}
        vals += list(split.val)
    assert sorted(vals) == train_subjects  # each training subject validates exactly once
    assert [s.val for s in tuab.make_splits(data, seed=0)] == [s.val for s in splits]


def test_tuab_reads_linked_ear_montage_and_deeper_folders(tmp_path):
    recordings = (("train", "normal", "aaaaaaaa", 1, 256.0, 40), ("eval", "abnormal", "aaaaaaab", 1, 250.0, 40))
    written = make_tuab(tmp_path, recordings, montage="le")
    # v2.0.0 kept files deeper: 01_tcp_ar/<group>/<subject>/<session>_<date>/<file>.
    deeper = written[1].path.parent / "000" / "aaaaaaab" / "s001_2013_08_15" / written[1].path.name
    deeper.parent.mkdir(parents=True)
    written[1].path.rename(deeper)
    data = tuab.load(tmp_path / "edf", RATE, workdir=tmp_path / "windows")  # --data may also be the edf/ folder itself
    assert data.channel_names == TUAB_CHANNELS and len(data.y) == 16
    assert sorted(set(data.recordings)) == ["eval/abnormal/02_tcp_le/000/aaaaaaab/s001_2013_08_15/aaaaaaab_s001_t000",
                                            "train/normal/02_tcp_le/aaaaaaaa_s001_t000"]
    assert sorted(set(data.subjects)) == ["aaaaaaaa", "aaaaaaab"]
    assert [spectrum_peaks(data.x[0, c], RATE)[0] for c in range(21)] == [ELECTRODE_HZ[c] for c in TUAB_CHANNELS]


def test_tuab_recording_without_an_electrode_is_an_error_naming_file_and_channel(tmp_path):
    recordings = (("train", "normal", "aaaaaaaa", 1, 250.0, 40), ("train", "abnormal", "aaaaaaac", 1, 250.0, 40))
    written = make_tuab(tmp_path, recordings, drop={"aaaaaaac": ("EEG CZ-REF",)})
    with pytest.raises(ChannelError, match=r"aaaaaaac_s001_t000\.edf: channel 'CZ': missing") as err:
        tuab.read_recording(written[1].path)
    assert err.value.channel == "CZ"
    # load skips that file; its class then has no recording left, which is a dataset-level error.
    with pytest.raises(DatasetError, match=r"no recording of class abnormal .*\(1 unusable file\(s\) skipped\)"):
        tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")


def test_tuab_short_or_flat_recordings_are_skipped_with_a_warning(tmp_path, caplog):
    recordings = (("train", "normal", "aaaaaaaa", 1, 250.0, 40), ("train", "abnormal", "aaaaaaac", 1, 250.0, 40),
                  ("train", "abnormal", "aaaaaaad", 1, 250.0, 8), ("train", "abnormal", "aaaaaaae", 1, 250.0, 40))
    make_tuab(tmp_path, recordings, flat={"aaaaaaae": ("EEG O1-REF",)})
    with caplog.at_level(logging.WARNING), pytest.warns(RuntimeWarning, match="filter_length"):
        data = tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")
    assert "aaaaaaad_s001_t000.edf is shorter than one 10-s segment; skipped" in caplog.text
    assert "aaaaaaae_s001_t000.edf: channel 'O1': flat signal (interquartile range 0); recording skipped" in caplog.text
    assert sorted(set(data.subjects)) == ["aaaaaaaa", "aaaaaaac"] and len(data.y) == 16
    assert data.preprocessing["skipped"] == [
        "train/abnormal/01_tcp_ar/aaaaaaad_s001_t000.edf: shorter than 10 s",
        "train/abnormal/01_tcp_ar/aaaaaaae_s001_t000.edf: channel 'O1': flat signal (interquartile range 0)"]


def test_tuab_bad_layouts_are_errors_that_show_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"no edf/train or edf/eval folder .*edf/\{train,eval\}/\{normal,abnormal\}/01_tcp_ar/"):
        tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")
    (tmp_path / "edf" / "train" / "normal").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no recordings under .*<subject>_s<session>_t<token>\.edf"):
        tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")
    make_tuab(tmp_path, (("train", "normal", "aaaaaaaa", 1, 250.0, 40),))
    with pytest.raises(DatasetError, match="no recording of class abnormal"):
        tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")


def _windows(subjects, partitions) -> LabelledWindows:
    n = len(subjects)
    return LabelledWindows.build("t", np.zeros((n, 1, 4)), [i % 2 for i in range(n)], subjects, [f"r{s}" for s in subjects],
                                 ("a", "b"), ("C",), 250, partitions=partitions)


def test_official_eval_folds_refuse_shared_subjects_and_missing_eval():
    with pytest.raises(DatasetError, match="s2 have recordings in both train and eval"):
        tuab.make_splits(_windows(["s1", "s2", "s3", "s2"], ["train", "train", "train", "eval"]))
    with pytest.raises(DatasetError, match="no recordings in the eval partition"):
        tuev.make_splits(_windows(["s1", "s2", "s3"], ["train"] * 3))
    splits = tuev.make_splits(_windows(["s1", "s2", "s3", "e1"], ["train", "train", "train", "eval"]))
    assert [s.test for s in splits] == [("e1",)] * 3 and sorted(v for s in splits for v in s.val) == ["s1", "s2", "s3"]


# ---------------------------------------------------------------------------------------------
# TUEV

TUEV_CHANNELS = ("FP1-F7", "F7-T3", "T3-T5", "T5-O1", "FP2-F8", "F8-T4", "T4-T6", "T6-O2",
                 "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4", "C4-P4", "P4-O2")


@pytest.fixture(scope="module")
def tuev_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuh_eeg_events") / "v2.0.1"
    written = make_tuev(root)
    return root, written, tuev.load(root, RATE)


def test_tuev_one_window_per_rec_row_in_file_order(tuev_copy):
    root, written, data = tuev_copy
    assert data.channel_names == TUEV_CHANNELS
    assert data.class_names == ("spsw", "gped", "pled", "eyem", "artf", "bckg")
    assert data.x.shape == (sum(len(r.events) for r in written), 16, WINDOW) and data.segments is None
    for rec in written:
        index = np.flatnonzero(data.recordings == str(rec.path.relative_to(root / "edf").with_suffix("")))
        assert data.y[index].tolist() == [e.label - 1 for e in rec.events]
        assert set(data.subjects[index]) == {rec.subject} and set(data.partitions[index]) == {rec.partition}
    assert sorted(set(data.subjects[data.partitions == "eval"])) == ["000", "001", "002"]
    assert np.bincount(data.y, minlength=6).tolist() == [5, 4, 2, 2, 3, 7]
    # An event on two channels gives two identical windows (as BIOT's script).
    first = np.flatnonzero(data.recordings == "train/aaaaaaar/aaaaaaar_00000001")
    np.testing.assert_array_equal(data.x[first[0]], data.x[first[1]])


def test_tuev_bipolar_montage_and_event_centring(tuev_copy):
    _, _, data = tuev_copy
    pairs = [c.split("-") for c in TUEV_CHANNELS]
    for w in data.x:
        assert [sorted(spectrum_peaks(w[c], RATE, 2)) for c in range(16)] == \
            [sorted([ELECTRODE_HZ[a], ELECTRODE_HZ[b]]) for a, b in pairs]
    # Every event put a 1-s burst on O2: it sits in the middle second of its window, also for the
    # event 0.5 s into its recording, whose window wraps around the recording's ends.
    channel = TUEV_CHANNELS.index(f"T6-{BURST_ELECTRODE}")
    energy = (data.x[:, channel].reshape(len(data.x), 5, WINDOW // 5) ** 2).sum(-1)
    assert (energy.argmax(axis=1) == 2).all()
    # z-scored per window (never over the recording): every channel of every window has mean 0, SD 1.
    np.testing.assert_allclose(data.x.astype(np.float64).mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(data.x.astype(np.float64).std(axis=-1), 1, atol=1e-4)
    assert data.preprocessing["normalisation_scope"] == "window"


def test_tuev_splits_test_on_the_official_eval_set(tuev_copy):
    _, _, data = tuev_copy
    splits = tuev.make_splits(data, seed=1)
    assert len(splits) == 4  # 5 folds, capped at the 4 training subjects
    for train, val, test in check_splits_leak_free(data, splits):
        np.testing.assert_array_equal(test, np.flatnonzero(data.partitions == "eval"))
    assert sorted(v for s in splits for v in s.val) == ["aaaaaaar", "aaaaaabs", "aaaaaaci", "aaaaaadd"]


def test_tuev_missing_rec_file_is_an_error_naming_it(tmp_path, monkeypatch):
    written = make_tuev(tmp_path)
    written[3].rec.unlink()
    monkeypatch.setattr(tuev, "read_raw", lambda path: pytest.fail("read an EDF before checking every .rec"))
    with pytest.raises(RecordingError, match=r"aaaaaaci_00000001\.rec: missing: the event labels of aaaaaaci_00000001\.edf"):
        tuev.load(tmp_path, RATE)


def test_tuev_recording_without_an_electrode_is_an_error_naming_file_and_channel(tmp_path):
    written = make_tuev(tmp_path, drop={"aaaaaaar_00000001": ("EEG T3-REF",)})
    with pytest.raises(ChannelError, match=r"aaaaaaar_00000001\.edf: channel 'T3': missing"):
        tuev.bipolar_montage(written[0].path)
    data = tuev.load(tmp_path, RATE)  # load skips that recording and names it
    assert [f["path"] for f in data.preprocessing["skipped_files"]] == [str(written[0].path)]
    assert "train/aaaaaaar/aaaaaaar_00000001" not in set(data.recordings)


def test_tuev_flat_bipolar_channel_is_zero_with_a_warning(tmp_path, caplog):
    make_tuev(tmp_path, flat={"aaaaaabs_00000001": ("EEG F7-REF", "EEG T3-REF")})
    with caplog.at_level(logging.WARNING):
        data = tuev.load(tmp_path, RATE)
    assert "aaaaaabs_00000001.edf: channel F7-T3 is flat; it is 0 in every window" in caplog.text
    index = np.flatnonzero(data.recordings == "train/aaaaaabs/aaaaaabs_00000001")
    channel = TUEV_CHANNELS.index("F7-T3")
    assert len(index) == 2 and (data.x[index, channel] == 0).all()
    others = np.delete(data.x[index], channel, axis=1)
    assert np.allclose(others.std(axis=-1), others.std(axis=-1).mean(), rtol=0.5) and (others.std(axis=-1) > 0.1).all()


@pytest.mark.parametrize("row, problem", [
    ("3,20.0,21.0,9", r"line 2: label 9 is not one of 1-6"),
    ("3,20.0,21.0", r"line 2: expected 'channel,start_s,stop_s,label'"),
    ("3,39.5,40.5,6", r"line 2: event 39.5-40.5 s is not inside the 40-s recording"),
    ("22,20.0,21.0,6", r"line 2: channel 22 is not a TCP montage index 0-21"),
])
def test_tuev_bad_rec_rows_are_errors_naming_file_and_line(tmp_path, row, problem):
    written = make_tuev(tmp_path)
    written[0].rec.write_text(rec_text(written[0].events[:1]) + row + "\n")
    with pytest.raises(RecordingError, match=r"aaaaaaar_00000001\.rec: " + problem):
        tuev.read_rec(written[0].rec, written[0].duration_s)
    data = tuev.load(tmp_path, RATE)  # load skips the recording with its .rec, naming the .rec
    assert len(data.preprocessing["skipped_files"]) == 1
    skipped = data.preprocessing["skipped_files"][0]
    assert skipped["path"] == str(written[0].rec) and re.match(problem, skipped["reason"])
    assert "train/aaaaaaar/aaaaaaar_00000001" not in set(data.recordings)


def test_tuev_empty_directory_is_an_error_that_shows_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"edf/train/<subject>/<subject>_<n>\.edf .*\.rec"):
        tuev.load(tmp_path, RATE)
    (tmp_path / "edf" / "eval").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no recordings under"):
        tuev.load(tmp_path, RATE)


# ---------------------------------------------------------------------------------------------
# Sleep-EDF

STAGE_OF_CLASS = {0: "Sleep stage W", 1: "Sleep stage 1", 2: "Sleep stage 2", 3: "Sleep stage 3", 4: "Sleep stage R"}
# Epochs kept per class (W, N1, N2, N3, REM): LONG_NIGHT keeps 30 min (60 epochs) of its 35 min of
# wake on each side, drops the '?' and movement epochs; SHORT_NIGHT keeps all its wake.
LONG_COUNTS, SHORT_COUNTS = [120, 2, 6, 4, 3], [15, 1, 3, 0, 2]


@pytest.fixture(scope="module")
def sleep_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("sleep-edfx") / "1.0.0"
    written = make_sleep_edf(root)
    return root, written, sleep_edf.load(root, RATE)


def test_sleep_edf_epochs_windows_and_labels(sleep_copy):
    _, written, data = sleep_copy
    assert data.channel_names == ("FPZ-CZ", "PZ-OZ") and data.class_names == ("W", "N1", "N2", "N3", "REM")
    assert data.x.shape[1:] == (2, WINDOW) and data.name == "sleep_edf-all"
    assert sorted(set(data.subjects)) == ["SC00", "SC01", "SC02", "ST01", "ST02"]  # ST01 is not SC01
    for rec in written:
        index = np.flatnonzero(data.recordings == rec.psg.name.removesuffix("-PSG.edf"))
        counts = LONG_COUNTS if rec.stages == LONG_NIGHT else SHORT_COUNTS
        assert np.bincount(data.y[index], minlength=5).tolist() == [6 * c for c in counts], rec.psg.name
        assert set(data.subjects[index]) == {f"{rec.study}{rec.subject:02d}"}
        # Six windows per epoch share the epoch's index and label.
        segments, counts_per_epoch = np.unique(data.segments[index], return_counts=True)
        assert (counts_per_epoch == 6).all()
        for s in segments:
            assert len(set(data.y[index][data.segments[index] == s])) == 1
        if rec.stages == LONG_NIGHT:  # first sleep epoch 70, last 86: kept 10..146 minus '?' 76, movement 81
            assert segments[0] == 10 and segments[-1] == 146 and 76 not in segments and 81 not in segments
    assert np.bincount(data.y).tolist() == [6 * (2 * a + 4 * b) for a, b in zip(LONG_COUNTS, SHORT_COUNTS)]


def test_sleep_edf_every_window_shows_its_own_epochs_stage(sleep_copy):
    _, _, data = sleep_copy
    fpz = [spectrum_peaks(w[0], RATE)[0] for w in data.x]
    assert fpz == [STAGE_HZ[STAGE_OF_CLASS[c]] for c in data.y]
    assert {spectrum_peaks(w[1], RATE)[0] for w in data.x[::50]} == {PZ_OZ_HZ}
    # Per-epoch z-score: the six windows of an epoch together have mean 0 and SD 1 per channel.
    epoch = data.x[:6].transpose(1, 0, 2).reshape(2, -1)
    np.testing.assert_allclose(epoch.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(epoch.std(axis=1), 1, atol=1e-4)


def test_sleep_edf_subject_folds(sleep_copy):
    _, _, data = sleep_copy
    splits = sleep_edf.make_splits(data, seed=0)
    assert len(splits) == 5
    check_splits_leak_free(data, splits)
    assert sorted(s for split in splits for s in split.test) == ["SC00", "SC01", "SC02", "ST01", "ST02"]


def test_sleep_edf_variants_choose_the_study(sleep_copy):
    root, _, _ = sleep_copy
    assert {s for _, _, s in sleep_edf.find_nights(root, "cassette")} == {"SC00", "SC01", "SC02"}
    assert [p.name for p, _, _ in sleep_edf.find_nights(root, "telemetry")] == ["ST7011J0-PSG.edf", "ST7021J0-PSG.edf"]
    assert [h.name for _, h, _ in sleep_edf.find_nights(root, "telemetry")] == ["ST7011JP-Hypnogram.edf", "ST7021JV-Hypnogram.edf"]


def test_sleep_edf_epoch_flat_in_the_recording_is_zero(tmp_path):
    written = make_sleep_edf(tmp_path, (("SC", 0, 1, SHORT_NIGHT),), flat_epochs={"SC4001E0-PSG.edf": (11,)})
    windows, labels, epoch = sleep_edf.night_windows(written[0].psg, written[0].hypnogram, RATE)
    assert epoch.tolist() == np.repeat(np.arange(21), 6).tolist() and labels[epoch == 11].tolist() == [2] * 6
    assert (windows[epoch == 11, 0] == 0).all() and (windows[epoch == 11, 1].std(axis=-1) > 0.5).all()
    assert (windows[epoch != 11].std(axis=-1) > 0.5).all()


def test_sleep_edf_missing_hypnogram_is_an_error_naming_the_psg(tmp_path, monkeypatch):
    written = make_sleep_edf(tmp_path, (("SC", 0, 1, SHORT_NIGHT), ("SC", 1, 1, SHORT_NIGHT), ("ST", 1, 1, SHORT_NIGHT)))
    written[1].hypnogram.unlink()
    monkeypatch.setattr(sleep_edf, "read_raw", lambda path: pytest.fail("read a PSG before pairing every night"))
    with pytest.raises(RecordingError, match=r"SC4011E0-PSG\.edf: its hypnogram SC4011\?\?-Hypnogram\.edf is missing"):
        sleep_edf.load(tmp_path, RATE)


def test_sleep_edf_orphan_hypnogram_is_skipped_with_a_warning(tmp_path, caplog):
    written = make_sleep_edf(tmp_path, (("SC", 0, 1, SHORT_NIGHT), ("SC", 1, 1, SHORT_NIGHT)))
    written[1].psg.unlink()
    with caplog.at_level(logging.WARNING):
        nights = sleep_edf.find_nights(tmp_path, "cassette")
    assert [p.name for p, _, _ in nights] == ["SC4001E0-PSG.edf"]
    assert "SC4011EH-Hypnogram.edf has no PSG file SC4011??-PSG.edf; skipped" in caplog.text


def test_sleep_edf_psg_without_a_channel_is_an_error_naming_file_and_channel(tmp_path):
    written = make_sleep_edf(tmp_path, (("SC", 0, 1, SHORT_NIGHT),), drop={"SC4001E0-PSG.edf": ("EEG Pz-Oz",)})
    with pytest.raises(ChannelError, match=r"SC4001E0-PSG\.edf: channel 'EEG Pz-Oz': missing"):
        sleep_edf.night_windows(written[0].psg, written[0].hypnogram, RATE)
    with pytest.raises(DatasetError, match=r"none of the 1 nights .* could be used \(1 unusable file\(s\) skipped\)"):
        sleep_edf.load(tmp_path, RATE, "cassette")


def test_sleep_edf_unknown_stage_is_an_error_naming_the_hypnogram(tmp_path):
    written = make_sleep_edf(tmp_path, (("ST", 1, 1, SHORT_NIGHT),))
    write_edf(written[0].hypnogram, [], record_duration=0.0,
              annotations=[EdfAnnotation(0, 300, "Sleep stage W"), EdfAnnotation(300, 90, "Sleep stage N2")])
    with pytest.raises(RecordingError, match=r"ST7011JC-Hypnogram\.edf: unknown sleep stage annotation 'Sleep stage N2' at 300 s"):
        sleep_edf.night_windows(written[0].psg, written[0].hypnogram, RATE)
    with pytest.raises(DatasetError, match=r"none of the 1 nights .* could be used \(1 unusable file\(s\) skipped\)"):
        sleep_edf.load(tmp_path, RATE, "telemetry")


def test_sleep_edf_bad_layouts_are_errors_that_show_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"no sleep-cassette or sleep-telemetry folder .*SC4001E0-PSG\.edf \+ SC4001EC-Hypnogram\.edf"):
        sleep_edf.load(tmp_path, RATE)
    make_sleep_edf(tmp_path, (("SC", 0, 1, SHORT_NIGHT),))
    with pytest.raises(DatasetError, match=r"sleep-telemetry is missing; .*choose --variant cassette"):
        sleep_edf.load(tmp_path, RATE)
    with pytest.raises(DatasetError, match="no epoch of stage"):  # a night without N3
        sleep_edf.load(tmp_path, RATE, "cassette")
    (tmp_path / "sleep-telemetry").mkdir()
    with pytest.raises(DatasetError, match=r"no PSG files in .*sleep-telemetry"):
        sleep_edf.load(tmp_path, RATE, "telemetry")


# ---------------------------------------------------------------------------------------------
# A damaged file is skipped by name; the rest of the dataset is loaded (issue 17)


def _damage(path: Path) -> None:
    """Cut a file to its header and a few bytes of its first record: a truncated download."""
    data = path.read_bytes()
    path.write_bytes(data[:int(data[184:192].decode().strip()) + 100])


def test_tuab_damaged_recording_is_skipped_by_name_and_the_rest_loads(tmp_path):
    written = make_tuab(tmp_path)
    _damage(written[1].path)
    data = tuab.load(tmp_path, RATE, workdir=tmp_path / "windows")
    assert [f["path"] for f in data.preprocessing["skipped_files"]] == [str(written[1].path)]
    assert data.preprocessing["skipped_files"][0]["reason"]
    for rec in written:
        name = str(rec.path.relative_to(tmp_path / "edf").with_suffix(""))
        expected = 0 if rec is written[1] else 2 * (rec.duration_s // 10)
        assert np.count_nonzero(data.recordings == name) == expected, name


def test_sleep_edf_damaged_psg_or_hypnogram_skips_its_night_by_name_and_the_rest_loads(tmp_path):
    written = make_sleep_edf(tmp_path)
    _damage(written[2].psg)  # SC4011E0-PSG.edf
    written[3].hypnogram.write_bytes(b"not an EDF file")  # SC4021's hypnogram: garbage
    data = sleep_edf.load(tmp_path, RATE)
    skipped = data.preprocessing["skipped_files"]
    assert [f["path"] for f in skipped] == [str(written[2].psg), str(written[3].hypnogram)]
    assert all(f["reason"] for f in skipped)
    for rec in written:
        index = np.flatnonzero(data.recordings == rec.psg.name.removesuffix("-PSG.edf"))
        if rec in (written[2], written[3]):
            assert len(index) == 0
        else:
            counts = LONG_COUNTS if rec.stages == LONG_NIGHT else SHORT_COUNTS
            assert np.bincount(data.y[index], minlength=5).tolist() == [6 * c for c in counts], rec.psg.name


def test_tuev_damaged_recording_is_skipped_by_name_and_every_file_damaged_is_an_error(tmp_path):
    written = make_tuev(tmp_path)
    _damage(written[2].path)
    data = tuev.load(tmp_path, RATE)
    assert [f["path"] for f in data.preprocessing["skipped_files"]] == [str(written[2].path)]
    assert len(data.y) == sum(len(r.events) for r in written) - len(written[2].events)
    for rec in written:
        _damage(rec.path)
    with pytest.raises(DatasetError, match=r"none of the 8 recordings .* could be used \(8 unusable file\(s\) skipped\)"):
        tuev.load(tmp_path, RATE)


def test_bciiv2a_damaged_gdf_or_label_file_skips_its_session_by_name_and_the_rest_loads(tmp_path):
    from experiments.tasks import bciiv2a
    from tests.synthetic_data import bciiv2a as bci_gen

    truth = bci_gen.make_dataset(tmp_path, subjects=(1, 6, 8), trials=6)
    gdf = tmp_path / "A06E.gdf"
    gdf.write_bytes(gdf.read_bytes()[:300])  # truncated inside its header
    (tmp_path / "A08T.mat").write_bytes(b"not a MATLAB file")
    data = bciiv2a.load(tmp_path, 250.0)
    skipped = data.preprocessing["skipped_files"]
    assert [f["path"] for f in skipped] == [str(gdf), str(tmp_path / "A08T.mat")] and all(f["reason"] for f in skipped)
    assert sorted(set(data.recordings)) == sorted(set(truth) - {"A06E", "A08T"})
    for name in set(truth) - {"A06E", "A08T"}:
        assert np.count_nonzero(data.recordings == name) == 6, name
