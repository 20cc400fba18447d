"""Task programs eegmmi, bonn and emg_gestures: windows, labels, subjects, folds and bad input.

Bundled data (CI has it): data/eegmmidb (S001-S004, run R04 only), tests/fixtures/bonn/ZS.zip
(Z001, Z002, S001, S002), tests/fixtures/myo (two all-rest recordings). Ninapro and complete Myo
recordings are written here in the published layouts; ../shared/data checks skip without it.
"""

import io
import logging
import os
import zipfile
from pathlib import Path

import mne
import numpy as np
import pytest
import scipy.io

from biocodec_jax.evaluation.dataset import DatasetError
from biocodec_jax.evaluation.splits import split_indices
from data_pipelines.errors import RecordingError
from experiments.tasks import bonn, eegmmi, emg_gestures

REPO = Path(__file__).resolve().parents[1]
BUNDLED_EEGMMI = REPO / "data" / "eegmmidb"
FIXTURES = Path(__file__).parent / "fixtures"
SHARED = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")


def link_subjects(source: Path, target: Path, subjects) -> Path:
    """``target`` with each subject folder of ``source`` rebuilt from links to its files."""
    for s in subjects:
        (target / s).mkdir(parents=True)
        for f in (source / s).iterdir():
            os.symlink(f, target / s / f.name)
    return target


def check_folds(data, splits, n_folds):
    """Every split is leak-free and covers every window; each subject is tested exactly once."""
    assert len(splits) == n_folds
    tested = []
    for split in splits:
        train, val, test = split_indices(data, split)  # raises on a subject in two parts
        parts = [set(data.subjects[i]) for i in (train, val, test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(train) + len(val) + len(test) == len(data.y)
        tested += sorted(parts[2])
    assert sorted(tested) == sorted(set(data.subjects))


# ------------------------------------------------------------------------------------------ eegmmi

class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def motor_imagery():
    """The bundled recordings' motor-imagery windows at 250 Hz, and the warnings logged reading them."""
    handler = ListHandler()
    logging.getLogger(eegmmi.__name__).addHandler(handler)
    try:
        data = eegmmi.load(BUNDLED_EEGMMI, 250)
    finally:
        logging.getLogger(eegmmi.__name__).removeHandler(handler)
    return data, handler.messages


def test_eegmmi_motor_imagery_windows_labels_and_channels(motor_imagery):
    data, _ = motor_imagery
    assert data.x.shape == (60, 64, 1000)  # 4 subjects x 15 T1/T2 events, 4 s at 250 Hz
    assert data.class_names == ("left fist", "right fist") and data.sample_rate == 250
    assert data.channel_names == eegmmi.CHANNEL_NAMES and len(set(data.channel_names)) == 64
    assert data.channel_names[:3] == ("FC5", "FC3", "FC1") and data.channel_names[-1] == "IZ"
    assert sorted(set(data.subjects)) == ["S001", "S002", "S003", "S004"]
    expected_y, expected_recordings = [], []
    for subject in ("S001", "S002", "S003", "S004"):
        path = BUNDLED_EEGMMI / subject / f"{subject}R04.edf"
        raw = mne.io.read_raw_edf(path, verbose=False)
        assert eegmmi.CHANNEL_NAMES == tuple(c.strip(".").upper() for c in raw.ch_names)  # the dataset's order
        expected_y += [{"T1": 0, "T2": 1}[d] for d in raw.annotations.description if d != "T0"]
        expected_recordings += [f"{subject}/{subject}R04"] * 15
    np.testing.assert_array_equal(data.y, expected_y)
    np.testing.assert_array_equal(data.recordings, expected_recordings)
    # Each window is z-scored on its own first 0.5 s (125 samples).
    baseline = data.x[:, :, :125].astype(np.float64)
    np.testing.assert_allclose(baseline.mean(axis=2), 0, atol=1e-4)
    np.testing.assert_allclose(baseline.std(axis=2), 1, atol=1e-3)


def test_eegmmi_epoch_matches_an_independent_computation(motor_imagery):
    data, _ = motor_imagery
    raw = mne.io.read_raw_edf(BUNDLED_EEGMMI / "S002" / "S002R04.edf", preload=True, verbose=False)
    raw.filter(0.5, 40.0, verbose=False).resample(250, verbose=False)
    onsets = [o for o, d in zip(raw.annotations.onset, raw.annotations.description) if d != "T0"]
    k = 3
    start = int(round(onsets[k] * 250))
    epoch = raw.get_data()[:, start:start + 1000]
    expected = (epoch - epoch[:, :125].mean(1, keepdims=True)) / epoch[:, :125].std(1, keepdims=True)
    np.testing.assert_allclose(data.x[np.flatnonzero(data.subjects == "S002")[k]], expected, rtol=1e-4, atol=1e-4)


def test_eegmmi_missing_runs_are_logged_and_skipped(motor_imagery):
    _, messages = motor_imagery
    for subject in ("S001", "S002", "S003", "S004"):
        for run in ("R08", "R12"):
            assert any(f"{subject}/{subject}{run}.edf is missing" in m for m in messages), (subject, run)


def test_eegmmi_runs_and_the_real_movement_flag():
    assert eegmmi.runs_of("motor_imagery") == (4, 8, 12)
    assert eegmmi.runs_of(None, include_real_movement=True) == (3, 4, 7, 8, 11, 12)
    assert eegmmi.runs_of("eyes") == (1, 2)
    with pytest.raises(ValueError, match="unknown variant 'sleep'"):
        eegmmi.runs_of("sleep")


def test_eegmmi_subject_folds(motor_imagery):
    data, _ = motor_imagery
    splits = eegmmi.make_splits(data, "motor_imagery", seed=0)
    check_folds(data, splits, 4)  # 5 folds asked, 4 subjects
    assert [s.test for s in eegmmi.make_splits(data, seed=0)] == [s.test for s in splits]  # seeded
    two = data.subset(np.isin(data.subjects, ["S001", "S002"]))
    with pytest.raises(DatasetError, match="at least 3 subjects"):
        eegmmi.make_splits(two)


def test_eegmmi_eyes_without_baseline_runs_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match=r"R01, R02.*S001/S001R01\.edf"):
        eegmmi.load(BUNDLED_EEGMMI, 250, "eyes")
    with pytest.raises(DatasetError, match="no SxxxRyy.edf recordings"):
        eegmmi.load(tmp_path, 250)


def test_eegmmi_missing_labels_and_channels_name_the_file(tmp_path, monkeypatch):
    root = link_subjects(BUNDLED_EEGMMI, tmp_path / "eegmmidb", ["S001"])
    read = eegmmi.read_raw

    monkeypatch.setattr(eegmmi, "read_raw", lambda p: read(p).set_annotations(None))
    with pytest.raises(DatasetError, match=r"1 unusable file.*S001R04\.edf: no T1/T2"):  # the only run: skipped
        eegmmi.load(root, 250)

    monkeypatch.setattr(eegmmi, "read_raw", lambda p: read(p).drop_channels(["Iz.."]))
    with pytest.raises(DatasetError, match=r"S001R04\.edf: has 63 EEG channels .* all 64 .*missing IZ"):
        eegmmi.load(root, 250)


def test_eegmmi_damaged_recording_is_skipped_by_name_and_the_rest_is_read(tmp_path, motor_imagery):
    # S001-S003 as bundled, and S005R04.edf a truncated copy of S004R04.edf, named as the layout expects.
    root = link_subjects(BUNDLED_EEGMMI, tmp_path / "eegmmidb", ["S001", "S002", "S003"])
    (root / "S005").mkdir()
    whole = (BUNDLED_EEGMMI / "S004" / "S004R04.edf").read_bytes()
    (root / "S005" / "S005R04.edf").write_bytes(whole[: len(whole) // 2])
    data = eegmmi.load(root, 250)
    [skipped] = data.preprocessing["skipped_files"]
    assert skipped["path"] == str(root / "S005" / "S005R04.edf") and skipped["reason"]
    good, _ = motor_imagery
    keep = good.subjects != "S004"
    np.testing.assert_array_equal(data.x, good.x[keep])
    np.testing.assert_array_equal(data.y, good.y[keep])
    np.testing.assert_array_equal(data.recordings, good.recordings[keep])
    assert "skipped_files" not in good.preprocessing


@needs_shared
def test_eegmmi_on_shared_data(tmp_path):
    # S001 alone (it has all 14 runs; reading all ten subjects would take ~15 s here): imagined and,
    # with the flag, executed left/right fist runs, 15 T1/T2 events each; and the two baseline runs.
    root = link_subjects(SHARED / "eegmmidb", tmp_path / "eegmmidb", ["S001"])
    data = eegmmi.load(root, 250, "motor_imagery", include_real_movement=True)
    assert data.x.shape == (6 * 15, 64, 1000) and set(data.subjects) == {"S001"}
    assert {r: int((data.recordings == r).sum()) for r in set(data.recordings)} == {
        f"S001/S001R{r:02d}": 15 for r in (3, 4, 7, 8, 11, 12)}
    eyes = eegmmi.load(root, 250, "eyes")
    assert eyes.x.shape == (24, 64, 1250) and eyes.class_names == ("eyes open", "eyes closed")
    np.testing.assert_array_equal(eyes.y, [0] * 12 + [1] * 12)  # 12 windows of each 61-s run
    np.testing.assert_array_equal(eyes.recordings, ["S001/S001R01"] * 12 + ["S001/S001R02"] * 12)


# -------------------------------------------------------------------------------------------- bonn

def bonn_copy(root: Path, letters: str = "ZONFS", per_set: int = 2) -> Path:
    """Zip files named as distributed, made of the fixture's real segments (Z00x, S00x) renamed."""
    with zipfile.ZipFile(FIXTURES / "bonn" / "ZS.zip") as z:
        texts = [z.read(n) for n in sorted(z.namelist())]
    root.mkdir(parents=True, exist_ok=True)
    for k, letter in enumerate(letters):
        with zipfile.ZipFile(root / f"{letter}.zip", "w") as z:
            for i in range(per_set):
                z.writestr(f"{letter}{i + 1:03d}.txt", texts[(k + i) % len(texts)])
    return root


def test_bonn_fixture_holds_sets_a_and_e():
    with zipfile.ZipFile(FIXTURES / "bonn" / "ZS.zip") as z:
        assert sorted(z.namelist()) == ["S001.txt", "S002.txt", "Z001.txt", "Z002.txt"]
        assert all(len(np.loadtxt(io.BytesIO(z.read(n)))) == 4097 for n in z.namelist())


@pytest.mark.parametrize("variant, counts", [("seizure", [32, 8]), ("epileptic", [16, 24])])
def test_bonn_windows_labels_and_file_scoring(tmp_path, variant, counts):
    root = bonn_copy(tmp_path / "bonn")
    data = bonn.load(root, 250, variant)
    assert data.x.shape == (40, 1, 1250)  # 10 files x 4 windows (23.6 s at 250 Hz = 5900 samples)
    np.testing.assert_array_equal(np.bincount(data.y), counts)
    assert data.channel_names == ("EEG",)
    # A file is its own subject and its windows are scored together.
    assert sorted(set(data.subjects)) == sorted(f"{c}/{c}00{i}" for c in "ZONFS" for i in (1, 2))
    np.testing.assert_array_equal(data.subjects, data.recordings)
    groups = data.score_groups()
    assert len(set(groups)) == 10 and all(len(set(groups[data.recordings == r])) == 1 for r in set(data.recordings))
    positive = {"seizure": "S", "epileptic": "NFS"}[variant]
    np.testing.assert_array_equal(data.y, [r[0] in positive for r in data.recordings])
    # Each window is z-scored on its own (a Bonn file is one class: never normalised over the file).
    x = data.x[:, 0].astype(np.float64)
    np.testing.assert_allclose(x.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(1), 1, atol=1e-4)
    assert data.preprocessing["normalisation_scope"] == "window"


def test_bonn_windows_match_the_segment(tmp_path):
    root = bonn_copy(tmp_path / "bonn", letters="ZONFS", per_set=1)
    data = bonn.load(root, 250, "seizure")
    with zipfile.ZipFile(root / "S.zip") as z:
        segment = np.loadtxt(io.BytesIO(z.read("S001.txt")))
    raw = mne.io.RawArray(segment[None], mne.create_info(1, 173.61, "eeg"), verbose=False).resample(250, verbose=False)
    windows = raw.get_data()[0][:5000].reshape(4, 1250)
    expected = (windows - windows.mean(1, keepdims=True)) / windows.std(1, keepdims=True)
    np.testing.assert_allclose(data.x[data.recordings == "S/S001"][:, 0], expected, rtol=1e-4, atol=1e-4)


def test_bonn_stratified_folds_keep_files_whole(tmp_path):
    data = bonn.load(bonn_copy(tmp_path / "bonn", per_set=4), 250, "seizure")
    splits = bonn.make_splits(data, "seizure", seed=1)
    check_folds(data, splits, 5)
    for split in splits:
        # 4 seizure files over 5 groups: no group has two; 16 others: 3-4 per group.
        tested = np.isin(data.subjects, split.test)
        assert len(set(data.subjects[tested & (data.y == 1)])) <= 1
        assert 3 <= len(set(data.subjects[tested & (data.y == 0)])) <= 4
    with pytest.raises(DatasetError, match="at least 3 segment files"):
        bonn.make_splits(data.subset(np.isin(data.subjects, ["Z/Z001", "S/S001"])))


def test_bonn_missing_sets_name_their_zip_files(tmp_path):
    with pytest.raises(DatasetError, match=r"O\.zip \(set B\), N\.zip \(set C\), F\.zip \(set D\)"):
        bonn.load(FIXTURES / "bonn", 250, "seizure")  # ZS.zip alone: sets A and E
    with pytest.raises(DatasetError, match=r"O\.zip \(set B\), N\.zip \(set C\), F\.zip \(set D\)"):
        bonn.load(FIXTURES / "bonn", 250, "epileptic")
    root = bonn_copy(tmp_path / "bonn", letters="ZONF")
    with pytest.raises(DatasetError, match=r"S\.zip \(set E\)"):
        bonn.load(root, 250)
    with zipfile.ZipFile(root / "S.zip", "w") as z:
        z.writestr("S001.txt", b"12\nnot a number\n")
    with pytest.raises(DatasetError, match=r"class\(es\) seizure .*S\.zip::S001\.txt: cannot be read"):
        bonn.load(root, 250)  # the one set E segment is skipped: no seizure class left


@needs_shared
def test_bonn_on_shared_data():
    data = bonn.load(SHARED / "bonn_epilepsy", 250, "seizure")
    assert data.x.shape == (2000, 1, 1250) and len(set(data.subjects)) == 500
    np.testing.assert_array_equal(np.bincount(data.y), [1600, 400])
    assert len(set(data.score_groups())) == 500
    check_folds(data, bonn.make_splits(data), 5)


# --------------------------------------------------------------------------------------------- myo

def write_myo(root: Path, participants=("111", "222", "333"), cycles: int = 2, amplitude: int = 40, sessions=(1,)):
    """Myo files as published: each gesture file alternates 5 s of rest (label 0) and 5 s of gesture
    (``cycles`` times); one folder ``<participant>-<session>`` per session."""
    rng = np.random.default_rng(0)
    for p in participants:
        for session in sessions:
            folder = root / f"{p}-{session}"
            folder.mkdir(parents=True)
            for g in range(8):
                labels = np.tile(np.repeat([0, g], 1000), cycles)  # 200 Hz
                scale = np.where(labels > 0, amplitude, 5)[:, None]
                emg = np.clip(np.round(rng.normal(size=(len(labels), 8)) * scale), -128, 127)
                np.savetxt(folder / f"{g}.txt", np.column_stack([emg, labels]), fmt="%d", delimiter=",")
    return root


def check_leave_one_participant_out(data, splits):
    """Each participant is tested once, on all its windows, and is then in neither train nor
    validation; every split is leak-free by its unit and uses every window."""
    assert [s.name for s in splits] == [f"{p}-test" for p in sorted(set(data.subjects))]
    for split, participant in zip(splits, sorted(set(data.subjects))):
        train, val, test = split_indices(data, split)  # raises on a unit in two parts
        np.testing.assert_array_equal(test, np.flatnonzero(data.subjects == participant))
        assert participant not in set(data.subjects[np.concatenate([train, val])])
        assert len(train) + len(val) + len(test) == len(data.y)


@pytest.fixture(scope="module")
def myo_gestures(tmp_path_factory):
    return emg_gestures.load(write_myo(tmp_path_factory.mktemp("myo") / "myo", sessions=(1, 2)), 1000, "myo")


def test_myo_gesture_windows(myo_gestures):
    data = myo_gestures
    # 3 participants x 2 sessions x 7 gesture files x 2 blocks x 4 one-s windows (5-s block, >= 0.4 s margins).
    assert data.x.shape == (336, 8, 1000)
    assert data.class_names == emg_gestures.MYO_GESTURES and data.channel_names == tuple(f"EMG{i}" for i in range(1, 9))
    np.testing.assert_array_equal(np.bincount(data.y), [48] * 7)
    assert sorted(set(data.subjects)) == ["111", "222", "333"]
    # Labels follow the file's gesture; no window of 0.txt (all rest).
    np.testing.assert_array_equal(data.y + 1, [int(r.split("/")[1]) for r in data.recordings])
    # The session is the recording's folder; the repetition its gesture block (four windows each).
    np.testing.assert_array_equal(data.sessions, [r.split("/")[0] for r in data.recordings])
    assert sorted(set(data.sessions)) == [f"{p}-{s}" for p in ("111", "222", "333") for s in (1, 2)]
    keys, counts = np.unique(np.char.add(data.recordings, data.repetitions.astype(str)), return_counts=True)
    assert sorted(set(data.repetitions)) == [1, 2] and len(keys) == 84 and set(counts) == {4}
    assert data.preprocessing["normalisation_scope"] == "participant-session"
    # Gesture bursts only: z-scored over the session (rest included), a burst's SD is well above 1.
    assert data.x.std(axis=2).min() > 1.0


def test_myo_rest_class_and_window_placement(tmp_path):
    data = emg_gestures.load(write_myo(tmp_path / "myo", participants=("111",)), 1000, "myo", include_rest=True)
    assert data.class_names[0] == "rest"
    rest, gesture = data.y == 0, data.y > 0
    assert gesture.sum() == 7 * 8 and rest.sum() == 7 * 8 + 19  # 0.txt: one 20-s rest block
    # Windows stay inside their block: in a gesture file, rest windows never catch a burst and
    # gesture windows never rest.
    in_gesture_file = np.char.endswith(data.recordings.astype(str), "/0") == False  # noqa: E712
    assert data.x[rest & in_gesture_file].std(axis=2).max() < 0.6
    assert data.x[gesture].std(axis=2).min() > 1.0
    # A rest block belongs to the gesture block after it; 0.txt (20 s, no gesture) counts 10-s stretches.
    np.testing.assert_array_equal(data.repetitions[rest & in_gesture_file], np.tile(np.repeat([1, 2], 4), 7))
    assert sorted(set(data.repetitions[~in_gesture_file])) == [1, 2]


def test_myo_protocols(myo_gestures):
    # More in tests/test_task_emg_protocols.py.
    data = myo_gestures
    protocols = emg_gestures.make_splits(data, "myo", seed=0)
    assert sorted(protocols) == ["leave_one_participant_out", "within_participant"]
    assert [s.name for s in protocols["within_participant"]] == [f"{p}-test{s}" for p in ("111", "222", "333") for s in (1, 2)]
    check_leave_one_participant_out(data, protocols["leave_one_participant_out"])
    one = data.subset(data.subjects == "111")
    assert list(emg_gestures.make_splits(one)) == ["within_participant"]  # one participant: no cross-subject
    with pytest.raises(DatasetError, match="at least 2 sessions.*at least 2 participants"):
        emg_gestures.make_splits(one.subset(one.sessions == "111-1"))


def test_myo_bundled_rest_only_recordings_and_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="no gesture"):
        emg_gestures.load(FIXTURES / "myo", 1000, "myo")
    with pytest.raises(DatasetError, match="flexion, extension"):  # absent classes are named
        emg_gestures.load(FIXTURES / "myo", 1000, "myo", include_rest=True)
    root = write_myo(tmp_path / "myo", participants=("111",))
    table = np.loadtxt(root / "111-1" / "3.txt", delimiter=",")
    np.savetxt(root / "111-1" / "3.txt", table[:, :8], fmt="%d", delimiter=",")
    with pytest.raises(DatasetError, match=r"class\(es\) .*111-1/3\.txt: .*no label column"):
        emg_gestures.load(root, 1000, "myo")  # skipped, so its gesture has no window
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no recordings .*<participant>-<session>/<gesture>\.txt"):
        emg_gestures.load(tmp_path / "empty", 1000, "myo")


@needs_shared
def test_myo_on_shared_data(tmp_path):
    # The first session of each participant: six 5-s blocks per gesture file. (All nine sessions
    # and the protocols: tests/test_task_emg_protocols.py.)
    root = link_subjects(SHARED / "myo_emg", tmp_path / "myo", ["12345-1", "21547-1", "45612-1"])
    data = emg_gestures.load(root, 1000, "myo")
    assert data.x.shape[1:] == (8, 1000) and sorted(set(data.subjects)) == ["12345", "21547", "45612"]
    per_file = {r: int((data.recordings == r).sum()) for r in set(data.recordings)}
    assert len(per_file) == 21 and all(20 <= n <= 24 for n in per_file.values())  # 3-4 windows per block
    np.testing.assert_array_equal(data.y + 1, [int(r.split("/")[1]) for r in data.recordings])
    assert set(data.repetitions) == {1, 2, 3, 4, 5, 6}
    protocols = emg_gestures.make_splits(data)
    assert list(protocols) == ["leave_one_participant_out"]  # one session each: no cross-session protocol
    check_leave_one_participant_out(data, protocols["leave_one_participant_out"])


# ----------------------------------------------------------------------------------------- ninapro

def write_ninapro(path: Path, subject: int, exercise: int, n_movements: int, rate: float, channels: int,
                  first_id: int = 1, reps: int = 2, move_s: float = 1.3, rest_s: float = 0.4, frequency=True):
    """One Ninapro file: rest, then each movement ``reps`` times (``move_s`` on, ``rest_s`` off).

    Channel 0 carries the movement id during a movement, so windows can be traced to their label.
    """
    move, rest = int(move_s * rate), int(rest_s * rate)
    labels, repetition = [np.zeros(rest, int)], [np.zeros(rest, int)]
    for m in range(first_id, first_id + n_movements):
        for r in range(1, reps + 1):
            labels += [np.full(move, m), np.zeros(rest, int)]
            repetition += [np.full(move, r), np.zeros(rest, int)]
    labels, repetition = np.concatenate(labels), np.concatenate(repetition)
    rng = np.random.default_rng(subject * 10 + exercise)
    emg = (rng.normal(size=(len(labels), channels)) * 1e-5).astype(np.float32)
    emg[:, 0] += labels * 1e-4
    variables = {"emg": emg, "restimulus": labels[:, None], "rerepetition": repetition[:, None],
                 "stimulus": labels[:, None], "repetition": repetition[:, None],
                 "subject": np.array([[subject]]), "exercise": np.array([[exercise]])}
    if frequency:
        variables["frequency"] = np.array([[rate]])
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)


def write_db5(root: Path, subjects=(1, 2, 3)) -> Path:
    for s in subjects:
        write_ninapro(root / f"s{s}" / f"S{s}_E1_A1.mat", s, 1, 12, 200.0, 16)
        write_ninapro(root / f"s{s}" / f"S{s}_E2_A1.mat", s, 2, 17, 200.0, 16)  # exercise-local ids 1..17
    return root


def test_ninapro_db5_global_movements_and_windows(tmp_path):
    data = emg_gestures.load(write_db5(tmp_path / "DB5"), 1000, "ninapro")
    # 3 subjects x (12 + 17) movements x 2 repetitions x one 1-s window (1.3-s repetitions).
    assert data.x.shape == (3 * 29 * 2, 16, 1000)
    assert data.class_names == tuple(f"M{m}" for m in range(1, 30))  # E2's 1..17 became M13..M29
    np.testing.assert_array_equal(np.bincount(data.y), [6] * 29)
    assert sorted(set(data.subjects)) == ["DB5_S1", "DB5_S2", "DB5_S3"]
    assert set(data.recordings) == {f"s{s}/S{s}_E{e}_A1" for s in (1, 2, 3) for e in (1, 2)}
    for recording in set(data.recordings):
        pick = data.recordings == recording
        local = data.y[pick] - (12 if "_E2_" in recording else 0)  # the id written into channel 0
        level = data.x[pick, 0].mean(axis=1)
        assert np.corrcoef(local, level)[0, 1] > 0.999, recording
    np.testing.assert_array_equal(data.repetitions, np.tile([1, 2], 3 * 29))
    assert data.preprocessing["normalisation_scope"] == "participant-session"
    # Two repetitions: no publisher's split (it tests on 2 and 5, trains on two or more); cross-subject only.
    protocols = emg_gestures.make_splits(data, "ninapro")
    assert list(protocols) == ["leave_one_participant_out"]
    check_leave_one_participant_out(data, protocols["leave_one_participant_out"])


def test_ninapro_db2_layout_rate_and_skipped_exercise(tmp_path):
    root = tmp_path / "ninapro"
    for s in (1, 2, 3):  # DB2: 12 channels at 2 kHz, no `frequency` variable needed
        write_ninapro(root / f"DB2_s{s}" / f"S{s}_E1_A1.mat", s, 1, 17, 2000.0, 12, reps=1, move_s=1.1,
                      rest_s=0.2, frequency=False)
    write_ninapro(root / "DB2_s1" / "S1_E3_A1.mat", 1, 3, 2, 2000.0, 12, first_id=40, reps=1)  # force patterns
    data = emg_gestures.load(root, 1000, "ninapro")
    assert data.x.shape == (3 * 17, 12, 1000)
    assert data.class_names == tuple(f"M{m}" for m in range(1, 18))
    assert sorted(set(data.subjects)) == ["DB2_S1", "DB2_S2", "DB2_S3"]
    assert data.preprocessing["resample_hz"] == [[2000.0], 1000.0] and data.preprocessing["exercises"] == [1]
    level = data.x[:, 0].mean(axis=1)
    for s in ("DB2_S1", "DB2_S2", "DB2_S3"):
        assert np.all(np.diff(level[data.subjects == s]) > 0)  # windows in movement order, one per repetition
    with pytest.raises(DatasetError, match="subject DB2_S1 has repetitions \\[1\\].*at least 2 participants"):
        emg_gestures.make_splits(data.subset(data.subjects == "DB2_S1"))


def test_ninapro_exercise_local_ids_are_made_global(tmp_path):
    path = tmp_path / "S1_E2_A1.mat"
    np.testing.assert_array_equal(emg_gestures.global_movements(np.array([0, 1, 17, 0]), "DB5", 2, path), [0, 13, 29, 0])
    np.testing.assert_array_equal(emg_gestures.global_movements(np.array([0, 1, 23]), "DB2", 2, path), [0, 18, 40])
    np.testing.assert_array_equal(emg_gestures.global_movements(np.array([0, 18, 40]), "DB2", 2, path), [0, 18, 40])
    with pytest.raises(RecordingError, match=r"S1_E2_A1\.mat: movement id\(s\) \[41\] outside exercise 2"):
        emg_gestures.global_movements(np.array([0, 18, 41]), "DB2", 2, path)


def test_ninapro_bad_files_name_the_file(tmp_path):
    root = write_db5(tmp_path / "ninapro5", subjects=(1,))  # no DB<n> folder: told by the channel count
    path = root / "s1" / "S1_E2_A1.mat"
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    scipy.io.savemat(path, {k: v for k, v in mat.items() if k != "restimulus"})
    data = emg_gestures.load(root, 1000, "ninapro")  # skipped; exercise 1 is still read
    assert [(Path(f["path"]).name, f["reason"][:20]) for f in data.preprocessing["skipped_files"]] == [
        ("S1_E2_A1.mat", "no 'restimulus' vari")]
    assert data.preprocessing["exercises"] == [1]
    write_ninapro(path, 1, 2, 17, 200.0, 16)
    e1 = root / "s1" / "S1_E1_A1.mat"
    mat = {k: v for k, v in scipy.io.loadmat(e1).items() if not k.startswith("__")}
    scipy.io.savemat(e1, {**mat, "emg": mat["emg"][:, :10]})
    data = emg_gestures.load(root, 1000, "ninapro")
    assert "'emg' has 10 channels and no DB<n> folder" in data.preprocessing["skipped_files"][0]["reason"]
    assert data.preprocessing["skipped_files"][0]["path"].endswith("S1_E1_A1.mat")
    db2 = tmp_path / "DB2_s1"
    write_ninapro(db2 / "S1_E1_A1.mat", 1, 1, 17, 2000.0, 10, reps=1, move_s=0.2, rest_s=0.1)
    with pytest.raises(DatasetError, match=r"S1_E1_A1\.mat: 'emg' has 10 channels; DB2 has 12"):  # all skipped
        emg_gestures.load(db2, 1000, "ninapro")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no Ninapro \.mat files .*DB2_s1/S1_E1_A1\.mat"):
        emg_gestures.load(tmp_path / "empty", 1000, "ninapro")


def test_ninapro_absent_movement_is_named(tmp_path):
    root = write_db5(tmp_path / "DB5")
    write_ninapro(root / "s1" / "S1_E1_A1.mat", 1, 1, 11, 200.0, 16)  # movements 1..11: no subject has 12 ...
    for s in (2, 3):
        write_ninapro(root / f"s{s}" / f"S{s}_E1_A1.mat", s, 1, 11, 200.0, 16)
    with pytest.raises(DatasetError, match=r"class\(es\) M12 under"):
        emg_gestures.load(root, 1000, "ninapro")


# ------------------------------------------------------------------------- the command, end to end

def test_evaluate_command_runs_bonn_end_to_end(tmp_path, capsys, monkeypatch):
    """``biocodec-jax evaluate bonn``: reads the zips, tokenizes with a saved codec, scores the codec's
    methods, lists the PyTorch baselines as skipped when torch is absent (forced here, so the test
    is the same with and without the extra; tests/test_baselines.py trains them), writes the report;
    a dataset missing its sets exits 2 naming them."""
    import json

    from biocodec_jax import Codec
    from biocodec_jax.cli import main
    from biocodec_jax.evaluation import baselines

    monkeypatch.setattr(baselines, "baselines_available", lambda: False)

    root = bonn_copy(tmp_path / "bonn", per_set=5)  # 5 seizure files: one in each fold's test set
    codec_dir = Codec.from_preset("tiny", seed=0, init_batch=np.zeros((2, 1, 1250), np.float32)).save(tmp_path / "codec")
    out = tmp_path / "report"
    rc = main(["evaluate", "bonn", "--data", str(root), "--codec", str(codec_dir), "--seeds", "1", "--max-splits", "2",
               "--set", "classifier.epochs=1", "--set", "baseline_epochs=1", "--output", str(out),
               "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    ran = {"chance", "random_codec", "handcrafted", "linear_probe", "token_classifier"}  # controls beside the methods
    assert set(results["results"]) == {"file_folds"} and results["complete"]
    by_method = results["results"]["file_folds"]["100%"]
    assert set(by_method) == ran and set(results["skipped_methods"]) == {"eegnet", "shallow"}
    for method in ran:
        res = by_method[method]
        assert len(res["runs"]) == 2 and set(res["summary"]) == {"balanced_accuracy", "auroc", "auc_pr"}
        assert res["summary"]["auroc"]["sd"] is None  # one seed: no sd, not a zero one
        # Bonn is scored per file: 25 files of 4 windows over 5 folds, 5 test files per fold.
        assert all(r["test_units"] == 5 and r["test_windows"] == 20 for r in res["runs"])
    assert results["data"]["scoring_units"] == 25 and results["codec"] == str(codec_dir)
    table = (out / "results.md").read_text()
    assert "| BioCodec linear probe | 0." in table and "| EEGNet (braindecode) | skipped |" in table
    assert "| control: chance | 0.5000 |" in table and "BAcc gain vs random codec" in table
    assert "ShallowFBCSPNet (braindecode) skipped: torch/braindecode not installed" in table
    assert "one seed: no sd" in table and "±" not in table
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert "classifier" in (out / "config.yaml").read_text()
    capsys.readouterr()

    rc = main(["evaluate", "bonn", "--data", str(FIXTURES / "bonn"), "--codec", str(codec_dir),
               "--output", str(tmp_path / "bad"), "--no-progress"])
    assert rc == 2
    assert "O.zip (set B)" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "results.json").exists()
