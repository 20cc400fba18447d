"""A labelled dataset through the frozen codec: codes and pooled embeddings, cached on disk.

Every electrode is coded as its own single-channel sequence, as the original does for its
downstream tasks. One pass of the encoder gives both what the token classifier reads (the codes,
``[N, C, T', K]``) and what the linear probe reads (the encoder output averaged over time,
``[N, C, D]``), :meth:`Codec.encode_with_embeddings`. The cache file is keyed by the codec
(:meth:`Codec.fingerprint`: configuration and every weight) and by the dataset (windows, labels and
preprocessing), so changing either recomputes it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from biocodec_jax.codec import Codec
from biocodec_jax.evaluation.dataset import LabelledWindows

log = logging.getLogger(__name__)

ITEMS_PER_BATCH = 256  # single-channel items per compiled call (one shape, padded)


@dataclass(frozen=True)
class CodecFeatures:
    """``codes`` int16 ``[N, C, T', K]`` and ``pooled`` float32 ``[N, C, D]`` of one dataset."""

    codes: np.ndarray
    pooled: np.ndarray
    codec_id: str

    def subset(self, index: np.ndarray) -> "CodecFeatures":
        return CodecFeatures(self.codes[index], self.pooled[index], self.codec_id)


def compute_features(codec: Codec, data: LabelledWindows, progress: bool = False) -> CodecFeatures:
    """Encode every window of ``data`` (no cache). The windows must be at the codec's rate."""
    if abs(data.sample_rate - codec.sample_rate) > 1e-6:
        raise ValueError(f"{data.name}: windows are at {data.sample_rate:g} Hz but the codec codes {codec.sample_rate} Hz; "
                         "load the task with the codec's sample rate")
    if not codec.initialized:
        raise ValueError("the codec's codebooks were never initialised (k-means); load a trained codec")
    n, c, t = data.x.shape
    items = data.x.reshape(n * c, t)
    chunk = max(ITEMS_PER_BATCH, c)
    codes, pooled = [], []
    for start in tqdm(range(0, len(items), chunk), desc=f"coding {data.name}", unit="batch",
                      disable=not progress, mininterval=5):
        batch = items[start:start + chunk]
        pad = chunk - len(batch)
        if pad:  # one compiled shape for every batch
            batch = np.concatenate([batch, np.zeros((pad, t), batch.dtype)])
        k, p = codec.encode_with_embeddings(jnp.asarray(batch)[:, None], pool=True)  # [chunk, 1, K, T'], [chunk, 1, D]
        codes.append(np.asarray(jnp.swapaxes(k[: chunk - pad, 0], 1, 2), dtype=np.int16))  # [n, T', K]
        pooled.append(np.asarray(p[: chunk - pad, 0], dtype=np.float32))
    codes = np.concatenate(codes).reshape(n, c, -1, codec.n_q)
    pooled = np.concatenate(pooled).reshape(n, c, -1)
    return CodecFeatures(codes, pooled, codec.fingerprint())


def codec_features(codec: Codec, data: LabelledWindows, cache_dir: str | Path | None = None,
                   progress: bool = False) -> CodecFeatures:
    """:func:`compute_features`, read from / written to ``cache_dir`` when given."""
    if cache_dir is None:
        return compute_features(codec, data, progress)
    cid = codec.fingerprint()
    path = Path(cache_dir) / f"{data.name}-{data.fingerprint()}-codec{cid}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                features = CodecFeatures(f["codes"], f["pooled"], cid)
            if features.codes.shape[:2] == data.x.shape[:2]:
                log.info("codes of %s read from %s", data.name, path)
                return features
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable code cache %s (%s); recomputing", path, err)
    features = compute_features(codec, data, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, codes=features.codes, pooled=features.pooled)
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache
    log.info("codes of %s cached in %s", data.name, path)
    return features
