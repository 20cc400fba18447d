"""The public Codec API: shapes, bitrate control, save/load, clear errors."""

import numpy as np
import pytest

from biocodec_jax import Codec, preset
from biocodec_jax.config import to_dict


@pytest.fixture(scope="module")
def tiny():
    x = np.random.default_rng(0).standard_normal((4, 2, 160)).astype(np.float32)
    return Codec.from_preset("tiny", seed=0, init_batch=x)


def test_fresh_codec_codebooks_follow_the_original(tiny):
    fresh = Codec.from_preset("tiny", seed=0)
    assert not fresh.initialized  # zeros until k-means, like the original
    assert tiny.initialized


def test_encode_with_fewer_quantizers_and_decode_them(tiny):
    x = np.random.default_rng(1).standard_normal((2, 2, 100)).astype(np.float32)
    full = np.asarray(tiny.encode(x))
    for k in (1,):
        codes = np.asarray(tiny.encode(x, n_q=k))
        np.testing.assert_array_equal(codes, full[:, :, :k])
        assert tiny.decode(codes).shape == (2, 2, full.shape[-1] * tiny.hop_length)
        assert tiny.reconstruct(x, n_q=k).shape == x.shape
    np.testing.assert_allclose(np.asarray(tiny.reconstruct(x)), np.asarray(tiny.decode(full))[..., :100], atol=1e-6)


def test_inputs_may_be_numpy_or_jax_and_lists_of_floats64(tiny):
    import jax.numpy as jnp

    x = np.random.default_rng(2).standard_normal((1, 1, 64))
    a = np.asarray(tiny.encode(x))  # float64 numpy is accepted and cast
    b = np.asarray(tiny.encode(jnp.asarray(x, jnp.float32)))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.zeros((10,)), np.zeros((2, 10)), np.zeros((1, 1, 0))])
def test_bad_input_shapes_are_refused(tiny, bad):
    with pytest.raises(ValueError, match="batch, channels, time|no samples"):
        tiny.encode(bad)


def test_bad_codes_are_refused(tiny):
    with pytest.raises(ValueError, match="n_q must be between"):
        tiny.decode(np.zeros((1, 1, tiny.n_q + 1, 5), np.int32))
    with pytest.raises(TypeError, match="integers"):
        tiny.decode(np.zeros((1, 1, 1, 5), np.float32))
    with pytest.raises(ValueError, match="n_q must be between"):
        tiny.encode(np.zeros((1, 1, 8), np.float32), n_q=0)


def test_save_and_load_round_trip(tiny, tmp_path):
    path = tiny.save(tmp_path / "codec")
    assert (path / "config.json").is_file()
    loaded = Codec.load(path)
    assert to_dict(loaded.config) == to_dict(tiny.config)
    x = np.random.default_rng(3).standard_normal((1, 2, 80)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded.encode(x)), np.asarray(tiny.encode(x)))
    np.testing.assert_array_equal(np.asarray(loaded.codebooks.cluster_size), np.asarray(tiny.codebooks.cluster_size))


def test_load_of_a_folder_that_is_not_a_codec_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved codec"):
        Codec.load(tmp_path)


def test_preset_properties(original_codec):
    eeg = original_codec
    assert eeg.sample_rate == 250 and eeg.hop_length == 12
    assert eeg.codec_config.bitrate == pytest.approx(6 * 8 * 250 / 12)  # 1 kbit/s per channel
    assert preset("emg").codec.hop_length == 18
