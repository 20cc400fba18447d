"""``biocodec-jax report``: the files of a report, and every number in them against a direct computation.

A tiny codec with k-means-initialised codebooks (windows of the bundled PhysioNet EDF S001R04)
reports on 20 s and 4 channels of another subject's recording (S004R04); an ``emg``-preset variant
of the tiny codec at 1 kHz reports on 5 s of the bundled Myo EMG. The codecs are untrained: the
numbers are checked against numpy (and scipy's Welch) computed here from the codec's own
``encode``/``decode``, not against any expected quality, and the quality-vs-bitrate curve is not
assumed to be monotone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import mne
import numpy as np
import pytest
import scipy.signal

from biocodec_jax import Codec, reports
from biocodec_jax.cli import main
from biocodec_jax.config import preset
from biocodec_jax.tokenizer import fingerprint, prepare_recording
from data_pipelines.readers import raw_from_array, read_raw

REPO = Path(__file__).resolve().parents[1]
INIT_EDF = REPO / "data" / "eegmmidb" / "S001" / "S001R04.edf"
EDF = REPO / "data" / "eegmmidb" / "S004" / "S004R04.edf"
MYO = REPO / "tests" / "fixtures" / "myo" / "12345-1" / "0.txt"
CHANNELS = ["C3..", "Cz..", "C4..", "Oz.."]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cropped(path: Path, names: list[str], seconds: float) -> mne.io.BaseRaw:
    raw = read_raw(path)
    return raw.pick(names).crop(tmax=seconds - 1 / raw.info["sfreq"])


def _kmeans_codec(config, init_recording: mne.io.BaseRaw, window: int) -> Codec:
    """``config``'s codec, codebooks by k-means on windows of ``window`` samples of the prepared recording."""
    x = prepare_recording(Codec.from_config(config), init_recording).x
    n = x.shape[1] // window * window
    return Codec.from_config(config, seed=0, init_batch=x[:, :n].reshape(-1, 1, window))


@pytest.fixture(scope="module")
def codec():
    codec = _kmeans_codec(preset("tiny"), _cropped(INIT_EDF, ["Fc5.", "C3..", "Cz..", "P4..", "O1..", "Fp2."], 20.0), 625)
    assert codec.initialized
    return codec


@pytest.fixture(scope="module")
def recording():
    return _cropped(EDF, CHANNELS, 20.0)  # 4 channels x 20 s at 160 Hz


@pytest.fixture(scope="module")
def report(codec, recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = reports.write_report(codec, recording, out, max_plot_channels=3, excerpt_seconds=5.0, source="S004R04 (cropped)")
    return paths, json.loads(paths["json"].read_text())


def direct(codec: Codec, recording, n_q: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, codes [C, K, T'], y): the prepared input, its codes and their decoding, trimmed."""
    x = prepare_recording(codec, recording).x
    codes = np.asarray(codec.encode(x[None])[0])
    y = np.asarray(codec.decode(codes[None, :, :n_q])[0, :, : x.shape[1]])
    return x, codes, y


def direct_si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SI-SDR from its definition: ||a r||^2 / ||e - a r||^2 with a = <e, r> / ||r||^2, zero-mean r and e,
    with the original's eps = 1e-8 (signal_metrics.EPS): it shows at an untrained codec's -44 dB (1e-3 dB)."""
    eps = 1e-8
    r = reference.astype(np.float64) - reference.astype(np.float64).mean()
    e = estimate.astype(np.float64) - estimate.astype(np.float64).mean()
    target = (e @ r) / (r @ r + eps) * r
    return 10 * math.log10((target @ target) / ((e - target) @ (e - target) + eps) + eps)


def direct_band_powers(signal: np.ndarray, sample_rate: float, bands: list) -> np.ndarray:
    """``[band, C]`` powers from scipy's Welch (2-s Hann segments, half overlap) summed over [low, high)."""
    seg = int(min(2 * sample_rate, signal.shape[-1]))
    f, psd = scipy.signal.welch(signal.astype(np.float64), fs=sample_rate, window="hann", nperseg=seg,
                                noverlap=seg // 2, detrend="constant", scaling="density")
    return np.array([psd[:, (f >= lo) & (f < hi)].sum(-1) * (f[1] - f[0]) for lo, hi in bands])


def check_numbers(codec: Codec, recording, results: dict) -> None:
    """Every number of ``results`` (report.json) against a direct computation from ``recording``."""
    x, codes, y = direct(codec, recording)
    c, n = x.shape
    cfg = codec.codec_config
    assert results["recording"]["n_samples"] == n and len(results["channels"]["names"]) == c
    assert results["recording"]["duration_s"] == pytest.approx(n / codec.sample_rate)
    assert results["codec"]["id"] == fingerprint(codec)

    ch = results["channels"]
    corr = [np.corrcoef(x[i], y[i])[0, 1] for i in range(c)]
    sdr = [direct_si_sdr(x[i], y[i]) for i in range(c)]
    np.testing.assert_allclose(ch["correlation"], corr, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ch["si_sdr_db"], sdr, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ch["clipped_fraction"], [np.count_nonzero(np.abs(row) >= 10.0) / n for row in x])
    s = results["summary"]
    assert s["correlation"]["mean"] == pytest.approx(np.mean(corr)) and s["correlation"]["median"] == pytest.approx(np.median(corr))
    assert s["si_sdr_db"]["mean"] == pytest.approx(np.mean(sdr)) and s["si_sdr_db"]["median"] == pytest.approx(np.median(sdr))

    bits = cfg.n_q * math.log2(cfg.codebook_size) * codec.sample_rate / codec.hop_length
    b = results["bitrate"]
    assert b["bps_per_channel"] == pytest.approx(bits) and b["bps_all_channels"] == pytest.approx(c * bits)
    assert b["compression_vs_float32_at_codec_rate"] == pytest.approx(32 * codec.sample_rate / bits)
    orig_rate = results["recording"]["original_sample_rate_hz"]
    assert b["compression_vs_int16_at_original_rate"] == pytest.approx(16 * orig_rate / bits)

    cb = results["codebooks"]
    for k in range(cfg.n_q):
        values, counts = np.unique(codes[:, k], return_counts=True)
        p = counts / counts.sum()
        assert cb["used_codes"][k] == len(values) and cb["usage"][k] == pytest.approx(len(values) / cfg.codebook_size)
        assert cb["perplexity"][k] == pytest.approx(math.exp(-np.sum(p * np.log(p))))
        assert sum(cb["counts"][k]) == c * codes.shape[-1]

    bands = results["bands"]
    edges = bands["edges_hz"]
    p_x, p_y, p_e = (direct_band_powers(s, codec.sample_rate, edges) for s in (x, y, y - x))
    np.testing.assert_allclose(bands["input_power"], p_x, rtol=1e-6)
    np.testing.assert_allclose(bands["error_power"], p_e, rtol=1e-6)
    np.testing.assert_allclose(bands["power_bias_db"], 10 * np.log10(p_y / p_x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(bands["error_to_signal_db"], 10 * np.log10(p_e / p_x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(bands["error_to_signal_db_mean"], np.mean(10 * np.log10(p_e / p_x), axis=1), atol=1e-6)
    np.testing.assert_allclose(bands["power_bias_db_mean"], np.mean(10 * np.log10(p_y / p_x), axis=1), atol=1e-6)

    q = results["quality_vs_bitrate"]
    assert q["n_q"] == list(range(1, cfg.n_q + 1))
    np.testing.assert_allclose(q["bitrate_bps_per_channel"], [k * bits / cfg.n_q for k in q["n_q"]])
    # All quantizers: exactly the main metrics. One quantizer: decoded here from the first codes.
    assert q["correlation_mean"][-1] == s["correlation"]["mean"] and q["si_sdr_db_median"][-1] == s["si_sdr_db"]["median"]
    _, _, y1 = direct(codec, recording, n_q=1)
    assert q["correlation_mean"][0] == pytest.approx(np.mean([np.corrcoef(x[i], y1[i])[0, 1] for i in range(c)]))
    assert q["si_sdr_db_median"][0] == pytest.approx(np.median([direct_si_sdr(x[i], y1[i]) for i in range(c)]))


def test_files(report):
    paths, results = report
    out = paths["markdown"].parent
    assert paths["json"] == out / "report.json" and paths["markdown"] == out / "report.md"
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(f"{n}.png" for n in reports.FIGURES)
    md = paths["markdown"].read_text(encoding="utf-8")
    import matplotlib.image

    for name in reports.FIGURES:
        png = paths[name]
        assert png == out / "figures" / f"{name}.png" and png.read_bytes().startswith(PNG_MAGIC)
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0
        assert f"](figures/{name}.png)" in md  # linked relatively
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
    json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert results["recording"]["channels"] == ["C3", "CZ", "C4", "OZ"] and results["recording"]["source"] == "S004R04 (cropped)"


def test_numbers_match_direct_computation(codec, recording, report):
    check_numbers(codec, recording, report[1])


def _row(md: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row starting with ``first_cell``."""
    match = re.search(rf"^\| {re.escape(first_cell)} \|(.*)\|$", md, flags=re.M)
    assert match, f"no row {first_cell!r}"
    return [cell.strip() for cell in match.group(1).split("|")]


def test_markdown_matches_json(report):
    paths, r = report
    md = paths["markdown"].read_text(encoding="utf-8")
    s = r["summary"]
    assert _row(md, "correlation") == [f"{s['correlation']['mean']:.3f}", f"{s['correlation']['median']:.3f}"]
    assert _row(md, "SI-SDR (dB)") == [f"{s['si_sdr_db']['mean']:.2f}", f"{s['si_sdr_db']['median']:.2f}"]
    ch, bands = r["channels"], r["bands"]
    for i, name in enumerate(ch["names"]):
        cells = [float(v) for v in _row(md, name)]
        n_bands = len(bands["names"])
        assert cells[0] == round(ch["correlation"][i], 3) and cells[1] == round(ch["si_sdr_db"][i], 2)
        assert cells[2] == round(100 * ch["clipped_fraction"][i], 2)
        assert cells[3 : 3 + n_bands] == [round(row[i], 2) for row in bands["error_to_signal_db"]]
        assert cells[3 + n_bands :] == [round(row[i], 2) for row in bands["power_bias_db"]]
    for j, band in enumerate(bands["names"]):
        cells = _row(md, band)
        assert [float(v) for v in cells[1:]] == [round(bands["power_bias_db_mean"][j], 2), round(bands["error_to_signal_db_mean"][j], 2)]
    for k, ppl in enumerate(r["codebooks"]["perplexity"]):
        assert float(_row(md, f"q{k + 1}")[2]) == round(ppl, 2)
    q = r["quality_vs_bitrate"]
    for k in q["n_q"]:
        cells = [float(v) for v in _row(md, str(k))]
        assert cells == [round(q["bitrate_bps_per_channel"][k - 1], 1), round(q["correlation_mean"][k - 1], 3),
                         round(q["correlation_median"][k - 1], 3), round(q["si_sdr_db_mean"][k - 1], 2),
                         round(q["si_sdr_db_median"][k - 1], 2)]
    assert r["codec"]["id"] in md


def test_failure_leaves_no_report(codec, recording, tmp_path, monkeypatch):
    reports.write_report(codec, recording, tmp_path, max_plot_channels=1, excerpt_seconds=1.0)
    (tmp_path / "notes.txt").write_text("mine")

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(reports.figures, "plot_quality_vs_bitrate", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        reports.write_report(codec, recording, tmp_path, max_plot_channels=1, excerpt_seconds=1.0)
    # The old report is intact (nothing is moved into place before everything is drawn and written),
    # nothing of the failed one is left, and files that are not the report's are untouched.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "notes.txt", "report.json", "report.md"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli(codec, recording, report, tmp_path, monkeypatch, capsys):
    codec_dir = codec.save(tmp_path / "codec")
    fif = tmp_path / "S004R04_crop_raw.fif"
    recording.save(fif, fmt="double", verbose=False)  # float64: the same numbers as the in-memory recording
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--codec", str(codec_dir), "--input", str(fif), "--channels", "2"]) == 0
    out = tmp_path / "S004R04_crop_raw_report"  # the default: ./<recording name>_report
    assert capsys.readouterr().out.startswith("S004R04_crop_raw_report/report.md: report on ")
    results = json.loads((out / "report.json").read_text())
    assert results["codec"]["id"] == report[1]["codec"]["id"] and results["codec"]["source"] == str(codec_dir)
    np.testing.assert_allclose(results["channels"]["correlation"], report[1]["channels"]["correlation"], rtol=1e-6)
    assert all((out / "figures" / f"{name}.png").stat().st_size > 0 for name in reports.FIGURES)


def test_cli_bad_inputs(codec, tmp_path, capsys):
    codec_dir = codec.save(tmp_path / "codec")
    text = tmp_path / "notes.txt"
    text.write_text("not a recording\n")
    short = tmp_path / "short_raw.fif"
    info = mne.create_info(["C3", "C4"], 160.0, "eeg")
    mne.io.RawArray(np.random.default_rng(0).normal(scale=1e-5, size=(2, 2)), info, verbose=False).save(short, verbose=False)
    for bad, reason in ((text, "unknown recording format"), (short, "too short"), (tmp_path / "missing.edf", "no such file")):
        out = tmp_path / f"{bad.name}_out"
        assert main(["report", "--codec", str(codec_dir), "--input", str(bad), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(bad) in err and reason in err and err.count("\n") == 1, err
        assert not out.exists()
    assert main(["report", "--codec", str(tmp_path / "nothing"), "--input", str(short)]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err


def _myo_in_volts() -> mne.io.BaseRaw:
    """The Myo fixture's numbers as a RawArray of ``emg`` channels in MNE's default unit, volts."""
    table = np.loadtxt(MYO, delimiter=",")
    return raw_from_array(table[:, :8].T, [f"EMG{i}" for i in range(1, 9)], 200.0, "emg", MYO)


@pytest.fixture(scope="module")
def emg_codec():
    """An ``emg``-preset codec (the tiny architecture at 1 kHz), codebooks by k-means on Myo EMG."""
    tiny = preset("tiny")
    config = dataclasses.replace(tiny, preset="emg", codec=dataclasses.replace(tiny.codec, sample_rate=1000))
    return _kmeans_codec(config, _myo_in_volts().crop(tmin=10.0, tmax=20.0 - 1 / 200), 1000)


def test_emg(emg_codec, tmp_path):
    """An ``emg``-preset codec (the tiny architecture at 1 kHz): EMG bands, cut at the Myo's 100 Hz Nyquist."""
    codec = emg_codec
    recording = _myo_in_volts().pick(["EMG1", "EMG5"]).crop(tmax=5.0 - 1 / 200)
    paths = reports.write_report(codec, recording, tmp_path, max_plot_channels=2, excerpt_seconds=2.0)
    results = json.loads(paths["json"].read_text())
    assert results["recording"]["modality"] == "emg" and results["bands"]["band_limit_hz"] == 100.0
    assert results["bands"]["names"] == ["10-50 Hz", "50-100 Hz"]
    assert results["bands"]["edges_hz"] == [[10.0, 50.0], [50.0, 100.0]]
    check_numbers(codec, recording, results)


def test_analyze_quantizer_counts(codec, recording, report):
    results = reports.analyze(codec, recording, n_qs=[1])  # the full n_q is always measured too
    json.dumps(results, allow_nan=False)  # plain JSON: lists and Python numbers, no NaN
    q = results["quality_vs_bitrate"]
    assert q["n_q"] == [1, codec.n_q] and q["correlation_mean"][-1] == results["summary"]["correlation"]["mean"]
    assert results["channels"] == report[1]["channels"]
    with pytest.raises(ValueError, match=r"between 1 and 3; got 4"):
        reports.analyze(codec, recording, n_qs=[4])


def test_units_are_the_recordings_myo_counts_unscaled_volts_in_microvolts(emg_codec):
    """The unit comes from ``info["chs"][i]["unit"]``, not from the channel type: the Myo adapter's
    ADC counts (FIFF_UNIT_NONE) are reported as "AU" and shown unscaled; the same numbers declared
    in volts are "V", shown in µV (a factor 1e6, 1e12 on the PSD)."""
    from mne.io.constants import FIFF

    from data_pipelines.datasets.myo import MyoDataset

    root = MYO.parents[1]
    (ref,) = [r for r in MyoDataset().find(root)[0] if r.path == "12345-1/0.txt"]
    counts = MyoDataset().read(root, ref).pick(["EMG1", "EMG5"]).crop(tmax=5.0 - 1 / 200)
    assert {ch["unit"] for ch in counts.info["chs"]} == {FIFF.FIFF_UNIT_NONE}
    volts = _myo_in_volts().pick(["EMG1", "EMG5"]).crop(tmax=5.0 - 1 / 200)
    np.testing.assert_array_equal(counts.get_data(), volts.get_data())

    in_counts = reports.analyze(emg_codec, counts, n_qs=[emg_codec.n_q])
    in_volts = reports.analyze(emg_codec, volts, n_qs=[emg_codec.n_q])
    r = in_counts["recording"]
    assert r["unit"] == "AU" and r["units"] == ["AU", "AU"] and in_counts["psd"]["unit"] == "AU²/Hz"
    assert in_volts["recording"]["unit"] == "V" and in_volts["psd"]["unit"] == "µV²/Hz"
    assert in_counts["channels"] == in_volts["channels"]  # the same numbers, only the unit differs
    np.testing.assert_allclose(in_counts["psd"]["input_mean"], np.asarray(in_volts["psd"]["input_mean"]) / 1e12, rtol=1e-9)
    # Counts are not scaled: the PSD of the input integrates to the variance of the counts (up to the
    # resampling to 1 kHz, which keeps the power of a 200-Hz recording's band).
    x = prepare_recording(emg_codec, counts).x.astype(np.float64) * np.asarray(r["iqr"])[:, None]
    df = in_counts["psd"]["freqs_hz"][1] - in_counts["psd"]["freqs_hz"][0]
    assert np.sum(in_counts["psd"]["input_mean"]) * df == pytest.approx(np.mean(np.var(x, axis=1)), rel=0.2)
    scale, unit = reports.display_scale(reports.reconstruct_recording(emg_codec, counts).prepared)
    assert unit == "AU" and np.all(scale == 1.0)
    assert "values in AU (no physical unit" in reports.markdown(in_counts) and "values in V" in reports.markdown(in_volts)


def test_dropped_channels_are_named_in_the_report(codec, recording, tmp_path):
    """A NaN channel and a flat one are left out of the measurements (as tokenize leaves them out):
    report.json and report.md say which and why."""
    bad = recording.copy()
    bad._data[1, 50:60] = np.nan  # Cz..
    bad._data[3] = 4e-6  # Oz.., flat
    paths = reports.write_report(codec, bad, tmp_path, max_plot_channels=1, excerpt_seconds=1.0)
    results = json.loads(paths["json"].read_text())
    assert results["recording"]["channels"] == ["C3", "C4"] and results["channels"]["names"] == ["C3", "C4"]
    assert results["recording"]["dropped_channels"] == [
        {"channel": "Cz..", "canonical": "CZ", "reason": "10 non-finite (NaN/Inf) sample(s)"},
        {"channel": "Oz..", "canonical": "OZ", "reason": "flat signal (interquartile range 0)"},
    ]
    md = paths["markdown"].read_text(encoding="utf-8")
    assert ("- left out: 2 EEG channel(s) that cannot be coded, not measured in this report: "
            "`Cz..` (10 non-finite (NaN/Inf) sample(s)); `Oz..` (flat signal (interquartile range 0))") in md
    assert "left out" not in reports.markdown({**results, "recording": {**results["recording"], "dropped_channels": []}})
