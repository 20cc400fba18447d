"""A labelled dataset through the frozen codec: codes and pooled embeddings, cached on disk.

Every electrode is coded as its own single-channel sequence, as the original does for its
downstream tasks. One pass of the encoder gives both what the token classifier reads (the codes,
``[N, C, T', K]``) and what the linear probe reads (the encoder output averaged over time,
``[N, C, D]``), :meth:`Codec.encode_with_embeddings`.

The windows are read and coded in batches and the results written batch by batch to ``.npy`` files
(:class:`~biocodec_jax.evaluation.dataset.NpyAppender`), returned as read-only memmaps: memory holds
one batch, whatever the corpus's size. The cache is a directory
``<cache>/<dataset>-<dataset fingerprint>-codec<codec fingerprint>/`` keyed by the codec
(:meth:`Codec.fingerprint`: configuration and every weight) and by the dataset (windows, labels and
preprocessing), so changing either recomputes it. It holds ``codes.npy``, ``pooled.npy`` and, written
last, ``complete.json`` (shapes and keys); it is written under another name and renamed when
complete, so a killed run never leaves a directory that looks complete, and a directory without a
valid ``complete.json`` is recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from biocodec_jax.codec import Codec
from biocodec_jax.evaluation.dataset import LabelledWindows, NpyAppender, read_rows

log = logging.getLogger(__name__)

ITEMS_PER_BATCH = 256  # single-channel items per compiled call (one shape, padded)


@dataclass(frozen=True)
class CodecFeatures:
    """``codes`` int16 ``[N, C, T', K]`` and ``pooled`` float32 ``[N, C, D]`` of one dataset.

    In memory, or read-only memmaps of ``.npy`` files in ``directory`` (the cache, or a temporary
    directory deleted with this object); derived features (the probe's histograms) are cached there too.
    """

    codes: np.ndarray
    pooled: np.ndarray
    codec_id: str
    directory: Path | None = None

    def subset(self, index: np.ndarray) -> "CodecFeatures":
        """The features of the windows at ``index``, in memory."""
        return CodecFeatures(np.asarray(self.codes[index]), np.asarray(self.pooled[index]), self.codec_id)


def _check(codec: Codec, data: LabelledWindows) -> None:
    if abs(data.sample_rate - codec.sample_rate) > 1e-6:
        raise ValueError(f"{data.name}: windows are at {data.sample_rate:g} Hz but the codec codes {codec.sample_rate} Hz; "
                         "load the task with the codec's sample rate")
    if not codec.initialized:
        raise ValueError("the codec's codebooks were never initialised (k-means); load a trained codec")


def _batches(codec: Codec, data: LabelledWindows, progress: bool):
    """``(codes int16 [m, T', K], pooled float32 [m, D])`` of consecutive single-channel items (window
    by window, channel by channel), ``max(ITEMS_PER_BATCH, C)`` items per compiled call; the items
    are read from ``data.x`` one batch at a time."""
    n, c, t = data.x.shape
    items = data.x.reshape(n * c, t)  # a view (of the memmap too)
    chunk = max(ITEMS_PER_BATCH, c)
    for start in tqdm(range(0, len(items), chunk), desc=f"coding {data.name}", unit="batch",
                      disable=not progress, mininterval=5):
        batch = read_rows(items, start, start + chunk)
        pad = chunk - len(batch)
        if pad:  # one compiled shape for every batch
            batch = np.concatenate([batch, np.zeros((pad, t), batch.dtype)])
        k, p = codec.encode_with_embeddings(jnp.asarray(batch)[:, None], pool=True)  # [chunk, 1, K, T'], [chunk, 1, D]
        yield (np.asarray(jnp.swapaxes(k[: chunk - pad, 0], 1, 2), dtype=np.int16),  # [m, T', K]
               np.asarray(p[: chunk - pad, 0], dtype=np.float32))


def compute_features(codec: Codec, data: LabelledWindows, progress: bool = False,
                     out_dir: str | Path | None = None) -> CodecFeatures:
    """Encode every window of ``data`` (no cache). The windows must be at the codec's rate.

    Without ``out_dir`` the features are returned in memory; with it they are written batch by batch
    to ``out_dir/codes.npy`` and ``out_dir/pooled.npy`` and returned as read-only memmaps (memory
    holds one batch). Raises ValueError for windows at another rate or a codec never initialised.
    """
    _check(codec, data)
    n, c, _ = data.x.shape
    cid = codec.fingerprint()
    if out_dir is None:
        codes = pooled = None
        at = 0
        for k, p in _batches(codec, data, progress):
            if codes is None:
                codes = np.empty((n * c,) + k.shape[1:], np.int16)
                pooled = np.empty((n * c,) + p.shape[1:], np.float32)
            codes[at:at + len(k)], pooled[at:at + len(p)] = k, p
            at += len(k)
        return CodecFeatures(codes.reshape(n, c, -1, codec.n_q), pooled.reshape(n, c, -1), cid)
    out_dir = Path(out_dir)
    writers = []
    try:
        for k, p in _batches(codec, data, progress):
            if not writers:
                writers = [NpyAppender(out_dir / "codes.npy", k.shape[1:], np.int16),
                           NpyAppender(out_dir / "pooled.npy", p.shape[1:], np.float32)]
            writers[0].append(k)
            writers[1].append(p)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    codes_path = writers[0].close((n, c) + writers[0].row_shape)
    pooled_path = writers[1].close((n, c) + writers[1].row_shape)
    return CodecFeatures(np.load(codes_path, mmap_mode="r"), np.load(pooled_path, mmap_mode="r"), cid, out_dir)


def _read_cache(path: Path, data: LabelledWindows, cid: str) -> CodecFeatures | None:
    """The cached features in ``path`` if its ``complete.json`` says they are complete and they match
    ``data``; None (with a warning for a damaged one) otherwise."""
    marker = path / "complete.json"
    if not marker.is_file():
        if path.exists():
            log.warning("ignoring the incomplete code cache %s (no complete.json: a run stopped while writing it); "
                        "recomputing", path)
        return None
    try:
        facts = json.loads(marker.read_text())
        codes = np.load(path / "codes.npy", mmap_mode="r")
        pooled = np.load(path / "pooled.npy", mmap_mode="r")
        expected = (list(codes.shape), list(pooled.shape), cid)
        if (facts["codes_shape"], facts["pooled_shape"], facts["codec_id"]) != expected:
            raise ValueError(f"complete.json says {facts['codes_shape']}, {facts['pooled_shape']}, codec "
                             f"{facts['codec_id']}; the files hold {expected}")
        if codes.shape[:2] != data.x.shape[:2] or pooled.shape[:2] != data.x.shape[:2]:
            raise ValueError(f"features of {codes.shape[:2]} windows x channels for {data.x.shape[:2]}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring unreadable code cache %s (%s); recomputing", path, err)
        return None
    return CodecFeatures(codes, pooled, cid, path)


def _remove_stale(parent: Path, pattern: str) -> None:
    """Delete the directories ``parent/pattern`` named ``*.tmp-<pid>`` of processes no longer running."""
    for old in parent.glob(pattern):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(old, ignore_errors=True)
            except PermissionError:
                pass


def codec_features(codec: Codec, data: LabelledWindows, cache_dir: str | Path | None = None,
                   progress: bool = False) -> CodecFeatures:
    """:func:`compute_features`, read from / written to ``cache_dir`` when given (see the module doc).

    Without ``cache_dir``: in memory for in-memory windows; for memmapped windows
    (:class:`~biocodec_jax.evaluation.dataset.WindowStore`), memmaps in a temporary directory that is
    deleted when the returned object is.
    """
    if cache_dir is None:
        if not isinstance(data.x, np.memmap):
            return compute_features(codec, data, progress)
        _check(codec, data)
        tmp = Path(tempfile.mkdtemp(prefix=f"biocodec-codes-{data.name}-"))
        try:
            features = compute_features(codec, data, progress, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        weakref.finalize(features, shutil.rmtree, tmp, True)
        return features
    _check(codec, data)
    cid = codec.fingerprint()
    cache_dir = Path(cache_dir)
    fingerprint = data.fingerprint()
    path = cache_dir / f"{data.name}-{fingerprint}-codec{cid}"
    cached = _read_cache(path, data, cid)
    if cached is not None:
        log.info("codes of %s read from %s", data.name, path)
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(cache_dir, f"{path.name}.tmp-*")
    work = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        features = compute_features(codec, data, progress, work)
        facts = {"codes_shape": list(features.codes.shape), "pooled_shape": list(features.pooled.shape),
                 "codec_id": cid, "dataset": data.name, "dataset_fingerprint": fingerprint}
        (work / "complete.json.tmp").write_text(json.dumps(facts, indent=1) + "\n")
        os.replace(work / "complete.json.tmp", work / "complete.json")  # written last: the directory is complete
        del features  # the memmaps of the work directory; the cache's own are opened below
        if path.exists() and _read_cache(path, data, cid) is None:
            shutil.rmtree(path)  # an incomplete one left by a killed run
        try:
            os.rename(work, path)  # atomic: the complete directory appears under its name at once
        except OSError:
            if _read_cache(path, data, cid) is None:  # not another run that finished first
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("codes of %s cached in %s", data.name, path)
    return _read_cache(path, data, cid)
