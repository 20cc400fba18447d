"""``prepare`` and ``tokenize`` as Apache Beam pipelines (DirectRunner): the same outputs as the local
runs, byte for byte; resumable; gs:// outputs (a local GCS emulator); runner options through ``--``."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import mne
import numpy as np
import pytest

pytest.importorskip("apache_beam", reason='pip install "biocodec-jax[beam]"')

from biocodec_jax.cli import main as cli_main
from data_pipelines import paths
from data_pipelines import prepare as prep
from data_pipelines.config import prepare_preset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "eegmmidb"
EEGMMIDB = SHARED if SHARED.is_dir() else REPO / "data" / "eegmmidb"
# 3 subjects (one goes to validation), 16 of the 64 channels: a few seconds a run.
CONFIG = dataclasses.replace(prepare_preset("eeg"), recordings_per_shard=2, val_fraction=0.34, channels_per_recording=16)


def snapshot(root) -> dict[str, bytes]:
    """Every file under ``root`` (a local folder or a gs:// URL): relative path -> bytes."""
    base = paths.as_path(root)

    def files(folder):  # (epath has no recursive glob on gs://)
        for p in folder.iterdir():
            yield from files(p) if p.is_dir() else [p]

    return {str(p).removeprefix(str(base) + "/"): p.read_bytes() for p in sorted(files(base), key=str)}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """A small eegmmidb folder (PhysioNet layout): 2 runs of S001..S003 (bundled copy: 1 run each)."""
    root = tmp_path_factory.mktemp("eegmmidb")
    for subject in ("S001", "S002", "S003"):
        for src in sorted((EEGMMIDB / subject).glob("*.edf"))[:2]:
            (root / subject).mkdir(exist_ok=True)
            shutil.copy(src, root / subject / src.name)
    (root / "S003" / "S003R99.edf").write_bytes(b"not an EDF file" * 10)  # rejected with its reason
    return root


@pytest.fixture(scope="module")
def local_output(recordings, tmp_path_factory) -> Path:
    """The reference: the local prepare (process pool) of ``recordings``."""
    out = tmp_path_factory.mktemp("local") / "shards"
    manifest = prep.prepare(recordings, out, CONFIG, dataset="eegmmidb", workers=1, progress=False)
    assert manifest["windows"] > 0 and manifest["splits"]["val"]["recordings"] > 0
    assert any("S003R99" in r["path"] for r in manifest["rejected"])
    return out


@pytest.mark.slow
def test_beam_prepare_into_a_bucket_equals_local_prepare(recordings, local_output, gcs_bucket, caplog):
    from data_pipelines.beam import prepare_beam

    url = gcs_bucket + "/shards"
    with caplog.at_level(logging.INFO, logger="data_pipelines.beam"):
        manifest = prepare_beam(recordings, url, CONFIG, dataset="eegmmidb", runner="direct", workers=2, progress=False)
    assert manifest == paths.read_json(local_output / "manifest.json")
    # Every file: shards record for record, progress files, config, manifest (no fragment left over).
    assert snapshot(url) == snapshot(local_output)
    with paths.local_copy(url + "/" + manifest["shards"]["train"][0]["path"]) as shard:  # a reader's local copy
        assert shard.read_bytes() == (local_output / manifest["shards"]["train"][0]["path"]).read_bytes()
    counters = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("beam counters"))
    assert f"windows {manifest['windows']}" in counters and "recordings_done 7" in counters
    assert "recordings_rejected 1" in counters


@pytest.mark.slow
def test_beam_prepare_resumes_an_interrupted_run(recordings, local_output, tmp_path, caplog):
    """A run stopped with one group done and two recordings of another done (their fragments and
    parts written), plus a half-written shard: the re-run reads only the other recordings and
    ends with the local run's output, file for file."""
    from data_pipelines import beam as pb

    out = tmp_path / "shards"
    run = prep.plan(recordings, CONFIG, "eegmmidb")
    prep.start(out, run, CONFIG)
    first, second = run.groups[0], run.groups[1]
    for rel in (first.shard_path, f"progress/{first.name}.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local_output / rel, out / rel)
    worker = pb._ProcessRecording(run.root, run.dataset, CONFIG, str(out), progress=False)
    for ref in second.refs:
        assert list(worker.process((second, ref))) == [(second.name, ref.recording_id)]
    assert len(list((out / prep.FRAGMENTS_DIR).glob("*.array_record"))) == 2
    (out / (second.shard_path + ".tmp")).parent.mkdir(parents=True, exist_ok=True)
    (out / (second.shard_path + ".tmp")).write_bytes(b"half a shard")

    with caplog.at_level(logging.INFO, logger="data_pipelines"):
        pb.prepare_beam(recordings, out, CONFIG, dataset="eegmmidb", workers=2, progress=False)
    todo = sum(len(g.refs) for g in run.groups[2:])
    assert f"{todo} recordings to read, {len(run.groups) - 1} shards to write (2 recordings done by an earlier run)" in caplog.text
    assert snapshot(out) == snapshot(local_output)

    with pytest.raises(ValueError, match="different config"):  # another config: refused, as the local run does
        pb.prepare_beam(recordings, out, dataclasses.replace(CONFIG, clip=5.0), dataset="eegmmidb", progress=False)


def test_local_prepare_into_a_bucket(recordings, local_output, gcs_bucket):
    url = gcs_bucket + "/shards"
    manifest = prep.prepare(recordings, url, CONFIG, dataset="eegmmidb", workers=1, progress=False)
    assert snapshot(url) == snapshot(local_output)
    from data_pipelines.manifest import read_manifest

    assert read_manifest(url) == manifest


def test_safe_names_and_runner_options():
    from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions

    from data_pipelines.beam import pipeline_options, safe_name

    assert safe_name("S001/S001R04").startswith("S001_S001R04-") and safe_name("a/b") != safe_name("a_b")
    options = pipeline_options("dataflow", 4, ["--project", "P", "--region", "R", "--temp_location", "gs://b/tmp"])
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("P", "R", "gs://b/tmp")
    direct = pipeline_options("direct", 3).view_as(DirectOptions)
    assert (direct.direct_num_workers, direct.direct_running_mode) == (3, "multi_processing")
    assert pipeline_options("direct", 3, ["--direct_num_workers=5"]).view_as(DirectOptions).direct_num_workers == 5
    with pytest.raises(ValueError, match="unknown runner"):
        pipeline_options("nope")


def test_cli_runner_and_pass_through(tmp_path, monkeypatch, capsys):
    """--runner picks the pipeline; what follows -- goes to Beam unchanged; stray arguments, or
    runner options for the local run, are refused; without Beam, a Beam runner says how to get it."""
    import data_pipelines.beam as pb

    calls = []

    def fake_prepare_beam(input_dir, output_dir, config, **kwargs):
        calls.append(kwargs)
        return {"windows": 0, "recordings": [], "rejected": []}

    monkeypatch.setattr(pb, "prepare_beam", fake_prepare_beam)
    base = ["prepare", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--no-progress"]
    assert cli_main([*base, "--runner", "dataflow", "--workers", "3", "--", "--project", "P", "--input", "x"]) == 1
    assert calls[0]["runner"] == "dataflow" and calls[0]["workers"] == 3
    assert list(calls[0]["pipeline_args"]) == ["--project", "P", "--input", "x"]
    for argv in ([*base, "stray"], [*base, "--", "--project", "P"], [*base, "--runner", "direct", "stray", "--", "--x"]):
        with pytest.raises(SystemExit) as e:
            cli_main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: stray" in err and "are a Beam runner's; give --runner direct|dataflow" in err

    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if the [beam] extra were not installed
    monkeypatch.delitem(sys.modules, "data_pipelines.beam")
    monkeypatch.delattr(sys.modules["data_pipelines"], "beam", raising=False)
    assert cli_main([*base, "--runner", "direct"]) == 2
    assert 'pip install "biocodec-jax[beam]"' in capsys.readouterr().err
    code = "import sys, data_pipelines.prepare; assert 'apache_beam' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _small_raw(seed: int) -> mne.io.RawArray:
    x = np.random.default_rng(seed).normal(scale=1e-5, size=(2, 500))
    return mne.io.RawArray(x, mne.create_info(["C0", "C1"], 250.0, "eeg"), verbose=False)


def _same_tokens(want_path, got_path) -> None:
    with np.load(want_path) as want, np.load(got_path) as got:
        assert want.files == got.files
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{got_path}: {key}")


@pytest.mark.slow
def test_beam_tokenize_equals_local_tokenize(tmp_path, capsys, gcs_bucket):
    """Two recordings and a broken file: the Beam pipeline writes the tokens the local command
    writes, leaves an output already there (already done), and reports the broken file (exit 1).
    The local tokenize and reconstruct write into a bucket too."""
    from biocodec_jax import Codec, batch

    codec = Codec.from_preset("tiny", seed=0).save(tmp_path / "codec")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        _small_raw(seed).save(recordings / f"{name}_raw.fif", verbose=False)
    (recordings / "broken.edf").write_text("not an EDF file")
    base = ["tokenize", "--codec", str(codec), "--no-progress", "--input", str(recordings)]

    assert cli_main([*base, "--output", str(tmp_path / "local")]) == 1
    local = capsys.readouterr()
    (tmp_path / "beam").mkdir()
    shutil.copy(tmp_path / "local" / "a_raw_tokens.npz", tmp_path / "beam" / "a_raw_tokens.npz")
    assert cli_main([*base, "--output", str(tmp_path / "beam"), "--runner", "direct", "--workers", "1"]) == 1
    out = capsys.readouterr()
    assert "1 written" in out.out and "1 already done" in out.out and "1 skipped" in out.out
    skipped = [line for line in out.err.splitlines() if line.startswith("skipped")]
    assert skipped == [line for line in local.err.splitlines() if line.startswith("skipped")] and len(skipped) == 1
    assert sorted(p.name for p in (tmp_path / "beam").iterdir()) == ["a_raw_tokens.npz", "b_raw_tokens.npz"]
    for name in ("a_raw_tokens.npz", "b_raw_tokens.npz"):
        _same_tokens(tmp_path / "local" / name, tmp_path / "beam" / name)

    tiny = Codec.open(codec)
    url = gcs_bucket + "/tokens"
    report = batch.tokenize_files(tiny, recordings, url, progress=False)
    assert [t.name for t in report["written"]] == ["a_raw_tokens.npz", "b_raw_tokens.npz"] and len(report["failed"]) == 1
    for name in ("a_raw_tokens.npz", "b_raw_tokens.npz"):
        with paths.local_copy(f"{url}/{name}") as got:
            _same_tokens(tmp_path / "local" / name, got)
    again = batch.tokenize_files(tiny, recordings, url, progress=False)
    assert again["written"] == [] and [str(t) for _, t in again["existing"]] == [f"{url}/a_raw_tokens.npz", f"{url}/b_raw_tokens.npz"]
    recon = batch.reconstruct_files(tiny, tmp_path / "local", gcs_bucket + "/recon", progress=False)
    assert [t.name for t in recon["written"]] == ["a_raw_recon_raw.fif", "b_raw_recon_raw.fif"]
    with paths.local_copy(gcs_bucket + "/recon/a_raw_recon_raw.fif") as fif:
        assert mne.io.read_raw_fif(fif, verbose=False).ch_names == ["C0", "C1"]
