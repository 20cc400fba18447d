"""Numerics: im2col convolutions equal XLA's, bfloat16 mixed precision stays close to float32 and
trains with float32 state, LSTM unrolling changes nothing, and bad settings are refused.

The measured values behind the thresholds (2-core CPU, jax 0.12) are noted beside them. Every
computation is jitted as one program per case: on CPU, compiling dominates, and one program
compiles faster than the many small ones eager execution would.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from biocodec_jax import Codec, preset
from biocodec_jax.config import Numerics, apply_overrides
from biocodec_jax.nn.conv import CausalConv1d, conv1d
from biocodec_jax.nn.lstm import LSTM
from biocodec_jax.quantization import rvq
from biocodec_jax.training import init_state, train_step
from tests.conftest import eeg_like_signals as _signals



def _rel(a, b) -> float:
    """``||a - b|| / ||b||`` (over all elements, in float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _float_dtypes(tree) -> set[str]:
    return {str(leaf.dtype) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}


def _forward_and_grads(module: nnx.Module, x: jax.Array, cot: jax.Array):
    """``(y, d<y, cot>/d params, d<y, cot>/dx)`` of ``module`` at ``x``, as one jitted program."""
    graphdef, params = nnx.split(module, nnx.Param)

    @jax.jit
    def run(params, x):
        f = lambda p, x: nnx.merge(graphdef, p)(x)  # noqa: E731
        y, vjp = jax.vjp(f, params, x)
        return (y, *vjp(cot.astype(y.dtype)))

    return run(params, x)


# --- 1. convolution implementations -----------------------------------------------------------

# (kernel, stride, dilation, length): every shape the presets use (residual k=3 d=1,2; pointwise
# k=1; encoder downsampling k=2*stride for strides 2 and 3), then odd ones that reach the other
# branches of the im2col code (strided k=1, strided + dilated, polyphase with the input cut or
# zero-extended). No length is a multiple of the stride.
CONV_CASES = [
    (3, 1, 1, 23), (3, 1, 2, 23), (1, 1, 1, 23), (4, 2, 1, 23), (6, 3, 1, 23), (4, 2, 1, 31), (6, 3, 1, 31),
    (1, 2, 1, 23), (5, 2, 2, 23), (5, 2, 1, 23), (7, 3, 1, 23), (7, 3, 1, 31),
]


@pytest.mark.parametrize("kernel_size,stride,dilation,length", CONV_CASES)
def test_matmul_conv_equals_xla_conv_values_and_gradients(kernel_size, stride, dilation, length):
    c_in, c_out = 3, 5
    kx, kk, kb, kc = jax.random.split(jax.random.key(kernel_size * 1000 + stride * 100 + dilation * 10 + length), 4)
    x = jax.random.normal(kx, (2, length, c_in))
    kernel = jax.random.normal(kk, (kernel_size, c_in, c_out)) / math.sqrt(kernel_size * c_in)
    bias = jax.random.normal(kb, (c_out,))
    frames = (length - (kernel_size - 1) * dilation - 1) // stride + 1
    cot = jax.random.normal(kc, (2, frames, c_out))

    @jax.jit
    def both(x, kernel, bias):
        out = {}
        for impl in ("xla", "matmul"):
            y, vjp = jax.vjp(lambda x, k, b: conv1d(x, k, b, stride, dilation, impl=impl), x, kernel, bias)
            out[impl] = (y, *vjp(cot))
        return out

    out = both(x, kernel, bias)
    (y_ref, gx_ref, gk_ref, gb_ref), (y, gx, gk, gb) = out["xla"], out["matmul"]
    assert y_ref.shape == y.shape == (2, frames, c_out)
    assert gx.shape == x.shape and gk.shape == kernel.shape
    for name, a, b in (("y", y, y_ref), ("dx", gx, gx_ref), ("dkernel", gk, gk_ref), ("dbias", gb, gb_ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("impl", ["xla", "matmul"])
@pytest.mark.parametrize("kernel_size,stride,dilation", [(3, 1, 2), (4, 2, 1)])
def test_bf16_causal_conv_is_close_to_float32_with_float32_weight_gradients(impl, kernel_size, stride, dilation):
    def make(dtype):  # same seed: same float32 parameters
        return CausalConv1d(4, 6, kernel_size, stride=stride, dilation=dilation, dtype=dtype, impl=impl,
                            rngs=nnx.Rngs(params=0))

    x = jax.random.normal(jax.random.key(1), (2, 37, 4))
    frames = -(-37 // stride)
    cot = jax.random.normal(jax.random.key(2), (2, frames, 6))
    conv16 = make("bfloat16")
    assert _float_dtypes(nnx.state(conv16, nnx.Param)) == {"float32"}
    y32, g32, _ = _forward_and_grads(make(None), x, cot)
    y16, g16, gx16 = _forward_and_grads(conv16, x, cot)
    assert y32.dtype == jnp.float32 and y16.dtype == jnp.bfloat16
    assert y16.shape == y32.shape == (2, frames, 6)
    err = _rel(y16.astype(jnp.float32), y32)
    assert 0 < err < 2e-2, err  # measured 2-4e-3: bfloat16 rounding (so really computed in bfloat16)
    assert _float_dtypes(g16) == {"float32"} and gx16.dtype == jnp.float32  # the input's dtype
    for name in ("weight_v", "weight_g", "bias"):
        # measured: xla 1e-3-1.2e-2, matmul 4e-3-2.6e-2 (weight_g; see the next test)
        assert _rel(g16[name][...], g32[name][...]) < 5e-2, name


@pytest.mark.parametrize("impl, tolerance", [("xla", 5e-3), ("matmul", 1e-4)])
def test_bf16_conv_kernel_gradient_is_accumulated_wide(impl, tolerance):
    """Under bfloat16 (bf16 input, float32 kernel as the modules pass it) the kernel gradient, a sum
    over all N*T frames, is float32 and accumulated in float32: rounded to bfloat16 once at most
    (xla: the cast's gradient), not at all with the matmul path (``mixed_matmul``)."""
    bf16 = jnp.bfloat16
    x = jax.random.normal(jax.random.key(0), (8, 252, 4)).astype(bf16)
    kernel = (jax.random.normal(jax.random.key(1), (3, 4, 6)) / 3).astype(bf16).astype(jnp.float32)
    cot = jax.random.normal(jax.random.key(2), (8, 250, 6)).astype(bf16)
    y, vjp = jax.vjp(lambda k: conv1d(x, k, None, 1, 1, impl=impl), kernel)
    assert y.dtype == bf16
    grad = jax.jit(vjp)(cot)[0]
    assert grad.dtype == jnp.float32
    xs, cs = np.asarray(x, np.float64), np.asarray(cot, np.float64)
    exact = np.stack([np.einsum("ntc,ntd->cd", xs[:, j : j + 250], cs) for j in range(3)])  # of the bf16 values
    err = _rel(grad, exact)
    # measured: xla 1.5e-3 (one bf16 rounding); matmul ~1e-7 (float32 accumulation). Before mixed_matmul,
    # a plain bf16 matmul's gradient on XLA:CPU was 2-3e-2 off (accumulated in bf16).
    assert err < tolerance, err


# --- 2 and 4. the whole codec under other numerics ------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _codec_outputs(graphdef, params, codebooks, x, codes_to_decode=None):
    """A codec's embeddings ``[N, T', D]`` and codes ``[N, T', Q]`` of ``x [N, T]``, and the decoding
    of ``codes_to_decode`` (its own codes by default): what ``Codec.embed``, ``encode`` and ``decode``
    compute, in one program (one compile per numerics instead of three)."""
    model = nnx.merge(graphdef, params)
    emb = model.embed(x)
    codes = rvq.encode(model.quantizer, codebooks, emb, codebooks.codebook.shape[0])
    to_decode = codes if codes_to_decode is None else codes_to_decode
    decoded = model.synthesize(rvq.decode(model.quantizer, codebooks, to_decode))
    return emb, codes, decoded


def _run_codec(codec: Codec, x: np.ndarray, codes_to_decode=None):
    out = _codec_outputs(codec.graphdef, codec.params, codec.codebooks, jnp.asarray(x[:, 0]), codes_to_decode)
    return tuple(np.asarray(a) for a in out)


@pytest.fixture(scope="module")
def codec():
    """The tiny codec, codebooks by k-means on smooth signals (so that codes are meaningful)."""
    return Codec.from_preset("tiny", seed=0, init_batch=_signals(8, 250, 0))


@pytest.fixture(scope="module")
def signal():
    return _signals(8, 250, 1)  # [8, 1, 250]: 63 frames per item, 504 per quantizer


@pytest.fixture(scope="module")
def reference(codec, signal):
    """Embeddings, codes and their decoding under the default numerics (float32; XLA convolutions on CPU)."""
    return _run_codec(codec, signal)


def test_codec_with_matmul_convolutions_equals_default(codec, signal, reference):
    emb_ref, codes_ref, y_ref = reference
    matmul = codec.with_numerics(conv_impl="matmul")
    assert matmul.numerics == Numerics("float32", "matmul", 0) and codec.numerics == Numerics()
    assert matmul.params is codec.params and matmul.codebooks is codec.codebooks  # the same weights
    emb, codes, y = _run_codec(matmul, signal)
    assert emb.dtype == np.float32 and emb.shape == emb_ref.shape == (8, 63, 16)
    assert _rel(emb, emb_ref) < 1e-5  # measured 1.7e-7
    assert np.mean(codes == codes_ref) >= 0.99  # measured: all equal
    if np.array_equal(codes, codes_ref):  # then the decoders' inputs are equal too
        assert _rel(y, y_ref) < 1e-5


def test_bf16_codec_codes_mostly_match_float32_and_decodes_close(codec, signal, reference):
    emb_ref, codes_ref, y_ref = reference
    bf16 = codec.with_numerics("bfloat16")
    assert bf16.numerics.precision == "bfloat16" and bf16.numerics.conv_impl == codec.numerics.conv_impl
    emb, codes, y = _run_codec(bf16, signal, codes_ref)  # decodes float32's codes
    # The quantizer gets float32 embeddings, computed in bfloat16 (so not equal to float32's).
    assert emb.dtype == np.float32
    assert 1e-4 < _rel(emb, emb_ref) < 3e-2  # measured 5.4e-3
    assert codes.shape == codes_ref.shape == (8, 63, 3) and codes.dtype == np.int32
    agree = np.mean(codes == codes_ref, axis=(0, 1))  # per quantizer
    # Measured over three seeds of the signal: first quantizer 97.6-98.6% of frames, the later ones
    # 95.6-98.0%, all three together 94.2-95.8%.
    assert agree[0] >= 0.9, agree
    assert np.all(agree >= 0.8), agree
    assert np.mean(np.all(codes == codes_ref, axis=-1)) >= 0.8
    # The same codes decoded both ways.
    assert y.dtype == np.float32 and y.shape == y_ref.shape == (8, 63 * 4)
    assert _rel(y, y_ref) < 5e-2  # relative RMS; measured 1.6e-2


# --- 3. bfloat16 mixed-precision training ----------------------------------------------------


@pytest.mark.slow
def test_bf16_training_learns_and_keeps_float32_state():
    config = apply_overrides(preset("tiny"), ["train.precision=bfloat16"])
    assert config.train.numerics == Numerics("bfloat16") and config.train.numerics.compute_dtype == "bfloat16"
    batch = _signals(8, 250, 0)
    state = init_state(config, jax.random.PRNGKey(0), batch)
    # The graph computes in bfloat16 (convolutions and LSTMs), its parameters float32.
    model = nnx.merge(state.graphdef, state.params)
    assert model.encoder.conv_in.dtype == model.decoder.conv_out.dtype == "bfloat16"
    assert model.encoder.lstm.lstm.layers[0].dtype == model.decoder.stages[0].upsample.dtype == "bfloat16"

    losses = []
    for _ in range(30):
        state, metrics = train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert all(math.isfinite(v) for v in losses), losses
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"bf16 tiny: loss {first:.3f} (first 5) -> {last:.3f} (last 5)")
    assert last < 0.75 * first, losses  # measured 1.270 -> 0.644 (ratio 0.51); float32 goes the same way
    assert int(state.step) == 30
    # Master weights, Adam moments and codebooks (with their EMA statistics) stay float32.
    assert _float_dtypes(state.params) == {"float32"}
    assert _float_dtypes(state.opt_state) == {"float32"}
    assert _float_dtypes(state.codebooks) == {"float32"}
    assert {k: str(v.dtype) for k, v in metrics.items()} == {k: "float32" for k in metrics}
    assert math.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0


# --- 5. validation ---------------------------------------------------------------------------


def test_numerics_validation():
    with pytest.raises(ValueError, match="lstm_unroll"):
        Numerics(lstm_unroll=-1)
    assert Numerics(lstm_unroll=4).lstm_unroll == 4
    with pytest.raises(ValueError, match="float16"):
        apply_overrides(preset("tiny"), ["train.precision=float16"])  # not one of the Literal's choices
    with pytest.raises(ValueError, match="conv_impl"):
        apply_overrides(preset("tiny"), ["train.conv_impl=cudnn"])
    cfg = apply_overrides(preset("tiny"), ["train.precision=bfloat16", "train.conv_impl=matmul", "train.lstm_unroll=2"])
    assert cfg.train.numerics == Numerics("bfloat16", "matmul", 2)
    codec = Codec.from_preset("tiny")
    with pytest.raises(ValueError, match="float64"):
        codec.with_numerics("float64")
    with pytest.raises(ValueError, match="lstm_unroll"):
        codec.with_numerics(lstm_unroll=-1)
    with pytest.raises(ValueError, match="float64"):
        Codec(codec.config, codec.params, codec.codebooks, numerics=Numerics("float64"))
    # Settings not given are kept.
    assert codec.with_numerics(conv_impl="matmul").with_numerics("bfloat16").numerics == Numerics("bfloat16", "matmul")


# --- 6. the LSTM --------------------------------------------------------------------------------


def test_lstm_unroll_does_not_change_values_or_gradients():
    def make(unroll):  # same seed: same parameters
        return LSTM(3, 5, 2, unroll=unroll, rngs=nnx.Rngs(params=0))

    x = jax.random.normal(jax.random.key(0), (2, 13, 3))  # T=13: not a multiple of 4
    cot = jax.random.normal(jax.random.key(1), (2, 13, 5))
    (ya, gpa, gxa), (yb, gpb, gxb) = _forward_and_grads(make(1), x, cot), _forward_and_grads(make(4), x, cot)
    assert ya.shape == (2, 13, 5)
    np.testing.assert_allclose(np.asarray(yb), np.asarray(ya), atol=1e-6)
    np.testing.assert_allclose(np.asarray(gxb), np.asarray(gxa), atol=1e-6)
    leaves_a, leaves_b = jax.tree.leaves(gpa), jax.tree.leaves(gpb)
    assert len(leaves_a) == len(leaves_b) == 8  # 2 layers x (w_ih, w_hh, b_ih, b_hh)
    for u, v in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), atol=1e-6)
    # Without gradient at batch >= 64 the input is projected inside the loop: unrolled the same.
    xb = jax.random.normal(jax.random.key(2), (64, 13, 3))
    forward = nnx.jit(lambda m, x: m(x))
    np.testing.assert_allclose(np.asarray(forward(make(4), xb)), np.asarray(forward(make(1), xb)), atol=1e-6)


def test_bf16_lstm_outputs_bf16_close_to_float32_with_float32_gradients():
    x = jax.random.normal(jax.random.key(0), (2, 13, 3))
    cot = jax.random.normal(jax.random.key(1), (2, 13, 5))
    y32, g32, _ = _forward_and_grads(LSTM(3, 5, 2, rngs=nnx.Rngs(params=0)), x, cot)
    y16, g16, gx16 = _forward_and_grads(LSTM(3, 5, 2, dtype="bfloat16", rngs=nnx.Rngs(params=0)), x, cot)
    assert y32.dtype == jnp.float32 and y16.dtype == jnp.bfloat16
    assert 0 < _rel(y16.astype(jnp.float32), y32) < 2e-2
    assert _float_dtypes(g16) == {"float32"} and gx16.dtype == jnp.float32
    flat = lambda g: np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])  # noqa: E731
    assert _rel(flat(g16), flat(g32)) < 5e-2
