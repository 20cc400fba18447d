"""data_pipelines.prepare: recordings -> shards + manifest; bad input; resume; dataset adapters."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mne
import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader

from biocodec_jax.cli import main as cli_main
from data_pipelines.config import prepare_preset
from data_pipelines.datasets import TEN_TWENTY, get_dataset
from data_pipelines.loader import make_train_iterator
from data_pipelines.manifest import read_manifest
from data_pipelines.prepare import assign_splits, choose_channels, prepare
from data_pipelines.shards import _PREFIX, WindowOrigin, _header_length, decode_window

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "eegmmidb"
SHARED = REPO.parent / "shared" / "data" / "eegmmidb"
FIXTURES = Path(__file__).parent / "fixtures"
EEG = prepare_preset("eeg")


def expected_windows(path: Path, rate: float = 250.0, window: int = 1250) -> int:
    """Independent count: duration from the EDF header, resampled length, whole windows x channels."""
    raw = mne.io.read_raw_edf(path, preload=False, verbose=False)
    n = int(round(raw.n_times * rate / raw.info["sfreq"]))
    return (n // window) * len(raw.ch_names)


def read_records(path: Path) -> list[bytes]:
    """Every record of one shard, in order (the loader reads them with Grain)."""
    reader = ArrayRecordReader(str(path))
    try:
        return list(reader.read_all())
    finally:
        reader.close()


def decode_origin(record: bytes) -> WindowOrigin:
    """The :class:`WindowOrigin` of a record (its JSON header)."""
    n = _header_length(record)
    return WindowOrigin(**json.loads(record[_PREFIX.size : _PREFIX.size + n]))


def all_records(out: Path, manifest: dict) -> list[bytes]:
    return [r for split in ("train", "val") for s in manifest["shards"][split] for r in read_records(out / s["path"])]


def check_outputs(out: Path, manifest: dict, root: Path, pattern: str = "**/*.edf") -> None:
    files = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
    assert sorted(r["path"] for r in manifest["recordings"]) == files  # every file accounted for
    by_path = {r["path"]: r for r in manifest["recordings"]}
    for f in files:
        assert by_path[f]["windows"] == expected_windows(root / f), f
    assert manifest["windows"] == sum(expected_windows(root / f) for f in files)
    records = all_records(out, manifest)
    assert len(records) == manifest["windows"]
    for split, shards in manifest["shards"].items():
        assert sum(s["windows"] for s in shards) == manifest["splits"][split]["windows"]
    # Each record traces back to its recording and split; windows are normalised and clipped.
    split_of = {r["recording"]: r["split"] for r in manifest["recordings"]}
    for split in ("train", "val"):
        for s in manifest["shards"][split]:
            for rec in read_records(out / s["path"])[::97]:
                origin = decode_origin(rec)
                assert split_of[origin.recording] == split
                x = decode_window(rec)
                assert x.shape == (manifest["window_samples"],) and np.abs(x).max() <= 10.0


def test_bundled_eegmmidb_window_counts(tmp_path):
    config = replace(EEG, val_fraction=0.25)
    manifest = prepare(BUNDLED, tmp_path / "out", config, dataset="eegmmidb", workers=1, progress=False)
    check_outputs(tmp_path / "out", manifest, BUNDLED)
    assert manifest["rejected"] == []
    # By subject: S001..S004, one of them held out, never split across train/val.
    assert len(manifest["splits"]["val"]["subjects"]) == 1
    assert not set(manifest["splits"]["val"]["subjects"]) & set(manifest["splits"]["train"]["subjects"])
    assert (tmp_path / "out" / "config.yaml").exists()
    assert read_manifest(tmp_path / "out")["config"]["sample_rate"] == 250.0
    assert set(manifest["channel_stats"]) >= {"C3", "CZ", "C4"}
    # The loader reads what prepare wrote.
    it = make_train_iterator(tmp_path / "out", global_batch_size=8, seed=0, process_index=0, process_count=1)
    batch = next(it)
    assert batch.shape == (8, 1, 1250) and batch.dtype == np.float32 and np.abs(batch).max() <= 10.0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/eegmmidb not present")
def test_shared_eegmmidb_window_counts(tmp_path):
    manifest = prepare(SHARED, tmp_path / "out", EEG, dataset="eegmmidb", workers=2, progress=False)
    check_outputs(tmp_path / "out", manifest, SHARED)
    assert len(manifest["recordings"]) == len(list(SHARED.glob("**/*.edf")))


# --- bad input -------------------------------------------------------------------------------


def make_damaged_folder(folder: Path) -> dict[str, str]:
    """Good and damaged copies of bundled EDF; returns {file: what must be reported}."""
    folder.mkdir()
    src = sorted(BUNDLED.glob("*/*.edf"))
    shutil.copy(src[0], folder / "good.edf")
    data = src[1].read_bytes()
    (folder / "truncated.edf").write_bytes(data[: len(data) // 3])
    (folder / "garbage_header.edf").write_bytes(bytes(range(256)) + data[256:])
    shutil.copy(src[2], folder / "edf_named.bdf")  # wrong extension
    (folder / "notes.csv").write_text("not,a,recording\n")
    raw = mne.io.read_raw_edf(src[3], preload=True, verbose=False)
    nan = raw.copy()
    nan._data[3, 100:200] = np.nan
    nan.save(folder / "nan_channel_raw.fif", verbose=False)
    flat = raw.copy()
    flat._data[5] = 2e-6
    flat.save(folder / "flat_channel_raw.fif", verbose=False)
    raw.copy().crop(0, 2).save(folder / "two_seconds_raw.fif", verbose=False)
    raw.copy().resample(100).save(folder / "low_rate_raw.fif", verbose=False)
    return {
        "truncated.edf": "truncated",
        "garbage_header.edf": "cannot be read",
        "edf_named.bdf": "wrong extension",
        "notes.csv": "unsupported file type",
        "two_seconds_raw.fif": "too short",
        "low_rate_raw.fif": "below the minimum",
    }


def test_damaged_files_are_reported_and_good_ones_processed(tmp_path, caplog):
    bad = make_damaged_folder(tmp_path / "in")
    out = tmp_path / "out"
    code = cli_main(["prepare", "--input", str(tmp_path / "in"), "--output", str(out), "--workers", "1", "--no-progress"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    rejected_files = {r["path"]: r["reason"] for r in manifest["rejected"] if "channel" not in r}
    assert set(rejected_files) == set(bad)
    for name, words in bad.items():
        assert words in rejected_files[name], (name, rejected_files[name])
        assert name in caplog.text  # and on the console
    channels = {(r["path"], r["channel"]): r["reason"] for r in manifest["rejected"] if "channel" in r}
    assert "non-finite" in channels[("nan_channel_raw.fif", "FCZ")]
    assert "flat" in channels[("flat_channel_raw.fif", "FC4")]
    used = {r["path"]: r for r in manifest["recordings"] if r["windows"] > 0}
    assert set(used) == {"good.edf", "nan_channel_raw.fif", "flat_channel_raw.fif"}
    assert len(used["nan_channel_raw.fif"]["channels"]) == 63 and "FCZ" not in used["nan_channel_raw.fif"]["channels"]
    assert len(used["flat_channel_raw.fif"]["channels"]) == 63
    assert len(all_records(out, manifest)) == manifest["windows"] == sum(r["windows"] for r in used.values())
    assert not list(out.rglob("*.tmp"))


def test_nothing_usable_exits_nonzero_without_a_manifest(tmp_path, capsys, caplog):
    """No window written -> no manifest.json (it marks a finished output), exit 1 saying why; the
    failed run leaves nothing to resume, so the same command finishes once the input is fixed."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "broken.edf").write_bytes(b"not an edf at all" * 20)
    (inp / "notes.csv").write_text("not,a,recording\n")
    args = ["prepare", "--input", str(inp), "--output", str(out), "--workers", "1", "--no-progress"]
    assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert f"error: {inp}: no window from the 2 file(s) tried (2 failed" in err and "no manifest.json" in err
    assert "broken.edf" in caplog.text and "notes.csv" in caplog.text  # each failure, by name
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.array_record"))
    # The library returns what the manifest would have said.
    manifest = prepare(inp, out, EEG, workers=1, progress=False)
    assert manifest["windows"] == 0 and manifest["shards"] == {"train": [], "val": []}
    assert {r["path"] for r in manifest["rejected"]} == {"broken.edf", "notes.csv"}
    assert not (out / "manifest.json").exists()

    shutil.copy(sorted(BUNDLED.glob("*/*.edf"))[0], inp / "broken.edf")  # fixed in place: read again
    assert cli_main(args) == 0
    assert read_manifest(out)["windows"] == expected_windows(inp / "broken.edf")


def test_empty_input_folder_exits_nonzero_without_a_manifest(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    assert cli_main(["prepare", "--input", str(tmp_path / "in"), "--output", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'in'}: no recordings found (generic layout)" in err and "Traceback" not in err
    assert not (out / "manifest.json").exists()


# --- resume ----------------------------------------------------------------------------------

KILL_SCRIPT = """
import os, signal, sys
import data_pipelines.prepare as p
original, calls = p.write_recording, [0]
def write_then_die(writer, result):
    n = original(writer, result)
    calls[0] += 1
    if calls[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-shard: records of the group are half written
    return n
p.write_recording = write_then_die
from biocodec_jax.cli import main
sys.exit(main(sys.argv[2:]))
"""


def snapshot(out: Path) -> dict:
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


def test_killed_run_resumes_to_identical_output(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i, src in enumerate(sorted(BUNDLED.glob("*/*.edf"))):
        shutil.copy(src, inp / f"rec{i}.edf")
    (inp / "rec9.edf").write_bytes(b"junk" * 100)
    args = ["prepare", "--input", str(inp), "--workers", "1", "--no-progress", "--set", "recordings_per_shard=2",
            "--set", "val_fraction=0.2", "--channels-per-recording", "16"]

    assert cli_main(args + ["--output", str(tmp_path / "whole")]) == 0

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, "3", *args, "--output", str(tmp_path / "resumed")],
                            env=env, cwd=REPO, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert not (tmp_path / "resumed" / "manifest.json").exists()  # unfinished output is not presented as done
    assert list((tmp_path / "resumed").rglob("*.tmp"))  # the shard being written when killed

    assert cli_main(args + ["--output", str(tmp_path / "resumed")]) == 0
    assert snapshot(tmp_path / "resumed") == snapshot(tmp_path / "whole")


def test_rerun_with_other_config_is_refused(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(sorted(BUNDLED.glob("*/*.edf"))[0], inp / "a.edf")
    prepare(inp, tmp_path / "out", EEG, workers=1, progress=False)
    with pytest.raises(ValueError, match="different config"):
        prepare(inp, tmp_path / "out", replace(EEG, clip=5.0), workers=1, progress=False)


def test_resume_of_an_output_started_before_a_config_field_existed(tmp_path):
    """A stored run identity without ``resample`` (written before the field) means "fft", its
    default then: resuming with ``resample=fft`` is accepted, with today's default refused."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(sorted(BUNDLED.glob("*/*.edf"))[0], inp / "a.edf")
    fft = replace(EEG, resample="fft")
    first = prepare(inp, tmp_path / "out", fft, workers=1, progress=False)
    stamp = tmp_path / "out" / "progress" / "run.json"
    old = json.loads(stamp.read_text())
    del old["config"]["resample"]
    stamp.write_text(json.dumps(old))
    (tmp_path / "out" / "manifest.json").unlink()
    assert prepare(inp, tmp_path / "out", fft, workers=1, progress=False) == first
    with pytest.raises(ValueError, match="different config"):
        prepare(inp, tmp_path / "out", replace(EEG, resample="polyphase"), workers=1, progress=False)


def test_encode_recording_gives_encode_window_bytes():
    """The workers' batch encoding is byte for byte the per-record one, awkward names included."""
    from data_pipelines.shards import encode_recording, encode_window

    windows = np.random.default_rng(0).standard_normal((3, 4, 7))  # float64: stored as float32 either way
    channels = ["C3", 'a"b\\c', "Fp\u00e9", "\U0001F600\n"]
    starts = np.array([0, 1250, 10**12], np.int64)
    recording, subject = 'S001/"rec\u00fc"', "sub\tject/\u4e2d"
    expected = [encode_window(windows[w, c], WindowOrigin(recording, subject, channels[c], int(starts[w])))
                for w in range(3) for c in range(4)]
    assert encode_recording(windows, starts, channels, recording, subject) == expected
    with pytest.raises(ValueError, match="expected windows"):
        encode_recording(windows[0], starts, channels, recording, subject)


def test_pool_start_method_forks_only_without_jax(monkeypatch):
    from data_pipelines.prepare import _start_method

    monkeypatch.setitem(sys.modules, "jax", sys.modules.get("jax") or object())
    assert _start_method() == "spawn"  # JAX's threads do not survive fork
    monkeypatch.delitem(sys.modules, "jax")
    assert _start_method() == ("fork" if sys.platform.startswith("linux") else "spawn")


# --- channels and splits ---------------------------------------------------------------------


def test_channel_choice_is_seeded_per_recording():
    names = [f"C{i}" for i in range(64)]
    a = choose_channels(names, 5, 0, "S001/S001R04")
    assert a == choose_channels(names, 5, 0, "S001/S001R04") and len(set(a)) == 5 and a == sorted(a)
    assert a != choose_channels(names, 5, 0, "S002/S002R04")
    assert a != choose_channels(names, 5, 1, "S001/S001R04")
    assert choose_channels(names[:3], 5, 0, "x") == [0, 1, 2]


def test_splits_never_share_a_subject():
    from data_pipelines.datasets import RecordingRef

    refs = [RecordingRef(f"S{s:03d}R{r:02d}", f"S{s:03d}", f"S{s:03d}R{r:02d}.edf") for s in range(20) for r in range(3)]
    splits = assign_splits(refs, replace(EEG, val_fraction=0.2))
    val_subjects = {r.subject for r in refs if splits[r.recording_id] == "val"}
    train_subjects = {r.subject for r in refs if splits[r.recording_id] == "train"}
    assert len(val_subjects) == 4 and not val_subjects & train_subjects
    assert splits == assign_splits(refs, replace(EEG, val_fraction=0.2))
    by_recording = assign_splits(refs, replace(EEG, val_fraction=0.2, split_by="recording"))
    assert sum(v == "val" for v in by_recording.values()) == 12


# --- dataset adapters ------------------------------------------------------------------------


def tuh_edf(src: Path, dst: Path, rename: dict[str, str]) -> None:
    """Copy an EDF, relabelling its channels in the header (16-byte ASCII labels after byte 256)."""
    data = bytearray(src.read_bytes())
    n_signals = int(data[252:256].decode())
    for i in range(n_signals):
        at = 256 + 16 * i
        label = data[at : at + 16].decode().strip()
        new = rename.get(label, label)
        data[at : at + 16] = new.ljust(16).encode()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))


def tuh_names(src: Path) -> dict[str, str]:
    """PhysioNet labels -> TUH's (EEG <name>-REF, old 10-20 temporal names), one lead made EKG."""
    raw = mne.io.read_raw_edf(src, preload=False, verbose=False)
    modern_to_old = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
    out = {}
    for label in raw.ch_names:
        name = label.strip(".").upper()
        out[label] = f"EEG {modern_to_old.get(name, name)}-REF"
    out[raw.ch_names[-1]] = "EEG EKG1-REF"
    return out


def test_tueg_layout_and_channel_names(tmp_path):
    src = sorted(BUNDLED.glob("*/*.edf"))
    root = tmp_path / "tueg"
    layout = [  # v2.0 layout, a second session, v1 layout with numeric ids
        "edf/000/aaaaaaaa/s001_2015_12_30/01_tcp_ar/aaaaaaaa_s001_t000.edf",
        "edf/000/aaaaaaaa/s002_2016_01_04/01_tcp_ar/aaaaaaaa_s002_t001.edf",
        "edf/01_tcp_ar/000/00000002/s001_2003_07_18/00000002_s001_t000.edf",
        "edf/003/aaaaaaab/s001_2012_02_02/02_tcp_le/aaaaaaab_s001_t000.edf",
    ]
    for s, rel in zip(src, layout):
        tuh_edf(s, root / rel, tuh_names(s))
    (root / "edf" / "000" / "aaaaaaaa" / "s001_2015_12_30" / "01_tcp_ar" / "aaaaaaaa_s001_t000.txt").write_text("report")
    (root / "stray.edf").write_bytes(src[0].read_bytes())

    refs, skipped = get_dataset("tueg").find(root)
    assert sorted(r.subject for r in refs) == ["00000002", "aaaaaaaa", "aaaaaaaa", "aaaaaaab"]
    assert [s.path for s in skipped] == ["stray.edf"]

    config = replace(EEG, val_fraction=0.34, channels_per_recording=5)
    manifest = prepare(root, tmp_path / "out", config, dataset="tueg", workers=1, progress=False)
    assert len(manifest["recordings"]) == 4
    for r in manifest["recordings"]:
        assert len(r["channels"]) == 5 and set(r["channels"]) <= set(TEN_TWENTY), r["channels"]
    sessions = [r for r in manifest["recordings"] if r["subject"] == "aaaaaaaa"]
    assert len({r["split"] for r in sessions}) == 1  # two sessions of one patient: same split
    assert manifest["splits"]["val"]["recordings"] >= 1
    # All 19 10-20 electrodes are found under TUH naming; EKG and the rest are left out.
    full = prepare(root, tmp_path / "all", replace(config, channels_per_recording=None), dataset="tueg", workers=1, progress=False)
    for r in full["recordings"]:
        assert sorted(r["channels"]) == sorted(TEN_TWENTY)
    assert any("stray.edf" == r["path"] for r in full["rejected"])


def test_myo_emg_adapter(tmp_path):
    emg = prepare_preset("emg")
    manifest = prepare(FIXTURES / "myo", tmp_path / "out", replace(emg, val_fraction=0.5), dataset="myo", workers=1, progress=False)
    assert sorted(r["subject"] for r in manifest["recordings"]) == ["12345", "21547"]
    for r in manifest["recordings"]:
        assert r["channels"] == [f"EMG{i}" for i in range(1, 9)] and r["source_rate"] == 200.0
        n = int(round(r["duration_s"] * 200)) * 1000 // 200  # 200 Hz -> 1 kHz
        assert r["windows"] == (n // 5000) * 8
    assert manifest["window_samples"] == 5000 and manifest["splits"]["val"]["recordings"] == 1
    # The EEG preset finds no EEG channel in an EMG recording and says so.
    eeg = prepare(FIXTURES / "myo", tmp_path / "eeg", EEG, dataset="myo", workers=1, progress=False)
    assert eeg["windows"] == 0 and all("no EEG channels" in r["reason"] for r in eeg["rejected"])


def test_bonn_adapter_reads_zip_members(tmp_path):
    manifest = prepare(FIXTURES / "bonn", tmp_path / "out", replace(EEG, val_fraction=0.25), dataset="bonn", workers=1, progress=False)
    assert sorted(r["recording"] for r in manifest["recordings"]) == ["S/S001", "S/S002", "Z/Z001", "Z/Z002"]
    assert all(r["path"].startswith("ZS.zip::") for r in manifest["recordings"])
    # 4097 samples at 173.61 Hz = 23.6 s -> 5900 samples at 250 Hz -> 4 windows of one channel.
    assert [r["windows"] for r in manifest["recordings"]] == [4, 4, 4, 4]
    assert manifest["splits"]["val"]["recordings"] == 1


# --- truncated EDF: refused by default, salvaged on request ----------------------------------


def test_truncated_edf_refused_with_a_hint_or_salvaged(tmp_path, caplog, capsys):
    """The first 1,300,000 bytes of S001R04.edf: its header declares 125 records of 1 s, MNE reads the
    62 whole ones. read_raw stays strict; prepare rejects it, saying how to keep it; --salvage keeps
    the 62 s (logged, in the manifest entry)."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "cut.edf").write_bytes((BUNDLED / "S001" / "S001R04.edf").read_bytes()[:1_300_000])

    refused = prepare(inp, tmp_path / "refused", EEG, workers=1, progress=False)
    assert refused["windows"] == 0
    (rejection,) = refused["rejected"]
    assert rejection["path"] == "cut.edf" and rejection["reason"].startswith("truncated or damaged: the file holds 62 s")
    assert rejection["reason"].endswith("; `prepare --salvage` keeps the readable records")

    out = tmp_path / "salvaged"
    caplog.clear()
    assert cli_main(["prepare", "--input", str(inp), "--output", str(out), "--workers", "1", "--no-progress", "--salvage"]) == 0
    assert "salvaged 1 truncated file(s)" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["config"]["salvage_truncated"] is True and manifest["rejected"] == []
    (entry,) = manifest["recordings"]
    assert entry["windows"] == (62 * 250 // 1250) * 64 and entry["duration_s"] == 62.0
    assert entry["salvaged"] == {"kept_s": 62.0, "declared_s": 125.0,
                                 "reason": "truncated: the file holds 62 s of whole data records of the 125 s its header declares"}
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "cut.edf" in r.getMessage()]
    assert [r.getMessage() for r in warnings] == [
        "salvaged cut.edf: truncated file, kept 62 s of whole data records of the 125 s its header declares"]
    assert len(all_records(out, manifest)) == manifest["windows"]

    from data_pipelines.readers import TruncatedRecordingError, read_raw, read_raw_salvaged

    with pytest.raises(TruncatedRecordingError, match=r"cut\.edf: truncated or damaged: the file holds 62 s of whole "
                       r"data records of the 125 s its header declares$"):
        read_raw(inp / "cut.edf")  # the default stays strict (tokenize, report and the task programs rely on it)
    raw, truncation = read_raw_salvaged(inp / "cut.edf")
    assert raw.n_times == 62 * 160 and (truncation.kept_s, truncation.declared_s) == (62.0, 125.0)
