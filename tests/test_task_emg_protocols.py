"""emg_gestures: normalisation per participant-session (never per file) and the two protocols,
within_participant (Myo: cross-session; Ninapro: the publisher's repetition split) and
leave_one_participant_out (cross-subject), on Myo and Ninapro files written in the published layouts.
The ../shared/data check (the handcrafted control reaches 0.80 within participant) skips without it.
"""

from pathlib import Path

import numpy as np
import pytest

from biocodec_jax.evaluation.splits import split_indices
from experiments.tasks import emg_gestures
from tests.test_tasks_eegmmi_bonn_emg import write_myo, write_ninapro

SHARED_MYO = Path(__file__).resolve().parents[2] / "shared" / "data" / "myo_emg"
needs_shared = pytest.mark.skipif(not SHARED_MYO.is_dir(), reason="../shared/data/myo_emg not present")


def level(x: np.ndarray) -> np.ndarray:
    """Per channel: the mean over windows ``x [N, C, T]`` of their SD (a z-score with another scale scales it)."""
    return x.astype(np.float64).std(axis=-1).mean(axis=0)


# --------------------------------------------------------------------------------- normalisation

def test_pooled_moments_are_those_of_all_samples():
    rng = np.random.default_rng(1)
    parts = [rng.normal(loc=i, scale=i + 1, size=(3, n)) for i, n in enumerate((50, 7, 300))]
    pooled = None
    for p in parts:
        pooled = emg_gestures.pool_moments(pooled, emg_gestures.channel_moments(p))
    n, mean, m2 = pooled
    whole = np.concatenate(parts, axis=1)
    assert n == whole.shape[1]
    np.testing.assert_allclose(mean, whole.mean(axis=1))
    np.testing.assert_allclose(np.sqrt(m2 / n), whole.std(axis=1))


def test_myo_scaling_one_gesture_file_changes_its_windows_against_the_session(tmp_path):
    """Per-file z-scoring would give a file's windows the same level whatever its gain; per session it must not."""
    root = write_myo(tmp_path / "myo", participants=("111",))
    before = emg_gestures.load(root, 1000, "myo")
    path = root / "111-1" / "3.txt"
    table = np.loadtxt(path, delimiter=",")
    table[table[:, 8] > 0, :8] *= 3  # the gesture of file 3 three times as strong (rest unchanged)
    np.savetxt(path, table, fmt="%d", delimiter=",")
    after = emg_gestures.load(root, 1000, "myo")

    def ratio(data):
        return level(data.x[data.recordings == "111-1/3"]) / level(data.x[data.recordings == "111-1/4"])

    assert np.all((0.8 < ratio(before)) & (ratio(before) < 1.25))  # same amplitude written
    np.testing.assert_allclose(ratio(after) / ratio(before), 3, rtol=0.05)
    # Every file of the session shares one scale per channel: the unchanged files all shrink by it.
    other = [f"111-1/{g}" for g in (1, 2, 4, 5, 6, 7)]
    shrink = np.array([level(after.x[after.recordings == r]) / level(before.x[before.recordings == r]) for r in other])
    np.testing.assert_allclose(shrink, np.broadcast_to(shrink[0], shrink.shape), rtol=1e-4)
    assert np.all(shrink < 0.8)


def test_myo_channel_flat_over_a_session_skips_its_files(tmp_path):
    root = write_myo(tmp_path / "myo", participants=("111",), sessions=(1, 2))
    for g in range(8):  # EMG3 silent in every file of 111-2; in 111-1 only in 5.txt, which is fine
        for folder in ("111-2",) + (("111-1",) if g == 5 else ()):
            path = root / folder / f"{g}.txt"
            table = np.loadtxt(path, delimiter=",")
            table[:, 2] = 0
            np.savetxt(path, table, fmt="%d", delimiter=",")
    data = emg_gestures.load(root, 1000, "myo")
    assert set(data.sessions) == {"111-1"} and len(set(data.recordings)) == 7
    skipped = data.preprocessing["skipped_files"]
    assert sorted(Path(f["path"]).name for f in skipped) == [f"{g}.txt" for g in range(8)]
    assert all(Path(f["path"]).parent.name == "111-2" for f in skipped)
    assert "channel 'EMG3': flat over the whole session 111-2 (its 8 file(s): 0.txt, 1.txt" in skipped[0]["reason"]


# -------------------------------------------------------------------------------------- protocols

@pytest.fixture(scope="module")
def myo_sessions(tmp_path_factory):
    """2 participants x 3 sessions, 3 gesture repetitions a file."""
    root = write_myo(tmp_path_factory.mktemp("myo") / "myo", participants=("111", "222"), cycles=3, sessions=(1, 2, 3))
    return emg_gestures.load(root, 1000, "myo")


def test_myo_within_participant_is_cross_session(myo_sessions):
    data = myo_sessions
    splits = emg_gestures.make_splits(data, "myo")["within_participant"]
    assert [s.name for s in splits] == [f"{p}-test{k}" for p in ("111", "222") for k in (1, 2, 3)]
    assert {s.unit for s in splits} == {"session_repetitions"}
    for split in splits:
        train, val, test = split_indices(data, split)  # raises on a unit in two parts
        test_session = split.name.replace("-test", "-")
        participant = test_session.split("-")[0]
        # The test set is every window of the held-out session, and only those.
        np.testing.assert_array_equal(test, np.flatnonzero(data.sessions == test_session))
        rest = np.concatenate([train, val])
        assert test_session not in set(data.sessions[rest])
        assert set(data.subjects[rest]) == {participant}
        # The participant's other sessions train, except their last gesture repetition, which validates.
        others = np.flatnonzero((data.subjects == participant) & (data.sessions != test_session))
        np.testing.assert_array_equal(np.sort(rest), others)
        np.testing.assert_array_equal(np.unique(data.repetitions[val]), [3])
        np.testing.assert_array_equal(np.unique(data.repetitions[train]), [1, 2])
        assert len(set(data.sessions[val])) == 2


def test_myo_leave_one_participant_out_validates_on_the_last_repetition(myo_sessions):
    data = myo_sessions
    splits = emg_gestures.make_splits(data, "myo")["leave_one_participant_out"]
    assert [s.name for s in splits] == ["111-test", "222-test"] and {s.unit for s in splits} == {"subject_repetitions"}
    for split, (tested, trained) in zip(splits, (("111", "222"), ("222", "111"))):
        train, val, test = split_indices(data, split)
        np.testing.assert_array_equal(test, np.flatnonzero(data.subjects == tested))
        assert set(data.subjects[train]) == set(data.subjects[val]) == {trained}
        assert split.val == (f"{trained}/rep3",)
        np.testing.assert_array_equal(np.unique(data.repetitions[val]), [3])
        assert len(set(data.sessions[val])) == 3  # the last repetition of every session
        assert len(train) + len(val) + len(test) == len(data.y)


@pytest.mark.parametrize("reps, train, val, test", [(6, [1, 3, 4], [6], [2, 5]), (10, [1, 3, 4, 6, 8, 9], [10], [2, 5, 7])])
def test_ninapro_publisher_repetitions(tmp_path, reps, train, val, test):
    """DB2/DB3/DB5 record 6 repetitions (2, 5 test; 1, 3, 4, 6 train), DB1 10 (2, 5, 7 test): the
    last training repetition validates, so the test set is exactly the publisher's."""
    root = tmp_path / "DB5"
    for s in (1, 2):
        write_ninapro(root / f"s{s}" / f"S{s}_E1_A1.mat", s, 1, 12, 200.0, 16, reps=reps, move_s=1.05, rest_s=0.2)
    data = emg_gestures.load(root, 1000, "ninapro")
    assert data.x.shape[0] == 2 * 12 * reps
    np.testing.assert_array_equal(np.unique(data.repetitions), np.arange(1, reps + 1))
    protocols = emg_gestures.make_splits(data, "ninapro")
    within = protocols["within_participant"]
    assert [s.name for s in within] == ["DB5_S1", "DB5_S2"] and {s.unit for s in within} == {"subject_repetitions"}
    for split in within:
        parts = split_indices(data, split)
        mine = data.subjects == split.name
        for index, expected in zip(parts, (train, val, test)):
            assert set(data.subjects[index]) == {split.name}
            np.testing.assert_array_equal(np.unique(data.repetitions[index]), expected)
        # Test: every window of repetitions 2, 5 (7) of the subject, and no other.
        np.testing.assert_array_equal(parts[2], np.flatnonzero(mine & np.isin(data.repetitions, test)))
    for split, trained in zip(protocols["leave_one_participant_out"], ("DB5_S2", "DB5_S1")):
        tr, va, te = split_indices(data, split)
        assert set(data.subjects[np.concatenate([tr, va])]) == {trained} and split.val == (f"{trained}/rep{val[0]}",)
        np.testing.assert_array_equal(te, np.flatnonzero(data.subjects != trained))
        assert sorted(set(data.repetitions[tr])) == sorted(set(range(1, reps + 1)) - set(val))


def test_ninapro_rest_takes_the_repetition_before_it():
    moving = [False, True, False, True, False]
    assert emg_gestures.rest_repetitions([0, 1, 0, 2, 0], moving, after=False) == [1, 1, 1, 2, 2]
    assert emg_gestures.rest_repetitions([0, 1, 0, 2, 0], moving, after=True) == [1, 1, 2, 2, 2]


# ----------------------------------------------------------------------------------- shared data

def handcrafted(x: np.ndarray) -> np.ndarray:
    """Per channel: log RMS, mean absolute value, waveform length (``x`` ``[N, C, T]``)."""
    x = x.astype(np.float64)
    return np.concatenate([np.log(np.sqrt(np.mean(x ** 2, axis=-1)) + 1e-8), np.abs(x).mean(axis=-1),
                           np.abs(np.diff(x, axis=-1)).sum(axis=-1)], axis=1)


@needs_shared
def test_myo_within_participant_handcrafted_features_reach_080():
    """The issue's check: with per-session normalisation, RMS/MAV/waveform-length features and a
    balanced logistic regression reach >= 0.80 balanced accuracy across sessions (0.55 per file)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = emg_gestures.load(SHARED_MYO, 1000, "myo")
    assert len(set(data.sessions)) == 9
    protocols = emg_gestures.make_splits(data, "myo")
    assert len(protocols["within_participant"]) == 9 and len(protocols["leave_one_participant_out"]) == 3
    features = handcrafted(data.x)
    scores = []
    for split in protocols["within_participant"]:
        train, _, test = split_indices(data, split)
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
        model.fit(features[train], data.y[train])
        scores.append(balanced_accuracy_score(data.y[test], model.predict(features[test])))
    assert np.mean(scores) >= 0.80, scores
