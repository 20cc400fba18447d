"""biocodec_jax.storage: what a path holds (one decision for Codec.open, Codec.load, info and
convert), and the saved-codec format round trip; the public Codec API other modules build on."""

import numpy as np
import pytest

from biocodec_jax import Codec, storage, tokenizer
from biocodec_jax.storage import PathKind


@pytest.fixture(scope="module")
def tiny():
    return Codec.from_preset("tiny", seed=0)


def test_path_kinds(tmp_path, tiny):
    saved = tiny.save(tmp_path / "codec")
    assert storage.path_kind(saved) is PathKind.CODEC
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "steps" / "120").mkdir(parents=True)
    assert storage.path_kind(tmp_path / "run") is PathKind.RUN and storage.is_training_run(tmp_path / "run")
    assert storage.path_kind(tmp_path / "steps") is PathKind.RUN  # a checkpoints directory itself
    assert storage.run_workdir(tmp_path / "run") == (tmp_path / "run").absolute()
    assert storage.run_workdir(tmp_path / "steps") == tmp_path.absolute()
    (tmp_path / "ckpt.pt").write_bytes(b"")
    assert storage.path_kind(tmp_path / "ckpt.pt") is PathKind.TORCH
    (saved / "checkpoints").mkdir()
    assert storage.path_kind(saved) is PathKind.CODEC  # config.json decides
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: not a saved codec \(no config.json\) nor a training run"):
        storage.path_kind(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing: not a saved codec, a training run or a PyTorch checkpoint"):
        storage.path_kind(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing: not a saved codec"):
        Codec.open(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="a file, not a saved codec or training run"):
        Codec.load(tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="step=3 is for training runs"):
        Codec.load(saved, step=3)


def test_saved_codec_round_trip_keeps_fingerprint_and_metadata(tmp_path, tiny):
    tiny.metadata["training"] = {"step": 7, "data": None, "workdir": "w"}
    try:
        stored = storage.load_codec(tiny.save(tmp_path / "c"))
    finally:
        tiny.metadata.clear()
    assert stored.metadata["training"]["step"] == 7
    again = Codec(stored.config, stored.params, stored.codebooks, stored.graphdef, stored.metadata)
    assert again.fingerprint() == tiny.fingerprint() == tokenizer.fingerprint(tiny)
    assert len(tiny.fingerprint()) == 16 and Codec.from_preset("tiny", seed=1).fingerprint() != tiny.fingerprint()


def test_encode_with_embeddings_is_encode_and_embed(tiny):
    x = np.random.default_rng(0).standard_normal((2, 3, 96)).astype(np.float32)
    codes, emb = tiny.encode_with_embeddings(x, n_q=2)
    np.testing.assert_array_equal(codes, tiny.encode(x, n_q=2))
    np.testing.assert_allclose(emb, tiny.embed(x), rtol=1e-6, atol=1e-6)
    _, pooled = tiny.encode_with_embeddings(x, pool=True)
    np.testing.assert_allclose(pooled, np.asarray(emb).mean(-1), rtol=1e-5, atol=1e-6)
    assert tiny.check_n_q(None) == tiny.n_q and tiny.check_n_q(1) == 1
    with pytest.raises(ValueError, match="n_q must be between 1 and"):
        tiny.check_n_q(tiny.n_q + 1)
