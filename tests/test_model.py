"""The network: parameter counts, shapes, frame counts, causality, jit/no-jit agreement, and each
layer's streaming ``step`` over chunks against its offline call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biocodec_jax import Codec, preset
from biocodec_jax import model as model_lib
from biocodec_jax.model import BioCodecModel
from biocodec_jax.nn.conv import CausalConv1d, CausalConvTranspose1d, causal_padding, reflect_pad
from biocodec_jax.nn.lstm import LSTM
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


@pytest.mark.parametrize("length", [1, 4, 5, 251])  # shorter than, equal to, one past the hop; long and ragged
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


def _step_through(module, x: jax.Array, first: int, size: int, state=None):
    """``module.step`` over ``x`` ``[N, T, C]`` cut into chunks (``first`` samples, then ``size`` each,
    the last one what is left), from ``state``; returns the outputs concatenated over time."""
    ys, i = [], 0
    while i < x.shape[1]:
        n = first if i == 0 else size
        y, state = module.step(x[:, i : i + n], state)
        ys.append(y)
        i += n
    return jnp.concatenate(ys, axis=1)


# (layer, first chunk, chunk size): the first chunk longer than the convolution's left padding,
# later chunks whole frames (multiples of the stride), the last one partial (29 samples).
STEP_CASES = [
    (lambda r: CausalConv1d(3, 5, 3, dilation=2, rngs=r), 5, 3),
    (lambda r: CausalConv1d(3, 5, 1, rngs=r), 1, 2),
    (lambda r: CausalConv1d(3, 5, 6, stride=3, rngs=r), 6, 3),
    (lambda r: CausalConvTranspose1d(3, 5, 4, stride=2, rngs=r), 1, 1),
    (lambda r: LSTM(3, 5, 2, rngs=r), 1, 4),
]


@pytest.mark.parametrize("make, first, size", STEP_CASES)
def test_layer_step_over_chunks_equals_the_offline_call(make, first, size):
    """A layer's ``step`` over chunks of a signal, from ``init_state``, computes its offline output;
    ``step`` from no state is the offline call itself (``__call__`` is defined through it)."""
    layer = make(nnx.Rngs(params=0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 29, 3)).astype(np.float32))
    offline = np.asarray(layer(x))
    np.testing.assert_array_equal(np.asarray(layer.step(x)[0]), offline)
    streamed = np.asarray(_step_through(layer, x, first, size, layer.init_state(2)))
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-6)  # float32 rounding of differently sized calls


def test_encoder_and_decoder_step_over_chunks_equal_offline(tiny):
    """The whole encoder and decoder, chunk by chunk as a stream runs them (one jitted program each)."""
    cfg, hop = tiny.codec_config, tiny.hop_length
    x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 15 * hop + 3, 1)).astype(np.float32))

    @jax.jit
    def run(params, x):
        model = nnx.merge(tiny.graphdef, params)
        enc, dec = model.encoder, model.decoder
        emb = enc(x)
        streamed = _step_through(enc, x, 3 * hop, hop, enc.init_state(2))  # 3 frames of warm-up, then 1 frame
        return emb, streamed, dec(emb), _step_through(dec, emb, 3, 2, dec.init_state(2))

    emb, emb_streamed, y, y_streamed = (np.asarray(a) for a in run(tiny.params, x))
    assert emb.shape == emb_streamed.shape == (2, 16, cfg.dimension)
    np.testing.assert_allclose(emb_streamed, emb, rtol=0, atol=1e-5)
    assert y.shape == y_streamed.shape == (2, 16 * hop, 1)
    np.testing.assert_allclose(y_streamed, y, rtol=0, atol=1e-5)
