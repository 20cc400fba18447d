"""Task programs for BCI Competition IV 2a and Kaggle ERN, run on synthetic copies laid out and encoded
as the publishers distribute them (tests/synthetic_data): windows, channels, labels, splits, errors."""

import shutil

import numpy as np
import pytest

from biocodec_jax.evaluation.dataset import DatasetError
from biocodec_jax.evaluation.splits import split_indices
from data_pipelines.errors import RecordingError
from data_pipelines.readers import read_raw
from experiments.tasks import bciiv2a, kaggle_ern
from tests.synthetic_data import bciiv2a as bci_gen
from tests.synthetic_data import kaggle_ern as ern_gen
from tests.synthetic_data.gdf import GDFEvent, write_gdf

ELECTRODES = ("FZ", "FC3", "FC1", "FCZ", "FC2", "FC4", "C5", "C3", "C1", "CZ", "C2", "C4", "C6",
              "CP3", "CP1", "CPZ", "CP2", "CP4", "P1", "PZ", "P2", "POZ")


def _assert_leak_free(data, split):
    parts = split_indices(data, split)
    subject_sets = [set(data.subjects[i].tolist()) for i in parts]
    for a in range(3):
        assert len(parts[a]) > 0
        for b in range(a + 1, 3):
            assert not subject_sets[a] & subject_sets[b]
    return parts, subject_sets


# --- GDF writer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, version", [("int16", "2.10"), ("float32", "2.20")])
def test_gdf_writer_round_trips_through_mne(tmp_path, dtype, version):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 20e-6, (3, 700))
    x[1, 100] = -150e-6  # beyond +-100 uV: int16 clips it to the range end, as the BCI IV files store gaps
    events = [GDFEvent(10, 768, 400), GDFEvent(10, 1023, 400), GDFEvent(300, 769, 313), GDFEvent(690, 32766)]
    path = write_gdf(tmp_path / "rec.gdf", x, ["EEG-Fz", "EEG-0", "EOG-left"], 250, events, dtype=dtype, version=version)

    raw = read_raw(path)
    assert raw.ch_names == ["EEG-Fz", "EEG-0", "EOG-left"]
    assert raw.info["sfreq"] == 250.0
    assert raw.n_times == 750  # rounded up to whole 1-s records
    data = raw.get_data()
    if dtype == "int16":
        np.testing.assert_allclose(data[:, :700], np.clip(x, -100e-6, 100e-6), atol=200e-6 / 65535)
        assert data[1, 100] == pytest.approx(-100e-6)
    else:
        np.testing.assert_allclose(data[:, :700], x, rtol=1e-6, atol=1e-12)
    ann = raw.annotations
    assert sorted(zip(np.round(ann.onset * 250).astype(int), ann.description)) == \
        [(10, "1023"), (10, "768"), (300, "769"), (690, "32766")]
    assert ann.duration[list(ann.description).index("769")] == pytest.approx(313 / 250)


# --- BCI Competition IV 2a ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bci(tmp_path_factory):
    root = tmp_path_factory.mktemp("bciiv2a")
    truth = bci_gen.make_dataset(root, subjects=(1, 6, 8), trials=6)
    return root, truth, bciiv2a.load(root, 250.0)


def test_bciiv2a_windows_channels_and_labels(bci):
    _, truth, data = bci
    assert data.x.shape == (36, 22, 1250) and data.x.dtype == np.float32
    assert data.channel_names == ELECTRODES
    assert data.class_names == ("left_hand", "right_hand", "feet", "tongue")
    for name, session in truth.items():
        rows = data.recordings == name
        np.testing.assert_array_equal(data.y[rows], session.labels - 1)
        assert set(data.subjects[rows]) == {name[:3]}
        assert set(data.partitions[rows]) == {"train" if name.endswith("T") else "eval"}


def test_bciiv2a_windows_start_1s_before_the_cue_and_are_baseline_zscored(bci):
    _, _, data = bci
    baseline = data.x[..., :250]
    np.testing.assert_allclose(baseline.mean(-1), 0, atol=1e-4)
    np.testing.assert_allclose(baseline.std(-1, ddof=1), 1, atol=0.01)
    # The synthetic Fz has a spike exactly at each cue.
    assert np.all(np.argmax(data.x[:, ELECTRODES.index("FZ")], axis=-1) == 250)
    # C3 carries, after the cue, a tone whose frequency names the trial's class: each window has its own label.
    imagery = data.x[:, ELECTRODES.index("C3"), 250:]
    freqs = np.fft.rfftfreq(imagery.shape[-1], 1 / 250)
    peak = freqs[np.argmax(np.abs(np.fft.rfft(imagery, axis=-1))[:, 1:], axis=-1) + 1]
    np.testing.assert_allclose(peak, [bci_gen.CLASS_HZ[int(c) + 1] for c in data.y])


def test_bciiv2a_split_is_the_published_one_and_leak_free(bci):
    _, _, data = bci
    splits = bciiv2a.make_splits(data)
    assert len(splits) == 1
    assert (splits[0].train, splits[0].val, splits[0].test) == \
        (("A01", "A02", "A03", "A04", "A05"), ("A06", "A07"), ("A08", "A09"))
    parts, subjects = _assert_leak_free(data, splits[0])
    assert subjects == [{"A01"}, {"A06"}, {"A08"}]
    assert sum(len(p) for p in parts) == len(data.y)


def test_bciiv2a_clean_variant_drops_rejected_trials(bci):
    root, truth, data = bci
    clean = bciiv2a.load(root, 250.0, "clean")
    assert len(clean.y) == len(data.y) - 3  # trial 2 of every T session is marked 1023
    rows = clean.recordings == "A06T"
    np.testing.assert_array_equal(clean.y[rows], np.delete(truth["A06T"].labels - 1, 1))
    assert data.preprocessing["rejected_trials"] == "kept" and clean.preprocessing["rejected_trials"] == "dropped"


def test_bciiv2a_resamples_to_the_codec_rate(tmp_path):
    bci_gen.make_dataset(tmp_path, subjects=(1,), trials=4)
    data = bciiv2a.load(tmp_path, 125.0)
    assert data.x.shape == (8, 22, 625) and data.sample_rate == 125.0
    assert np.all(np.abs(np.argmax(data.x[:, 0], axis=-1) - 125) <= 1)


def _one_session(tmp_path, **kwargs):
    labels = np.array([1, 2, 3, 4, 2])
    bci_gen.write_session(tmp_path / "A01T.gdf", labels, **kwargs)
    bci_gen.write_labels(tmp_path / "A01T.mat", labels)
    return labels


def test_bciiv2a_missing_label_file_is_named(tmp_path):
    _one_session(tmp_path)
    (tmp_path / "A01T.mat").unlink()
    with pytest.raises(DatasetError, match=r"A01T\.mat.*missing label file"):
        bciiv2a.load(tmp_path, 250.0)


def test_bciiv2a_label_file_in_true_labels_folder_is_found(tmp_path):
    labels = _one_session(tmp_path)
    (tmp_path / "true_labels").mkdir()
    shutil.move(tmp_path / "A01T.mat", tmp_path / "true_labels" / "A01T.mat")
    windows, y, rejected = bciiv2a.session_trials(tmp_path / "A01T.gdf", 250.0)
    np.testing.assert_array_equal(y, labels - 1)
    assert windows.shape == (5, 22, 1250) and not rejected.any()


def test_bciiv2a_recording_without_all_eeg_channels_is_named(tmp_path):
    channels = [c for c in bci_gen.CHANNELS if c not in ("EEG-C3", "EEG-Pz")]
    _one_session(tmp_path, channels=channels)
    with pytest.raises(RecordingError, match=r"A01T\.gdf: missing EEG channel\(s\) EEG-C3, EEG-Pz"):
        bciiv2a.session_trials(tmp_path / "A01T.gdf", 250.0)
    # The only session is skipped, so the dataset has nothing: a dataset-level error that says why.
    with pytest.raises(DatasetError, match=r"none of the 1 BCI IV 2a sessions found could be used \(1 unusable file\(s\) skipped\)"):
        bciiv2a.load(tmp_path, 250.0)


def test_bciiv2a_cues_disagreeing_with_the_label_file_are_an_error(tmp_path):
    _one_session(tmp_path, cue_labels=[1, 2, 4, 4, 2])  # trial 3's cue says tongue, its label feet
    with pytest.raises(DatasetError, match=r"A01T\.mat: label of trial 3 is 3 \(feet\) but the cue of A01T\.gdf .* is 772"):
        bciiv2a.load(tmp_path, 250.0)


def test_bciiv2a_label_file_of_the_wrong_length_is_an_error(tmp_path):
    _one_session(tmp_path)
    bci_gen.write_labels(tmp_path / "A01T.mat", [1, 2, 3])
    with pytest.raises(DatasetError, match=r"A01T\.mat: 3 labels but A01T\.gdf has 5 cues"):
        bciiv2a.load(tmp_path, 250.0)


def test_bciiv2a_empty_folder_says_what_layout_it_expects(tmp_path):
    with pytest.raises(DatasetError, match=r"no BCI IV 2a sessions found; expected A01T\.gdf"):
        bciiv2a.load(tmp_path, 250.0)


# --- Kaggle ERN --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ern(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle_ern")
    truth = ern_gen.make_dataset(root, train_subjects=(2, 6, 7), test_subjects=(1, 3), sessions=(1, 2), feedbacks=4)
    return root, truth, kaggle_ern.load(root, 250.0, "no_ica")


def _tiny_ern(root):
    return ern_gen.make_dataset(root, train_subjects=(2, 6), test_subjects=(1,), sessions=(1,), feedbacks=3)


def test_kaggle_ern_synthetic_files_have_the_published_columns(ern):
    root, _, _ = ern
    header = (root / "train" / "Data_S02_Sess01.csv").read_text().splitlines()[0].split(",")
    assert len(header) == 59 and header[0] == "Time" and header[-2:] == ["EOG", "FeedBackEvent"]
    assert "P08" in header and (root / "true_labels.csv").read_text().splitlines()[0] in ("0", "1")


def test_kaggle_ern_windows_channels_and_labels(ern):
    _, truth, data = ern
    assert data.x.shape == (40, 56, 302) and data.x.dtype == np.float32
    assert len(data.channel_names) == 56 and data.channel_names[:3] == ("FP1", "FP2", "AF7")
    assert "PO8" in data.channel_names and "P08" not in data.channel_names
    assert data.class_names == ("bad_feedback", "good_feedback")
    for name, session in truth.items():
        rows = data.recordings == name
        np.testing.assert_array_equal(data.y[rows], session.labels)
        assert set(data.subjects[rows]) == {name[:3]}
        assert set(data.partitions[rows]) == {"test" if name[:3] in ("S01", "S03") else "train"}


def test_kaggle_ern_epochs_are_aligned_resampled_and_zscored(ern):
    _, _, data = ern
    assert kaggle_ern.resample_factors(250.0) == (5, 4)
    assert kaggle_ern.epoch_samples(250.0) == 302 and kaggle_ern.epoch_samples(200.0) == 241
    np.testing.assert_allclose(data.x.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(data.x.std(-1, ddof=1), 1, atol=1e-4)
    # The synthetic Cz spikes at each feedback onset: 0.2 s into the epoch, sample 50 at 250 Hz.
    assert np.all(np.argmax(data.x[:, data.channel_names.index("CZ")], axis=-1) == 50)


def test_kaggle_ern_folds_hold_out_each_training_subject_once(ern):
    _, _, data = ern
    splits = kaggle_ern.make_splits(data, seed=0)
    assert len(splits) == 3  # 4 folds asked, 3 training subjects here
    for split in splits:
        _, subjects = _assert_leak_free(data, split)
        assert subjects[2] == {"S01", "S03"}
    assert sorted(s for split in splits for s in split.val) == ["S02", "S06", "S07"]


@pytest.mark.parametrize("layout", ["plain_with_submission", "plain_in_file_order", "label_header", "id_columns"])
def test_kaggle_ern_test_label_layouts_give_the_same_labels(tmp_path, layout):
    truth = _tiny_ern(tmp_path)
    ids = ern_gen.feedback_ids(truth["S01_Sess01"])
    expected = dict(zip(ids, truth["S01_Sess01"].labels.tolist()))
    values = [str(v) for v in truth["S01_Sess01"].labels]
    if layout != "plain_with_submission":
        (tmp_path / "SampleSubmission.csv").unlink()
    if layout == "label_header":
        (tmp_path / "true_labels.csv").write_text("label\n" + "\n".join(values) + "\n")
    if layout == "id_columns":
        rows = "\n".join(f"{i},{v}" for i, v in zip(ids, values))
        (tmp_path / "true_labels.csv").write_text("IdFeedBack,Prediction\n" + rows)
    labels, source = kaggle_ern.read_test_labels(tmp_path, ids)
    assert labels == expected and source.name == "true_labels.csv"


def test_kaggle_ern_missing_train_labels_are_named(tmp_path):
    _tiny_ern(tmp_path)
    (tmp_path / "TrainLabels.csv").unlink()
    with pytest.raises(DatasetError, match=r"TrainLabels\.csv: missing training labels"):
        kaggle_ern.load(tmp_path, 250.0, "no_ica")


def test_kaggle_ern_missing_true_labels_are_named(tmp_path):
    _tiny_ern(tmp_path)
    (tmp_path / "true_labels.csv").unlink()
    with pytest.raises(DatasetError, match=r"true_labels\.csv: missing test labels"):
        kaggle_ern.load(tmp_path, 250.0, "no_ica")


def test_kaggle_ern_true_labels_of_the_wrong_length_are_an_error(tmp_path):
    _tiny_ern(tmp_path)
    (tmp_path / "true_labels.csv").write_text("1\n0\n")
    with pytest.raises(DatasetError, match=r"true_labels\.csv: 2 labels but \S*SampleSubmission\.csv lists 3"):
        kaggle_ern.load(tmp_path, 250.0, "no_ica")


def test_kaggle_ern_train_labels_disagreeing_with_the_feedbacks_are_an_error(tmp_path):
    _tiny_ern(tmp_path)
    lines = (tmp_path / "TrainLabels.csv").read_text().splitlines()
    (tmp_path / "TrainLabels.csv").write_text("\n".join(line for line in lines if "S06_Sess01_FB003" not in line))
    with pytest.raises(DatasetError, match=r"TrainLabels\.csv: 2 labels for S06_Sess01 but Data_S06_Sess01\.csv has 3"):
        kaggle_ern.load(tmp_path, 250.0, "no_ica")


def test_kaggle_ern_session_without_a_channel_is_named(tmp_path):
    _tiny_ern(tmp_path)
    columns = [c for c in ern_gen.COLUMNS if c not in ("Cz", "EOG")]
    ern_gen.write_session(tmp_path / "train" / "Data_S02_Sess01.csv", [1, 0, 1], columns=columns)
    data = kaggle_ern.load(tmp_path, 250.0, "no_ica")  # skipped, named; the other sessions are read
    [skipped] = data.preprocessing["skipped_files"]
    assert skipped["path"].endswith("Data_S02_Sess01.csv") and "missing column(s) Cz, EOG" in skipped["reason"]
    assert "S02_Sess01" not in set(data.recordings)


def test_kaggle_ern_damaged_session_is_skipped_by_name_and_the_rest_is_read(tmp_path):
    _tiny_ern(tmp_path / "good")
    good = kaggle_ern.load(tmp_path / "good", 250.0, "no_ica")
    root = shutil.copytree(tmp_path / "good", tmp_path / "damaged")
    whole = (root / "train" / "Data_S02_Sess01.csv").read_bytes()
    bad = root / "train" / "Data_S09_Sess01.csv"  # a session named as the layout expects, cut mid-row
    bad.write_bytes(whole[: len(whole) // 3] + b"\x00garbage,\xff\n")
    data = kaggle_ern.load(root, 250.0, "no_ica")
    [skipped] = data.preprocessing["skipped_files"]
    assert skipped["path"] == str(bad) and skipped["reason"]
    assert "skipped_files" not in good.preprocessing
    np.testing.assert_array_equal(data.x, good.x)
    np.testing.assert_array_equal(data.y, good.y)
    np.testing.assert_array_equal(data.recordings, good.recordings)
    np.testing.assert_array_equal(data.partitions, good.partitions)


def test_kaggle_ern_empty_folder_says_what_layout_it_expects(tmp_path):
    with pytest.raises(DatasetError, match=r"train/Data_S\?\?_Sess\?\?\.csv"):
        kaggle_ern.load(tmp_path, 250.0)


@pytest.mark.slow
def test_kaggle_ern_ica_removes_the_blinks_from_frontal_channels(tmp_path, monkeypatch):
    # FastICA does not converge on the synthetic noise; 50 iterations find the blink component as well as 1000.
    monkeypatch.setattr(kaggle_ern, "ICA_MAX_ITER", 50)
    path = tmp_path / "Data_S02_Sess01.csv"
    ern_gen.write_session(path, [1, 0, 1, 1], seed=3)
    eeg, eog, _ = kaggle_ern.read_session(path)
    fp1 = kaggle_ern.EEG_COLUMNS.index("Fp1")
    without = kaggle_ern.clean_session(eeg, eog, use_ica=False)
    with_ica = kaggle_ern.clean_session(eeg, eog, use_ica=True)
    assert abs(np.corrcoef(without[fp1], eog)[0, 1]) > 0.8
    assert abs(np.corrcoef(with_ica[fp1], eog)[0, 1]) < 0.2
