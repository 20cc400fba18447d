"""The network: parameter counts, shapes, frame counts, causality, jit/no-jit agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biocodec_jax import Codec, preset
from biocodec_jax.model import BioCodecModel
from biocodec_jax.nn.conv import causal_padding, reflect_pad
from biocodec_jax.nn.seanet import count_params


@pytest.mark.parametrize(
    "name, total, encoder, decoder, quantizer",
    [("eeg", 3_152_770, 1_563_680, 1_563_650, 25_440), ("emg", 3_185_538, None, None, 25_440)],
)
def test_parameter_counts_match_the_original(name, total, encoder, decoder, quantizer):
    model = nnx.eval_shape(lambda: BioCodecModel(preset(name).codec, rngs=nnx.Rngs(0)))
    assert count_params(model) == total
    assert count_params(model.quantizer) == quantizer
    if encoder is not None:
        assert count_params(model.encoder) == encoder
        assert count_params(model.decoder) == decoder
        assert count_params(model.encoder.lstm) == 1_052_672


@pytest.mark.parametrize(
    "length, kernel, stride, dilation, expected",
    [(100, 3, 1, 1, (2, 0)), (100, 3, 1, 2, (4, 0)), (101, 4, 2, 1, (2, 1)), (100, 4, 2, 1, (2, 0)), (313, 6, 3, 1, (3, 2))],
)
def test_causal_padding_examples_from_the_reference(length, kernel, stride, dilation, expected):
    assert causal_padding(length, kernel, stride, dilation) == expected


def test_reflect_pad_short_signal_is_zero_extended_first():
    # The original zero-extends a signal too short to reflect, reflects, then drops the extension.
    x = jnp.arange(1.0, 3.0).reshape(1, 2, 1)  # [1, 2]
    out = np.asarray(reflect_pad(x, 4, 0))[0, :, 0]
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 2.0, 1.0, 2.0])


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    return Codec.from_preset("tiny", seed=0, init_batch=rng.standard_normal((4, 1, 200)).astype(np.float32))


@pytest.mark.parametrize("length", [1, 3, 4, 5, 50, 251])
def test_shapes_and_frame_counts_tiny(tiny, length):
    hop, k = tiny.hop_length, tiny.n_q
    frames = -(-length // hop)
    x = np.random.default_rng(length).standard_normal((2, 3, length)).astype(np.float32)
    assert tiny.embed(x).shape == (2, 3, tiny.codec_config.dimension, frames)
    codes = tiny.encode(x)
    assert codes.shape == (2, 3, k, frames) and codes.dtype == jnp.int32
    assert int(codes.min()) >= 0 and int(codes.max()) < tiny.codec_config.codebook_size
    assert tiny.decode(codes).shape == (2, 3, frames * hop)
    assert tiny.reconstruct(x).shape == (2, 3, length)


@pytest.mark.parametrize("length, frames", [(1250, 105), (1, 1), (12, 1), (13, 2), (2500, 209)])
def test_eeg_frame_counts(original_codec, length, frames):
    assert original_codec.codec_config.frames(length) == frames
    x = np.zeros((1, 1, length), np.float32)
    assert original_codec.embed(x).shape == (1, 1, 128, frames)


def test_channels_are_coded_independently(tiny):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 120)).astype(np.float32)
    codes = np.asarray(tiny.encode(x))
    alone = np.asarray(tiny.encode(x[1:2, 2:3]))
    np.testing.assert_array_equal(codes[1:2, 2:3], alone)


@pytest.mark.parametrize("codec_name", ["tiny", "eeg"])
def test_encoder_is_causal(tiny, original_codec, codec_name):
    """Changing the input from sample t on changes no embedding frame that ends before t."""
    codec = tiny if codec_name == "tiny" else original_codec
    hop = codec.hop_length
    length, t = 40 * hop, 23 * hop + 5
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1, length)).astype(np.float32)
    y = x.copy()
    y[..., t:] += rng.standard_normal(length - t).astype(np.float32)
    ex, ey = np.asarray(codec.embed(x)), np.asarray(codec.embed(y))
    done = t // hop  # frames 0 .. done-1 end before sample t
    np.testing.assert_allclose(ex[..., :done], ey[..., :done], atol=1e-6, rtol=0)
    assert np.abs(ex[..., done:] - ey[..., done:]).max() > 1e-3  # and the rest does see the change


def test_decoder_is_causal(original_codec):
    codes = np.asarray(original_codec.encode(np.random.default_rng(3).standard_normal((1, 1, 600)).astype(np.float32)))
    changed = codes.copy()
    changed[..., 30:] = (changed[..., 30:] + 1) % 256
    a, b = np.asarray(original_codec.decode(codes)), np.asarray(original_codec.decode(changed))
    np.testing.assert_allclose(a[..., : 30 * 12], b[..., : 30 * 12], atol=1e-6, rtol=0)
    assert np.abs(a - b).max() > 1e-4


def test_jit_and_no_jit_agree(tiny):
    from biocodec_jax import model as model_lib

    x = jnp.asarray(np.random.default_rng(4).standard_normal((3, 90)).astype(np.float32))
    jitted = jax.jit(model_lib.encode, static_argnums=(0, 4))(tiny.graphdef, tiny.params, tiny.codebooks, x, tiny.n_q)
    jitted_emb = jax.jit(model_lib.embed, static_argnums=0)(tiny.graphdef, tiny.params, x)
    with jax.disable_jit():
        eager = model_lib.encode(tiny.graphdef, tiny.params, tiny.codebooks, x, tiny.n_q)
        eager_emb = model_lib.embed(tiny.graphdef, tiny.params, x)
    np.testing.assert_allclose(np.asarray(jitted_emb), np.asarray(eager_emb), atol=1e-5, rtol=1e-5)
    assert float(np.mean(np.asarray(jitted) == np.asarray(eager))) >= 0.99


def test_same_seed_same_codec_different_seed_different():
    a, b, c = (Codec.from_preset("tiny", seed=s) for s in (0, 0, 1))
    leaves = lambda codec: [np.asarray(v) for v in jax.tree.leaves(codec.params)]  # noqa: E731
    for u, v in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))
