"""The ``myo`` adapter on the Myo readings repository as published (issue 17, item 6).

github.com/aljazfrancic/myo-readings-dataset nests the session folders one level down
(``_readings_right_hand/<participant>-<session>/<gesture>.txt``, ``_readings_left_hand/...``) next to
its README, LICENSE, ``pics/`` and ``curated.txt``. The layout is rebuilt here in ``tmp_path`` from
the two bundled recordings (cut to 10 s to keep the tests fast): ``prepare --dataset myo`` must find
every recording at any depth, keep the hand the folders name, reject a stray ``.txt`` saying what was
expected and what was found, and declare the values as what they are (ADC counts, no physical unit).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mne.io.constants import FIFF

from biocodec_jax.cli import main as cli_main
from data_pipelines.datasets.myo import MyoDataset, parse_myo_path

FIXTURES = Path(__file__).parent / "fixtures" / "myo"
SECONDS = 10  # of each bundled recording (200 Hz): 2 five-s windows at 1 kHz

# Where the bundled recordings go in the published layout (one nested a level deeper still).
PUBLISHED = {
    "_readings_right_hand/12345-1/0.txt": "12345-1/0.txt",
    "_readings_right_hand/21547-1/0.txt": "21547-1/0.txt",
    "_readings_left_hand/21547-2/0.txt": "21547-1/0.txt",
    "old/_readings_left_hand/12345-1/0.txt": "12345-1/0.txt",  # same session name, other hand: another recording
}


def copy_head(src: Path, dst: Path, seconds: int = SECONDS) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    lines = src.read_text().splitlines()[: seconds * 200]
    dst.write_text("\n".join(lines))


def published_repo(root: Path) -> Path:
    """The repository's layout: the two reading folders, its documentation and ``curated.txt``."""
    for dst, src in PUBLISHED.items():
        copy_head(FIXTURES / src, root / dst)
    (root / "README.md").write_text("# myo-readings-dataset\n")
    (root / "README.es-ES.md").write_text("# myo-readings-dataset\n")
    (root / "LICENSE").write_text("MIT\n")
    (root / "pics").mkdir()
    (root / "pics" / "myo_white.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "curated.txt").write_text("12345-1\n21547-1\n")
    return root


def test_published_layout_is_found_at_any_depth(tmp_path):
    root = published_repo(tmp_path / "myo-readings-dataset")
    refs, skipped = MyoDataset().find(root)
    assert sorted(r.path for r in refs) == sorted(PUBLISHED)
    assert sorted(r.recording_id for r in refs) == sorted(p[: -len(".txt")] for p in PUBLISHED)
    assert {r.subject for r in refs} == {"12345", "21547"}  # the participant, whichever hand
    hands = {r.path: parse_myo_path(root, root / r.path).hand for r in refs}
    assert hands == {p: ("right" if "right" in p else "left") for p in PUBLISHED}
    # Documentation and pictures are passed over; curated.txt is a .txt that is not a recording.
    assert [s.path for s in skipped] == ["curated.txt"]
    reason = skipped[0].reason
    assert "expected <participant>-<session>/<gesture>.txt (e.g. 12345-1/0.txt) under the input" in reason
    assert "found curated.txt" in reason


def test_prepare_cli_on_published_layout_finds_all_recordings(tmp_path):
    root = published_repo(tmp_path / "myo-readings-dataset")
    out = tmp_path / "out"
    args = ["prepare", "--input", str(root), "--output", str(out), "--preset", "emg", "--dataset", "myo"]
    assert cli_main(args + ["--workers", "1", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["path"] for r in manifest["recordings"]) == sorted(PUBLISHED)
    assert all(r["windows"] == (SECONDS * 1000 // 5000) * 8 for r in manifest["recordings"])
    assert {r["subject"] for r in manifest["recordings"]} == {"12345", "21547"}
    assert [r["path"] for r in manifest["rejected"]] == ["curated.txt"]


def test_input_may_be_a_reading_folder_or_the_flat_layout(tmp_path):
    root = published_repo(tmp_path / "repo")
    # The hand folder itself: the hand comes from the input folder's name.
    refs, skipped = MyoDataset().find(root / "_readings_right_hand")
    assert [r.path for r in refs] == ["12345-1/0.txt", "21547-1/0.txt"] and skipped == []
    assert {parse_myo_path(root / "_readings_right_hand", root / "_readings_right_hand" / r.path).hand for r in refs} == {"right"}
    # The bundled flat layout (and ../shared/data/myo_emg): as before, no hand named.
    refs, skipped = MyoDataset().find(FIXTURES)
    assert [r.recording_id for r in refs] == ["12345-1/0", "21547-1/0"] and skipped == []
    assert parse_myo_path(FIXTURES, FIXTURES / refs[0].path).hand is None


@pytest.mark.parametrize(
    "stray, why",
    [
        ("0.txt", "no <participant>-<session> folder above it"),
        ("_readings_right_hand/0.txt", "its folder '_readings_right_hand' is not <participant>-<session>"),
        ("_readings_right_hand/12345/0.txt", "folder '12345' is not <participant>-<session>"),
        ("_readings_right_hand/12345-1/notes.txt", "'notes.txt' is not <gesture>.txt"),
        ("_readings_right_hand/12345-1/0.csv", "not a .txt file"),
    ],
)
def test_stray_file_gets_a_clear_reason(tmp_path, stray, why):
    root = tmp_path / "repo"
    copy_head(FIXTURES / "12345-1" / "0.txt", root / "_readings_right_hand" / "12345-1" / "1.txt", 1)
    (root / stray).parent.mkdir(parents=True, exist_ok=True)
    (root / stray).write_text("1,2,3,4,5,6,7,8,0\n")
    refs, skipped = MyoDataset().find(root)
    assert [r.path for r in refs] == ["_readings_right_hand/12345-1/1.txt"]
    assert [s.path for s in skipped] == [stray]
    reason = skipped[0].reason
    expected = "expected <participant>-<session>/<gesture>.txt (e.g. 12345-1/0.txt) under the input; found "
    assert reason.startswith(f"not a Myo recording: {expected}")
    assert f"found {stray}" in reason and why in reason, reason


def test_values_are_declared_as_adc_counts_without_unit(tmp_path):
    root = published_repo(tmp_path / "repo")
    (ref,) = [r for r in MyoDataset().find(root)[0] if r.path == "_readings_right_hand/12345-1/0.txt"]
    raw = MyoDataset().read(root, ref)
    # Not volts: MNE's "no unit" (FIFF_UNIT_NONE), the counts as recorded.
    assert {ch["unit"] for ch in raw.info["chs"]} == {FIFF.FIFF_UNIT_NONE}
    assert {ch["unit_mul"] for ch in raw.info["chs"]} == {FIFF.FIFF_UNITM_NONE}
    table = np.loadtxt(root / ref.path, delimiter=",")
    np.testing.assert_array_equal(raw.get_data(), table[:, :8].T)
    assert raw.get_data().min() >= -128 and raw.get_data().max() <= 127
    assert raw.get_channel_types() == ["emg"] * 8  # still EMG for the emg preset
    assert "right" in raw.info["description"] and "ADC counts" in raw.info["description"]
    assert raw.info["subject_info"]["his_id"] == "12345"


def test_emg_gestures_task_reads_the_published_layout(tmp_path):
    from experiments.tasks import emg_gestures

    root = tmp_path / "repo"
    rng = np.random.default_rng(0)
    for p, hand in (("111", "right"), ("222", "left")):
        folder = root / f"_readings_{hand}_hand" / f"{p}-1"
        folder.mkdir(parents=True)
        for g in range(8):
            labels = np.repeat([0, g], 1000)  # 5 s rest, 5 s gesture at 200 Hz
            emg = np.clip(np.round(rng.normal(size=(len(labels), 8)) * np.where(labels > 0, 40, 5)[:, None]), -128, 127)
            np.savetxt(folder / f"{g}.txt", np.column_stack([emg, labels]), fmt="%d", delimiter=",")
    (root / "README.md").write_text("readme\n")
    data = emg_gestures.load(root, 1000, "myo")
    assert sorted(set(data.subjects)) == ["111", "222"]
    assert len(set(data.recordings)) == 14  # 2 participants x 7 gesture files (0.txt is all rest)
    np.testing.assert_array_equal(data.y + 1, [int(r.rsplit("/", 1)[1]) for r in data.recordings])
