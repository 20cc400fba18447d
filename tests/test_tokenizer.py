"""``codec.tokenize`` / ``codec.detokenize``: recordings -> Tokens -> .npz -> Tokens -> physical-unit Raw.

A codec with k-means-initialised codebooks (windows of the bundled PhysioNet EDF S001R04) tokenizes
real recordings: the repo's EDF S004R04 (by path), an EEGLAB ``.set``/``.fdt`` and a FIF file
(tests/fixtures/formats), and Myo EMG. The codec is barely trained, so the reconstruction is
checked against the same codec's offline ``reconstruct`` of the normalised input, not against
the recording. Channels and lengths are kept small so that the file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
from mne.io.constants import FIFF

from biocodec_jax import Codec, tokenizer
from biocodec_jax.batch import _each_file, _existing_tokens_problem
from biocodec_jax.cli import main as cli_main
from biocodec_jax.config import preset
from biocodec_jax.tokenizer import (DroppedChannelsWarning, Tokens, TokenizeError, TokensFileError, fingerprint,
                                    prepare_config_for, prepare_recording)
from data_pipelines import prepare_preset, recording_windows
from data_pipelines.channels import pick_channels
from data_pipelines.config import PrepareConfig, config_to_dict
from data_pipelines.datasets.myo import MyoDataset
from data_pipelines.preprocess import unusable_channels
from data_pipelines.errors import RecordingError
from data_pipelines.readers import read_raw

REPO = Path(__file__).resolve().parents[1]
INIT_EDF = REPO / "data" / "eegmmidb" / "S001" / "S001R04.edf"
EDF = REPO / "data" / "eegmmidb" / "S004" / "S004R04.edf"
FORMATS = REPO / "tests" / "fixtures" / "formats"  # real EEGLAB and FIF recordings (see NOTICE)
EEGLAB = FORMATS / "eeglab_data.set"
FIF = FORMATS / "data_resting_EO_200Hz_raw.fif"


@pytest.fixture(scope="module")
def codec():
    prep = dataclasses.replace(prepare_preset("eeg"), window_seconds=5.0)
    w = recording_windows(INIT_EDF, prep).windows  # [n, 64, 1250] at 250 Hz, preprocessed
    codec = Codec.from_preset("eeg", seed=0, init_batch=w[:2, :32].reshape(64, 1, 1250))
    assert codec.initialized and codec.sample_rate == 250
    return codec


def _round_trip(codec, recording, reference: mne.io.BaseRaw, tmp_path, prep=None, check_gain=True, units="V"):
    """tokenize -> save -> load -> detokenize, checked against ``reference`` (the picked input).

    ``units``: the unit the tokens must carry ("AU" for Myo ADC counts); detokenize must give the
    channels the reference's unit codes back.

    ``check_gain=False`` where the codec runs far above the recording's rate: resampling back then
    drops what an untrained decoder puts above the recording's Nyquist frequency (most of its output
    for 200-Hz EMG coded at 1 kHz), so the amplitude at the original rate says nothing of units."""
    tokens = codec.tokenize(recording, prep=prep)
    loaded = Tokens.load(tokens.save(tmp_path / "rec.tokens.npz"))
    c, t_in = reference.get_data().shape

    # Tokens and their file.
    assert loaded.codes.dtype == np.int32 and loaded.codes.shape == (c, codec.n_q, -(-tokens.n_samples // codec.hop_length))
    np.testing.assert_array_equal(loaded.codes, tokens.codes)
    assert loaded.channel_names == tokens.channel_names == tuple(reference.ch_names)
    assert loaded.canonical_channel_names == tokens.canonical_channel_names
    assert loaded.codec_id == fingerprint(codec)
    assert loaded.token_rate == codec.sample_rate / codec.hop_length and loaded.sample_rate == codec.sample_rate
    assert loaded.original_sample_rate == reference.info["sfreq"] and loaded.original_n_samples == t_in
    assert loaded.n_samples == round(t_in * codec.sample_rate / reference.info["sfreq"])
    assert loaded.units == (units,) * c and loaded.ch_types == tuple(reference.get_channel_types())
    for key in ("median", "iqr"):
        np.testing.assert_array_equal(loaded.preprocessing[key], tokens.preprocessing[key])
    assert loaded.preprocessing["clip"] == 10.0 and loaded.preprocessing["sample_rate"] == codec.sample_rate
    assert loaded.preprocessing["resample"] == tokens.preprocessing["resample"] in ("fft", "polyphase")
    assert loaded.start_time == tokens.start_time

    # Physical units at the original rate, same channels, types, length and start.
    raw = codec.detokenize(loaded)
    assert raw.ch_names == reference.ch_names and raw.get_channel_types() == reference.get_channel_types()
    assert [ch["unit"] for ch in raw.info["chs"]] == [ch["unit"] for ch in reference.info["chs"]]
    assert raw.info["sfreq"] == reference.info["sfreq"]
    assert raw.get_data().shape == (c, t_in)
    assert raw.info["meas_date"] == reference.info["meas_date"]
    assert raw.first_samp == reference.first_samp
    # At the codec's rate, re-normalised: exactly the codec's offline reconstruction of the prepared input.
    at_rate = codec.detokenize(loaded, resample=False)
    assert at_rate.info["sfreq"] == codec.sample_rate and at_rate.n_times == loaded.n_samples
    med, iqr = loaded.preprocessing["median"][:, None], loaded.preprocessing["iqr"][:, None]
    prepared = prepare_recording(codec, recording, prep=prep)
    expected = np.asarray(codec.reconstruct(prepared.x[None])[0])
    np.testing.assert_allclose((at_rate.get_data() - med) / iqr, expected, atol=1e-4, rtol=0)

    # The input's scale and units: the normalisation restored by detokenize is the recording's own
    # (median and IQR in volts; a V/uV slip would be off by 1e6), and back at the original rate the
    # output's amplitude follows the codec's gain in the normalised domain (a barely trained decoder
    # does not reproduce the amplitude: its output IQR is a few % of its input's here).
    def spread(a):
        return np.subtract(*np.percentile(a, [75, 25], axis=1))

    x, y = reference.get_data(), raw.get_data()
    assert np.all((loaded.preprocessing["iqr"] / spread(x) > 0.5) & (loaded.preprocessing["iqr"] / spread(x) < 2))
    assert np.all(np.abs(loaded.preprocessing["median"] - np.median(x, axis=1)) < 0.5 * spread(x))
    if check_gain:
        gain = spread(expected) / spread(prepared.x)
        ratio = spread(y) / spread(x) / gain
        assert np.all((ratio > 1 / 3) & (ratio < 3)), (ratio, gain)
    assert np.all(np.abs(np.median(y, axis=1) - np.median(x, axis=1)) < 3 * spread(x))
    return tokens


def test_edf_by_path(codec, tmp_path):
    prep = dataclasses.replace(prepare_config_for(codec), channels=("C3", "C4"))  # 2 of 64, whole 123 s
    reference = pick_channels(read_raw(EDF), "eeg", only=("C3", "C4"), rename=False)
    tokens = _round_trip(codec, EDF, reference, tmp_path, prep=prep)
    assert tokens.channel_names == ("C3..", "C4..") and tokens.canonical_channel_names == ("C3", "C4")
    assert tokens.original_sample_rate == 160.0 and tokens.start_time["meas_date"].startswith("2009-08-12")
    assert str(EDF) in tokens.source


def _cropped(path: Path, names: list[str], seconds: float) -> mne.io.BaseRaw:
    raw = read_raw(path)
    raw.pick(names).crop(tmax=seconds - 1 / raw.info["sfreq"])
    return raw


def test_eeglab(codec, tmp_path):
    raw = _cropped(EEGLAB, ["FPz", "EOG1", "F3"], 30.0)  # EOG1 is not EEG: dropped by the picker
    reference = pick_channels(raw.copy(), "eeg", rename=False)
    assert reference.ch_names == ["FPz", "F3"]
    tokens = _round_trip(codec, raw, reference, tmp_path)
    assert tokens.canonical_channel_names == ("FPZ", "F3")
    assert tokens.start_time["meas_date"] is None and tokens.original_sample_rate == 128.0


def test_fif(codec, tmp_path):
    raw = read_raw(FIF).crop(tmax=30.0 - 1 / 200)
    reference = pick_channels(raw.copy(), "eeg", rename=False)
    assert raw.first_samp > 0 and raw.info["meas_date"] is not None
    tokens = _round_trip(codec, raw, reference, tmp_path)
    assert tokens.start_time["offset_s"] == pytest.approx(raw.first_samp / 200.0)


MYO = REPO / "tests" / "fixtures" / "myo" / "12345-1" / "0.txt"


def test_emg_recording(tmp_path):
    """Real Myo EMG (8 channels at 200 Hz) through an EMG codec at 1 kHz (the tiny architecture under
    the emg preset's name and rate, which is what selects the EMG preparation; quick to compile)."""
    root = MYO.parents[1]
    (ref,) = [r for r in MyoDataset().find(root)[0] if r.path == "12345-1/0.txt"]
    raw = MyoDataset().read(root, ref)
    raw.crop(tmax=10.0 - 1 / raw.info["sfreq"])
    tiny = preset("tiny")
    config = dataclasses.replace(tiny, preset="emg", codec=dataclasses.replace(tiny.codec, sample_rate=1000))
    init = prepare_recording(Codec.from_config(config), raw).x[:, :5000].reshape(8, 1, 5000)
    emg = Codec.from_config(config, seed=0, init_batch=init)
    # The adapter declares ADC counts (FIFF_UNIT_NONE), not volts: the tokens say "AU", their median and
    # IQR are in counts (the reference's own spread, checked in _round_trip) and detokenize gives counts back.
    assert {ch["unit"] for ch in raw.info["chs"]} == {FIFF.FIFF_UNIT_NONE}
    tokens = _round_trip(emg, raw, raw.copy(), tmp_path, check_gain=False, units="AU")
    assert tokens.ch_types == ("emg",) * 8 and tokens.preprocessing["modality"] == "emg"
    assert np.all(tokens.preprocessing["iqr"] > 1)  # counts (-128..127), not volts
    assert tokens.sample_rate == 1000.0 and tokens.original_sample_rate == 200.0
    with pytest.raises(ValueError, match=r"no EMG channels"):
        emg.tokenize(_array_raw(2, 1000.0, 5000))  # EEG channels only


def test_preprocessing_stored_with_the_codec_is_used(codec, tmp_path):
    """A codec that carries its training data's prepare config tokenizes with it, saved or not."""
    stored = dataclasses.replace(prepare_config_for(codec), clip=2.0, l_freq=1.0, channels=("C3", "CZ", "C4"))
    assert prepare_config_for(codec).clip == 10.0  # the eeg preset: this codec stores none
    with_prep = dataclasses.replace(codec, metadata={"preprocessing": config_to_dict(stored)})
    loaded = Codec.load(with_prep.save(tmp_path / "codec"))
    assert loaded.metadata == with_prep.metadata and prepare_config_for(loaded) == stored
    # Typed where the codec keeps it: a PrepareConfig; the dict view is what metadata.json holds.
    assert isinstance(loaded.prepare_config, PrepareConfig) and loaded.prepare_config == stored
    assert loaded.preprocessing == config_to_dict(stored)

    raw = read_raw(EDF).crop(tmax=20.0 - 1 / 160)
    tokens = loaded.tokenize(raw)
    assert tokens.canonical_channel_names == ("C3", "CZ", "C4")
    assert tokens.preprocessing["clip"] == 2.0 and tokens.preprocessing["l_freq"] == 1.0
    assert tokens.preprocessing["origin"] == "stored with the codec"
    expected = prepare_recording(codec, raw, prep=stored).x
    assert np.abs(expected).max() == 2.0  # clipped as stored
    np.testing.assert_array_equal(tokens.codes, np.asarray(codec.encode(expected[None])[0]))

    bad = dataclasses.replace(codec, metadata={"preprocessing": {**config_to_dict(stored), "sample_rate": 200.0}})
    with pytest.raises(ValueError, match=r"resamples to 200 Hz but the codec runs at 250 Hz"):
        bad.tokenize(raw)


def test_long_recordings_are_coded_a_few_channels_at_a_time(monkeypatch):
    x = np.random.default_rng(0).normal(size=(4, 2000)).astype(np.float32)
    codec = Codec.from_preset("tiny", seed=0, init_batch=x[:, None])
    whole = tokenizer.encode_channels(codec, x)
    calls = []
    encode = codec.encode
    monkeypatch.setattr(tokenizer, "MAX_SAMPLES_PER_CALL", 2 * x.shape[1])
    monkeypatch.setattr(codec, "encode", lambda x, n_q=None: calls.append(x.shape) or encode(x, n_q))
    grouped = tokenizer.encode_channels(codec, x)
    assert calls == [(1, 2, 2000), (1, 2, 2000)]
    assert (grouped == whole).mean() > 0.999  # channels are independent; float32 ties aside
    y_whole = np.asarray(codec.decode(whole[None])[0])
    np.testing.assert_allclose(tokenizer.decode_channels(codec, whole), y_whole, atol=1e-5)


# --- errors ---------------------------------------------------------------------------------


def _array_raw(n_channels: int, sfreq: float, n_samples: int, ch_type: str = "eeg", seed: int = 0) -> mne.io.RawArray:
    x = np.random.default_rng(seed).normal(scale=1e-5, size=(n_channels, n_samples))
    info = mne.create_info([f"C{i}" for i in range(n_channels)], sfreq, ch_type)
    return mne.io.RawArray(x, info, verbose=False)


def test_rate_too_low(codec):
    with pytest.raises(ValueError, match=r"50 Hz is below the minimum of 128 Hz") as e:
        codec.tokenize(_array_raw(2, 50.0, 500), source="slow-recording")
    assert isinstance(e.value, RecordingError) and "slow-recording" in str(e.value)


def test_no_channels_of_the_modality(codec):
    with pytest.raises(ValueError, match=r"no EEG channels"):
        codec.tokenize(_array_raw(2, 250.0, 2500, ch_type="emg"))


def test_shorter_than_one_frame(codec):
    with pytest.raises(ValueError, match=rf"less than one frame of {codec.hop_length} samples"):
        codec.tokenize(_array_raw(2, 250.0, codec.hop_length - 1))


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny codec (250 Hz, hop 4): quick to build and compile, for the error paths."""
    return Codec.from_preset("tiny", seed=0)


def test_nan_or_flat_channel_is_left_out_as_prepare_does(tiny, tmp_path):
    """One rule with ``prepare`` (preprocess.unusable_channels): the bad channels are dropped and
    listed with the reason, the rest is tokenized; detokenize gives back the kept channels."""
    raw = _array_raw(4, 250.0, 500)
    raw._data[1, 100] = np.nan
    raw._data[3] = 2e-6  # flat
    with pytest.warns(DroppedChannelsWarning, match=r"'C1' \(1 non-finite.*'C3' \(flat"):
        tokens = tiny.tokenize(raw)
    assert tokens.channel_names == ("C0", "C2") and tokens.codes.shape[0] == 2
    assert tokens.dropped_channels == ({"channel": "C1", "canonical": "C1", "reason": "1 non-finite (NaN/Inf) sample(s)"},
                                       {"channel": "C3", "canonical": "C3", "reason": "flat signal (interquartile range 0)"})
    assert [(d["canonical"], d["reason"]) for d in tokens.dropped_channels] == unusable_channels(raw.get_data(), raw.ch_names)
    loaded = Tokens.load(tokens.save(tmp_path / "t_tokens.npz"))
    assert loaded.dropped_channels == tokens.dropped_channels
    back = tiny.detokenize(loaded)
    assert back.ch_names == ["C0", "C2"] and back.n_times == 500

    raw._data[[0, 2]] = np.inf
    with pytest.raises(TokenizeError, match=r"no usable channel \('C0': 500 non-finite"):
        tiny.tokenize(raw, source="all-bad")


def test_missing_file(codec, tmp_path):
    with pytest.raises(TokenizeError, match=r"no such file"):
        codec.tokenize(tmp_path / "absent.edf")


def test_tokens_of_another_codec_refused(codec):
    other = Codec.from_preset("eeg", seed=1)
    assert fingerprint(other) != fingerprint(codec)
    assert fingerprint(codec) == fingerprint(codec)  # stable
    tokens = other.tokenize(_array_raw(1, 250.0, 250))
    assert tokens.codec_id == fingerprint(other)
    with pytest.raises(ValueError, match=rf"{tokens.codec_id}.*{fingerprint(codec)}"):
        codec.detokenize(tokens)


def test_cli_tokenize_and_reconstruct_a_folder_skipping_bad_files(tmp_path, capsys):
    codec_dir = Codec.from_preset("tiny", seed=0).save(tmp_path / "codec")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copy(EDF, recordings / EDF.name)
    (recordings / "broken.edf").write_text("not an EDF file")
    args = ["--codec", str(codec_dir), "--no-progress"]
    assert cli_main(["tokenize", *args, "--input", str(recordings), "--output", str(tmp_path / "tokens")]) == 1
    out = capsys.readouterr()
    assert "1 written" in out.out and "broken.edf" in out.err
    assert [p.name for p in (tmp_path / "tokens").iterdir()] == [EDF.stem + "_tokens.npz"]  # nothing partial left

    assert cli_main(["reconstruct", *args, "--input", str(tmp_path / "tokens"), "--output", str(tmp_path / "recon")]) == 0
    raw = mne.io.read_raw_fif(tmp_path / "recon" / f"{EDF.stem}_recon_raw.fif", verbose=False)
    reference = read_raw(EDF)
    assert raw.info["sfreq"] == reference.info["sfreq"] and raw.ch_names == reference.ch_names
    assert raw.n_times == reference.n_times

    other = Codec.from_preset("tiny", seed=1).save(tmp_path / "other")
    code = cli_main(["reconstruct", "--codec", str(other), "--no-progress", "--input", str(tmp_path / "tokens"),
                     "--output", str(tmp_path / "recon2")])
    assert code == 1 and "not by this codec" in capsys.readouterr().err


# --- damaged tokens files; every file of a batch --------------------------------------------


def _tokens_without_a_codec() -> Tokens:
    return Tokens(
        codes=np.arange(30, dtype=np.int32).reshape(2, 3, 5) % 16, channel_names=("C3..", "C4.."),
        canonical_channel_names=("C3", "C4"), ch_types=("eeg", "eeg"), units=("V", "V"), token_rate=62.5,
        sample_rate=250.0, original_sample_rate=160.0, n_samples=20, original_n_samples=13, codec_id="0" * 16,
        preprocessing={"clip": 10.0, "median": np.zeros(2), "iqr": np.full(2, 1e-5)},
        start_time={"meas_date": None, "first_samp": 0, "offset_s": 0.0}, source="rec.edf",
        dropped_channels=({"channel": "Fz..", "canonical": "FZ", "reason": "flat signal (interquartile range 0)"},),
    )


def test_damaged_tokens_file_is_a_tokens_file_error_naming_it(tmp_path):
    good = _tokens_without_a_codec().save(tmp_path / "good_tokens.npz")
    loaded = Tokens.load(good)
    assert loaded.dropped_channels[0]["canonical"] == "FZ" and loaded.codes.dtype == np.int32
    data = good.read_bytes()
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))

    def npz(**changes) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
        return buf.getvalue()

    def with_meta(**changes) -> bytes:
        return npz(meta=np.array(json.dumps({k: v for k, v in {**meta, **changes}.items() if v is not None})))

    cases = {  # content -> what the message says
        "truncated": (data[: len(data) // 2], "damaged or truncated"),
        "cut_short": (data[:-30], "damaged or truncated"),
        "empty": (b"", "empty"),
        "text": (b"codes: 1 2 3", "not an .npz"),
        "no_codes": (npz(codes=None), "no codes in it"),
        "float_codes": (npz(codes=arrays["codes"].astype(np.float32)), "integer array"),
        "flat_codes": (npz(codes=arrays["codes"][0]), "integer array"),
        "negative_codes": (npz(codes=-arrays["codes"]), "codebook indices"),
        "iqr_length": (npz(iqr=np.ones(3)), "iqr must be 2 finite floats"),
        "median_text": (npz(median=np.array(["a", "b"])), "median must be 2 finite floats"),
        "meta_not_json": (npz(meta=np.array("{")), "damaged or truncated"),
        "other_format": (with_meta(format="something else"), "unknown tokens format"),
        "no_codec_id": (with_meta(codec_id=None), "no 'codec_id'"),
        "rate_text": (with_meta(sample_rate="fast"), "sample_rate is not a number"),
        "names_count": (with_meta(channel_names=["C3.."]), "channel_names has 1 entries for 2 channels"),
        "too_many_samples": (with_meta(n_samples=21), "more than 5 frames of 4 samples"),
        "bad_date": (with_meta(start_time={"meas_date": "yesterday"}), "malformed"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / f"{name}_tokens.npz"
        path.write_bytes(content)
        with pytest.raises(TokensFileError) as e:
            Tokens.load(path)
        assert str(e.value).startswith(f"{path}: ") and words in str(e.value), (name, str(e.value))
        assert isinstance(e.value, ValueError)
    with pytest.raises(TokensFileError, match="no such file"):
        Tokens.load(tmp_path / "absent_tokens.npz")


def test_batch_loop_reports_any_file_failure_and_goes_on():
    def write_one(path: Path) -> Path:
        if path.name == "b":
            raise RuntimeError("a reader failed in an unforeseen way")
        if path.name == "c":
            raise ValueError(f"{path}: not usable")
        return path

    report = _each_file([Path("a"), Path("b"), Path("c"), Path("d")], "test", False, write_one, (ValueError,))
    assert report["written"] == [Path("a"), Path("d")]
    assert report["failed"] == [(Path("b"), "unexpected RuntimeError: a reader failed in an unforeseen way"),
                                (Path("c"), "not usable")]


def test_cli_tokenize_leaves_out_a_nan_channel_and_skips_a_file_with_none_usable(tiny, tmp_path, capsys):
    codec_dir = tiny.save(tmp_path / "codec")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    _array_raw(2, 250.0, 500, seed=1).save(recordings / "good_raw.fif", verbose=False)
    nan = _array_raw(3, 250.0, 500, seed=2)
    nan._data[1, 7:9] = np.nan
    nan.save(recordings / "nan_raw.fif", verbose=False)
    nan._data[:] = np.nan
    nan.save(recordings / "all_nan_raw.fif", verbose=False)

    code = cli_main(["tokenize", "--codec", str(codec_dir), "--no-progress", "--input", str(recordings),
                     "--output", str(tmp_path / "tokens")])
    out = capsys.readouterr()
    assert code == 1 and "2 written" in out.out and "1 skipped" in out.out and "1 channel(s) left out" in out.out
    assert f"dropped channel 'C1' of {recordings / 'nan_raw.fif'}: 2 non-finite" in out.err
    assert f"skipped {recordings / 'all_nan_raw.fif'}: no usable channel" in out.err and "Traceback" not in out.err
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == ["good_raw_tokens.npz", "nan_raw_tokens.npz"]
    tokens = Tokens.load(tmp_path / "tokens" / "nan_raw_tokens.npz")
    assert tokens.channel_names == ("C0", "C2") and [d["channel"] for d in tokens.dropped_channels] == ["C1"]


def test_cli_reconstruct_skips_a_truncated_tokens_file(tiny, tmp_path, capsys):
    """Issue 17, item 4: a folder with one truncated tokens file and two good ones: two outputs,
    one named failure, exit 1 (the truncated file sorts first: the good ones are still done)."""
    codec_dir = tiny.save(tmp_path / "codec")
    folder = tmp_path / "tokens"
    folder.mkdir()
    for name, seed in (("b", 1), ("c", 2)):
        tiny.tokenize(_array_raw(2, 250.0, 500, seed=seed)).save(folder / f"{name}_tokens.npz")
    data = (folder / "b_tokens.npz").read_bytes()
    (folder / "a_tokens.npz").write_bytes(data[: len(data) // 2])

    code = cli_main(["reconstruct", "--codec", str(codec_dir), "--no-progress", "--input", str(folder),
                     "--output", str(tmp_path / "recon")])
    out = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "recon").iterdir()) == ["b_recon_raw.fif", "c_recon_raw.fif"]
    skipped = [line for line in out.err.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {folder / 'a_tokens.npz'}: damaged or truncated tokens file (BadZipFile: File is not a zip file)"]
    assert "2 written" in out.out and "1 skipped" in out.out and "Traceback" not in out.err


# --- existing outputs and the output folder (tokenize / reconstruct) -------------------------


def test_cli_existing_outputs_are_already_done_force_recomputes_and_no_empty_output_folder(tiny, tmp_path, capsys):
    """An output already there is left as it is and counted as already done (exit 0: a re-run on a
    grown corpus does the new recordings only); --force recomputes it; tokens of another quantizer
    count (or codec) in the way are a failure; two inputs with one output name: the second fails;
    a run that writes nothing creates no output folder (nor its parents)."""
    codec_dir = tiny.save(tmp_path / "codec")
    base = ["--codec", str(codec_dir), "--no-progress"]
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "broken.edf").write_text("not an EDF file")
    out = tmp_path / "new" / "tokens"

    def tokenize(*extra):
        code = cli_main(["tokenize", *base, "--input", str(recordings), "--output", str(out), *extra])
        return code, capsys.readouterr()

    code, o = tokenize()  # nothing written: no folder left behind
    assert code == 1 and "0 written" in o.out and "broken.edf" in o.err
    assert not (tmp_path / "new").exists()

    (recordings / "broken.edf").unlink()
    _array_raw(2, 250.0, 500, seed=1).save(recordings / "a_raw.fif", verbose=False)
    assert tokenize()[0] == 0
    a = out / "a_raw_tokens.npz"
    before = a.stat()

    _array_raw(2, 250.0, 500, seed=2).save(recordings / "b_raw.fif", verbose=False)  # the corpus grew
    code, o = tokenize()
    assert code == 0 and "1 written" in o.out and "1 already done" in o.out and "0 skipped" in o.out
    assert f"already done {recordings / 'a_raw.fif'}: {a} exists (use --force to overwrite)" in o.err
    assert (a.stat().st_ino, a.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert sorted(p.name for p in out.iterdir()) == ["a_raw_tokens.npz", "b_raw_tokens.npz"]

    code, o = tokenize("--force")
    assert code == 0 and "2 written" in o.out and "already done" not in o.out and a.stat().st_ino != before.st_ino

    code, o = tokenize("--n-q", "1")  # other tokens in the way: not "done", a failure naming what differs
    assert code == 1 and "2 skipped" in o.out
    assert f"skipped {recordings / 'a_raw.fif'}: {a} exists and holds {tiny.n_q} quantizers, not the 1 asked for " \
           "(use --force to overwrite)" in o.err
    assert _existing_tokens_problem(a, "0" * 16, tiny.n_q) == f"holds tokens of codec {fingerprint(tiny)}, not of this codec {'0' * 16}"
    assert _existing_tokens_problem(a, fingerprint(tiny), tiny.n_q) is None

    (recordings / "sub").mkdir()
    _array_raw(2, 250.0, 500, seed=3).save(recordings / "sub" / "a_raw.fif", verbose=False)  # same output name
    code, o = tokenize()
    assert code == 1 and "2 already done" in o.out and "1 skipped" in o.out
    assert f"skipped {recordings / 'sub' / 'a_raw.fif'}: its output a_raw_tokens.npz is also that of {recordings / 'a_raw.fif'}" in o.err
    (recordings / "sub" / "a_raw.fif").unlink()

    recon = tmp_path / "recon"

    def reconstruct(source=out, output=recon, *extra):
        code = cli_main(["reconstruct", *base, "--input", str(source), "--output", str(output), *extra])
        return code, capsys.readouterr()

    assert reconstruct()[0] == 0
    first = (recon / "a_raw_recon_raw.fif").stat().st_ino
    code, o = reconstruct()
    assert code == 0 and "0 written" in o.out and "2 already done" in o.out and (recon / "a_raw_recon_raw.fif").stat().st_ino == first
    code, o = reconstruct(out, recon, "--force")
    assert code == 0 and "2 written" in o.out and (recon / "a_raw_recon_raw.fif").stat().st_ino != first
    bad = tmp_path / "bad_tokens"
    bad.mkdir()
    (bad / "x_tokens.npz").write_bytes(a.read_bytes()[:100])
    code, o = reconstruct(bad, tmp_path / "recon_none")
    assert code == 1 and "damaged or truncated" in o.err and not (tmp_path / "recon_none").exists()
    (tmp_path / "a_file").write_text("")
    code, o = reconstruct(out, tmp_path / "a_file")
    assert code == 2 and "a_file: exists and is not a directory" in o.err
