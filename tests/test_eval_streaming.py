"""Bounded memory at corpus scale: windows on disk (WindowStore), codec features streamed into a
cache directory, probe features and an out-of-core linear probe over memmaps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biocodec_jax.evaluation.dataset import DatasetError, LabelledWindows, NpyAppender, WindowStore, iter_rows, take_rows
from biocodec_jax.evaluation.linear_probe import LinearProbeConfig, Rows, fit_linear_probe, probe_features
from biocodec_jax.evaluation.metrics import balanced_accuracy

RATE = 250.0


def recordings(n=5, windows=3, channels=2, samples=64, seed=0):
    """``n`` recordings of ``windows`` windows each: (windows, label, subject, recording)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    out = []
    for r in range(n):
        y = r % 2
        x = np.sin(2 * np.pi * (4 + 8 * y) * t + rng.uniform(0, 6.28, (windows, channels, 1)))
        out.append(((x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32), y, f"S{r // 2}", f"S{r // 2}_r{r}"))
    return out


def stored(tmp_path, recs, name="toy"):
    store = WindowStore(tmp_path / "windows", recs[0][0].shape[1], recs[0][0].shape[2])
    for x, y, subject, recording in recs:
        store.append(x, y=y, subjects=subject, recordings=recording, segments=np.arange(len(x)) // 2,
                     partitions="train" if subject != "S0" else "eval")
    return store.finish(name, ("a", "b"), [f"ch{c}" for c in range(recs[0][0].shape[1])], RATE, {"note": "synthetic"})


def in_memory(recs, name="toy"):
    n = [len(x) for x, *_ in recs]
    return LabelledWindows.build(
        name, np.concatenate([x for x, *_ in recs]), np.repeat([r[1] for r in recs], n), np.repeat([r[2] for r in recs], n),
        np.repeat([r[3] for r in recs], n), ("a", "b"), [f"ch{c}" for c in range(recs[0][0].shape[1])], RATE,
        {"note": "synthetic"}, segments=np.concatenate([np.arange(k) // 2 for k in n]),
        partitions=np.repeat(["train" if r[2] != "S0" else "eval" for r in recs], n))


# --- windows on disk -------------------------------------------------------------------------


def test_store_equals_the_in_memory_build(tmp_path):
    recs = recordings()
    disk, memory = stored(tmp_path, recs), in_memory(recs)
    assert isinstance(disk.x, np.memmap) and not disk.x.flags.writeable
    assert disk.x.dtype == np.float32 and disk.x.shape == memory.x.shape == (15, 2, 64)
    np.testing.assert_array_equal(disk.x, memory.x)
    for what in ("y", "subjects", "recordings", "segments", "partitions"):
        np.testing.assert_array_equal(getattr(disk, what), getattr(memory, what))
    assert disk.y.dtype == np.int64 and disk.sessions is None and disk.repetitions is None
    assert disk.fingerprint() == memory.fingerprint()  # the same bytes hashed chunk by chunk
    np.testing.assert_array_equal(disk.subset(np.array([7, 1])).x, memory.x[[7, 1]])
    files = sorted(p.name for p in (tmp_path / "windows").iterdir())
    assert len(files) == 1 and files[0].startswith("windows-") and files[0].endswith(".npy")  # no .part left


def test_store_refuses_bad_windows_naming_the_recording(tmp_path):
    store = WindowStore(tmp_path, 2, 8)
    bad = np.zeros((2, 2, 8), np.float32)
    bad[1, 0, 3] = np.nan
    with pytest.raises(DatasetError, match="non-finite values in windows of rec7"):
        store.append(bad, y=0, subjects="s", recordings="rec7")
    with pytest.raises(DatasetError, match=r"windows of rec8 are \(3, 8\); the store holds \(2, 8\)"):
        store.append(np.zeros((1, 3, 8)), y=0, subjects="s", recordings="rec8")
    store.append(np.zeros((1, 2, 8)), y=0, subjects="s", recordings="rec9", segments=[0])
    with pytest.raises(DatasetError, match="segments given for earlier windows but not for rec10"):
        store.append(np.zeros((1, 2, 8)), y=0, subjects="s", recordings="rec10")
    store.abort()
    assert not list(tmp_path.glob("windows-*"))
    with pytest.raises(DatasetError, match="t: no labelled windows"):
        WindowStore(tmp_path, 2, 8).finish("t", ("a",), ("c1", "c2"), RATE)


def test_chunked_reads_follow_any_index_and_checks_name_the_recording(tmp_path):
    recs = recordings(n=4)
    disk = stored(tmp_path, recs)
    index = np.array([11, 0, 5, 5, 3])
    np.testing.assert_array_equal(take_rows(disk.x, index, chunk_bytes=600), np.asarray(disk.x)[index])
    seen = np.zeros(len(index), int)
    for where, rows in iter_rows(disk.x, index, chunk_bytes=600):  # 1 row per chunk: every row read alone
        np.testing.assert_array_equal(rows, np.asarray(disk.x)[index[where]])
        seen[where] += 1
    assert seen.tolist() == [1] * 5
    x = np.asarray(disk.x).copy()
    x[10, 1, 2] = np.inf
    path = NpyAppender(tmp_path / "bad.npy", x.shape[1:], np.float32)
    path.append(x)
    bad = np.load(path.close(), mmap_mode="r")
    with pytest.raises(DatasetError, match="non-finite values in windows of S1_r3"):
        LabelledWindows(disk.name, bad, disk.y, disk.subjects, disk.recordings, disk.class_names, disk.channel_names, RATE)


def test_tuab_windows_are_normalised_per_window():
    from experiments.tasks.tuab import CLIP, normalise_windows

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 500)) * 7 + 3
    x[1, 0] = 0.25  # a channel flat in one window
    out, flat = normalise_windows(x.astype(np.float32))
    assert flat == 1 and np.all(out[1, 0] == 0) and out.dtype == np.float32 and np.abs(out).max() <= CLIP
    q25, median, q75 = np.percentile(out[[0, 2]], [25, 50, 75], axis=-1)
    np.testing.assert_allclose(median, 0, atol=1e-6)
    np.testing.assert_allclose(q75 - q25, 1, rtol=1e-5)
    # A change of units per channel (the recording's own scaling) changes nothing: no file statistic remains.
    again, _ = normalise_windows((x * 40.0 - 11.0).astype(np.float32))
    np.testing.assert_allclose(again, out, atol=1e-4)


# --- codec features --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_codec():
    from biocodec_jax import Codec

    x = np.concatenate([r[0] for r in recordings(n=4)])
    return Codec.from_preset("tiny", seed=0, init_batch=x.reshape(-1, 1, x.shape[-1])[:16])


def test_streamed_cache_equals_in_memory_features(tiny_codec, tmp_path):
    from biocodec_jax.evaluation.features import codec_features, compute_features

    recs = recordings(n=6, windows=30)  # 180 windows x 2 channels: two batches of items
    disk, memory = stored(tmp_path, recs), in_memory(recs)
    direct = compute_features(tiny_codec, memory)
    assert not isinstance(direct.codes, np.memmap) and direct.directory is None
    cached = codec_features(tiny_codec, disk, tmp_path / "cache")
    assert isinstance(cached.codes, np.memmap) and isinstance(cached.pooled, np.memmap)
    assert cached.codes.dtype == np.int16 and cached.codes.shape == direct.codes.shape == (180, 2, 16, tiny_codec.n_q)
    np.testing.assert_array_equal(cached.codes, direct.codes)
    np.testing.assert_array_equal(cached.pooled, direct.pooled)
    (directory,) = (tmp_path / "cache").iterdir()
    assert directory == cached.directory and directory.name == f"toy-{disk.fingerprint()}-codec{cached.codec_id}"
    assert sorted(p.name for p in directory.iterdir()) == ["codes.npy", "complete.json", "pooled.npy"]
    facts = json.loads((directory / "complete.json").read_text())
    assert facts["codes_shape"] == [180, 2, 16, tiny_codec.n_q] and facts["codec_id"] == cached.codec_id
    # The in-memory dataset has the same fingerprint: it reads the same cache.
    again = codec_features(tiny_codec, memory, tmp_path / "cache")
    assert again.directory == directory
    np.testing.assert_array_equal(again.pooled, direct.pooled)
    # Without a cache, memmapped windows give memmapped features in a temporary directory.
    temporary = codec_features(tiny_codec, disk)
    assert isinstance(temporary.codes, np.memmap) and temporary.directory != directory
    np.testing.assert_array_equal(temporary.codes, direct.codes)

    # Probe features: a view of the pooled memmap, or histograms computed chunk by chunk to a file.
    embedding = probe_features(cached, "embedding")
    assert isinstance(embedding, np.memmap) and embedding.shape == (180, 2 * direct.pooled.shape[-1])
    np.testing.assert_array_equal(embedding, probe_features(direct, "embedding"))
    hist = probe_features(cached, "histogram", tiny_codec.codec_config.codebook_size)
    assert isinstance(hist, np.memmap) and (directory / f"probe-histogram-{tiny_codec.codec_config.codebook_size}.npy").is_file()
    np.testing.assert_array_equal(hist, probe_features(direct, "histogram", tiny_codec.codec_config.codebook_size))
    np.testing.assert_allclose(np.asarray(hist).sum(1), tiny_codec.n_q, rtol=1e-6)  # a histogram per quantizer


def test_a_half_written_or_killed_cache_is_recomputed(tiny_codec, tmp_path, monkeypatch):
    from biocodec_jax.evaluation import features as features_lib

    disk = stored(tmp_path, recordings(n=6, windows=30))  # 360 items: two batches
    cache = tmp_path / "cache"
    good = features_lib.codec_features(tiny_codec, disk, cache)
    codes, pooled = np.array(good.codes), np.array(good.pooled)
    directory = good.directory
    del good

    # A run killed while coding: nothing under the cache's name, its work directory removed.
    calls = []

    def dying(*args):
        for i, batch in enumerate(original(*args)):
            calls.append(i)
            if i == 0:
                yield batch
            else:
                raise KeyboardInterrupt

    original = features_lib._batches
    monkeypatch.setattr(features_lib, "_batches", dying)
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        features_lib.codec_features(tiny_codec, disk, other)
    assert calls == [0, 1] and not list(other.iterdir())
    monkeypatch.setattr(features_lib, "_batches", original)

    # A directory without its complete.json (a copy cut short, a run of an older version) is recomputed.
    (directory / "complete.json").unlink()
    with open(directory / "codes.npy", "r+b") as f:
        f.truncate(200)
    again = features_lib.codec_features(tiny_codec, disk, cache)
    np.testing.assert_array_equal(again.codes, codes)
    np.testing.assert_array_equal(again.pooled, pooled)
    assert (directory / "complete.json").is_file()
    # complete.json that disagrees with the files: recomputed too.
    facts = json.loads((directory / "complete.json").read_text())
    (directory / "complete.json").write_text(json.dumps({**facts, "codes_shape": [1, 2, 3, 4]}))
    np.testing.assert_array_equal(features_lib.codec_features(tiny_codec, disk, cache).codes, codes)
    assert json.loads((directory / "complete.json").read_text())["codes_shape"] == list(codes.shape)


# --- linear probe ----------------------------------------------------------------------------


def separable(tmp_path, n=4000, f=24, seed=0):
    """Features stored by class (as TUAB's windows are), classes 70/30, shifted along a direction."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) >= 0.7 * n).astype(np.int64)
    x = (rng.standard_normal((n, f)) * 3 + 5 + 0.8 * np.outer(2 * y - 1, rng.standard_normal(f))).astype(np.float32)
    writer = NpyAppender(tmp_path / "features.npy", (f,), np.float32)
    writer.append(x)
    return np.load(writer.close(), mmap_mode="r"), x, y


def test_probe_on_rows_of_a_memmap_equals_the_in_memory_probe(tmp_path):
    mm, x, y = separable(tmp_path)
    tr, va, te = np.arange(0, 4000, 2), np.arange(1, 4000, 4), np.arange(3, 4000, 4)
    on_rows = fit_linear_probe(Rows(mm, tr), y[tr], Rows(mm, va), y[va], 2, seed=0)
    in_memory = fit_linear_probe(x[tr], y[tr], x[va], y[va], 2, seed=0)
    assert not on_rows.out_of_core and on_rows.c == in_memory.c and on_rows.history == in_memory.history
    np.testing.assert_array_equal(on_rows.predict_proba(Rows(mm, te)), in_memory.predict_proba(x[te]))


def test_out_of_core_probe_learns_separable_features(tmp_path):
    mm, x, y = separable(tmp_path)
    tr, va, te = np.arange(0, 4000, 2), np.arange(1, 4000, 4), np.arange(3, 4000, 4)
    config = LinearProbeConfig(memory_budget_mb=0.05, sgd_chunk_mb=0.1, sgd_epochs=3)  # 2000 x 24 floats = 0.18 MB
    fitted = fit_linear_probe(Rows(mm, tr), y[tr], Rows(mm, va), y[va], 2, config, seed=0)
    assert fitted.out_of_core and [h["C"] for h in fitted.history] == list(config.c_grid)
    assert [h["alpha"] for h in fitted.history] == pytest.approx([1 / (c * len(tr)) for c in config.c_grid])
    exact = fit_linear_probe(x[tr], y[tr], x[va], y[va], 2, seed=0)
    exact_score = balanced_accuracy(y[te], exact.predict_proba(x[te]).argmax(1))
    score = balanced_accuracy(y[te], fitted.predict_proba(Rows(mm, te)).argmax(1))
    assert score > 0.85 and score > exact_score - 0.03, (score, exact_score)
    # A plain array over the budget goes the same way.
    assert fit_linear_probe(x[tr], y[tr], x[va], y[va], 2, config, seed=0).out_of_core
    with pytest.raises(DatasetError, match=r"class\(es\) \[1\] absent from the training labels"):
        fit_linear_probe(Rows(mm, tr[:100]), y[tr[:100]], Rows(mm, va), y[va], 2, config)
