"""EEGMMI's gaze confound option (``--ocular``): the frontal/peri-ocular channels dropped, or EOG-like
components regressed out, on the bundled recordings (data/eegmmidb: S001-S004, run R04)."""

from pathlib import Path

import numpy as np
import pytest

from experiments.tasks import eegmmi
from experiments.tasks.common import build_parser

BUNDLED_EEGMMI = Path(__file__).resolve().parents[1] / "data" / "eegmmidb"
RUN = BUNDLED_EEGMMI / "S001" / "S001R04.edf"
# 10-10 sites of the frontal rows and the lateral sites nearest the eyes, canonical names.
FRONTAL_PREFIXES = ("FP", "AF")


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_ocular_channels_are_the_frontal_rows_and_exist_in_the_dataset():
    assert set(eegmmi.OCULAR_CHANNELS) <= set(eegmmi.CHANNEL_NAMES) and len(eegmmi.OCULAR_CHANNELS) == 21
    kept = eegmmi.channels_kept("drop")
    assert len(kept) == 43 and kept == eegmmi.channels_kept("regress")
    assert not [c for c in kept if c.startswith(FRONTAL_PREFIXES) or (c.startswith("F") and c[1:].isdigit())]
    assert not {"FZ", "FT7", "FT8", "T9", "T10"} & set(kept)
    assert [c for c in eegmmi.CHANNEL_NAMES if c in kept] == list(kept)  # the dataset's order
    assert eegmmi.channels_kept("keep") == eegmmi.CHANNEL_NAMES
    with pytest.raises(ValueError, match="unknown ocular mode 'blink'; choose one of keep, drop, regress"):
        eegmmi.channels_kept("blink")


def test_drop_leaves_no_frontal_channel_and_records_it():
    data = eegmmi.load(BUNDLED_EEGMMI, 250, ocular="drop")
    assert data.channel_names == eegmmi.channels_kept("drop") and data.x.shape == (60, 43, 1000)
    assert not set(data.channel_names) & set(eegmmi.OCULAR_CHANNELS)
    assert data.preprocessing["ocular"] == "drop"
    assert data.preprocessing["ocular_channels_removed"] == list(eegmmi.OCULAR_CHANNELS)
    keep = eegmmi.load(BUNDLED_EEGMMI, 250)  # the default: every channel, as the original
    assert keep.preprocessing["ocular"] == "keep" and keep.channel_names == eegmmi.CHANNEL_NAMES
    np.testing.assert_array_equal(data.y, keep.y)
    # Dropping channels changes nothing else: the kept channels' windows are the same.
    index = [eegmmi.CHANNEL_NAMES.index(c) for c in data.channel_names]
    np.testing.assert_allclose(data.x, keep.x[:, index], atol=1e-5)


def test_regress_leaves_remaining_channels_uncorrelated_with_the_eog_proxies():
    raw = eegmmi.read_run(RUN, 250)  # keep: all 64 channels, band-passed and resampled
    x = raw.get_data()
    veog, heog = eegmmi.eog_proxies(x, raw.ch_names)
    np.testing.assert_allclose(heog, x[raw.ch_names.index("F7")] - x[raw.ch_names.index("F8")])
    kept = [raw.ch_names.index(c) for c in eegmmi.channels_kept("drop")]
    # Before: channels next to the dropped ones still follow the proxies (so the test can fail).
    assert max(abs(corr(x[i], heog)) for i in kept) > 0.3 and max(abs(corr(x[i], veog)) for i in kept) > 0.3

    regressed = eegmmi.read_run(RUN, 250, "regress")
    assert regressed.ch_names == list(eegmmi.channels_kept("regress"))
    y = regressed.get_data()
    assert max(abs(corr(row, heog)) for row in y) < 1e-6
    assert max(abs(corr(row, veog)) for row in y) < 1e-6
    # Only the proxies' share is removed: each channel is its least-squares residual (its mean kept).
    t7 = x[raw.ch_names.index("T7")]
    design = np.column_stack([veog, heog, np.ones_like(veog)])
    coef, *_ = np.linalg.lstsq(design, t7, rcond=None)
    proxies = np.stack([veog, heog])
    expected = t7 - coef[:2] @ (proxies - proxies.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(y[regressed.ch_names.index("T7")], expected, rtol=0, atol=1e-6 * np.abs(t7).max())


def test_regress_is_recorded_and_windows_keep_their_labels():
    data = eegmmi.load(BUNDLED_EEGMMI, 250, ocular="regress")
    assert data.x.shape == (60, 43, 1000) and data.preprocessing["ocular"] == "regress"
    assert "F7 - F8" in data.preprocessing["ocular_regression"]
    assert data.preprocessing["normalisation_scope"] == "window"
    assert np.bincount(data.y).tolist() == [31, 29]
    with pytest.raises(ValueError, match="unknown ocular mode"):
        eegmmi.load(BUNDLED_EEGMMI, 250, ocular="ica")


def test_ocular_is_a_command_line_option_that_reaches_load():
    parser = build_parser(eegmmi)
    args = parser.parse_args(["--data", "d", "--ocular", "regress"])
    assert set(args.task_options) == {"ocular", "include_real_movement"}
    assert args.ocular == "regress" and args.include_real_movement is False
    assert parser.parse_args(["--data", "d"]).ocular == "keep"
    help_text = parser.format_help()
    assert "--ocular {keep,drop,regress}" in help_text
    for words in ("keep = all 64 channels", "drop = remove the 21", "HEOG = F7 - F8"):
        assert words in " ".join(help_text.split())
