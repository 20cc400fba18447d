"""Writing PyTorch files without torch, exporting the original's training checkpoint, ``biocodec-jax convert``."""

import collections

import jax
import ml_dtypes
import numpy as np
import optax
import pytest

from biocodec_jax import Codec
from biocodec_jax.cli import main as cli_main
from biocodec_jax.config import apply_overrides, preset
from biocodec_jax.interop.torch_checkpoint import (
    export_torch_checkpoint,
    is_buffer,
    original_key_order,
    read_torch_file,
    to_torch_state_dict,
)
from biocodec_jax.interop.torch_writer import write_torch_file
from tests.conftest import FIXTURES, ORIGINAL_CKPT


def _assert_same(a, b, where="obj"):
    """Equal structure, types, key order and bit-exact arrays (dtype included)."""
    if isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert isinstance(b, (np.ndarray, np.generic)) and a.dtype == b.dtype and a.shape == b.shape, where
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where
    else:
        assert type(a) is type(b) and a == b, where


# --- the file format -------------------------------------------------------------------------


def _mixed_object():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    return {
        "epoch": 3, "big": 2**40, "neg": -5, "huge": -(2**70), "eps": 1e-8, "betas": (0.5, 0.9), "t4": (1, 2, 3, 4),
        "none": None, "flags": [True, False], 7: "int key", "text": "héllo ✓", "long": list(range(2500)),
        "od": collections.OrderedDict([("w", a), ("w_t", a.T), ("w_again", a)]),
        "scalar": np.float32(2.5), "bf16": np.arange(4).astype(ml_dtypes.bfloat16), "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32), "f64": np.arange(3.0), "f16": np.arange(3, dtype=np.float16),
        "ints": [np.arange(3, dtype=t) for t in (np.int64, np.int32, np.int16, np.int8, np.uint8)],
        "jax": jax.numpy.ones((2, 2)),
    }


def test_writer_round_trips_through_our_reader_bit_exactly(tmp_path):
    obj = _mixed_object()
    path = write_torch_file(obj, tmp_path / "mixed.pt")
    back = read_torch_file(path)
    expected = dict(obj, od=collections.OrderedDict((k, np.ascontiguousarray(v)) for k, v in obj["od"].items()))
    expected["jax"] = np.asarray(obj["jax"])
    expected["bf16"] = obj["bf16"].astype(np.float32)  # our reader widens bfloat16 (exactly) to float32
    _assert_same(expected, back)
    # Same input, same bytes (no timestamps, no random ids).
    assert write_torch_file(obj, tmp_path / "again.pt").read_bytes().replace(b"again/", b"mixed/") == path.read_bytes()


def test_writer_lays_out_the_archive_as_torch_does(tmp_path):
    import struct
    import zipfile

    path = write_torch_file({"w": np.ones(3, np.float32)}, tmp_path / "model.pt")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert names == ["model/data.pkl", "model/.format_version", "model/.storage_alignment", "model/byteorder",
                         "model/data/0", "model/version", "model/.data/serialization_id"]
        assert z.read("model/byteorder") == b"little" and z.read("model/version") == b"3\n"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        raw = path.read_bytes()
        for info in z.infolist():  # every entry's data starts on a 64-byte boundary
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename


def test_writer_names_what_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['a'\]\[1\]: cannot write a builtins.set"):
        write_torch_file({"a": [1, {2}]}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="dtype uint32"):
        write_torch_file({"a": np.zeros(2, np.uint32)}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


# --- exporting the original's checkpoint -----------------------------------------------------


def test_jax_to_pt_to_jax_is_bit_exact_and_matches_the_original(original_codec, tmp_path):
    path = original_codec.to_torch_checkpoint(tmp_path / "exported.pt", epoch=1)
    original, exported = read_torch_file(ORIGINAL_CKPT), read_torch_file(path)
    # The model weights are the original's file's exactly: keys, their order, dtypes and bits.
    _assert_same(original["model_state_dict"], exported["model_state_dict"], "model_state_dict")
    listed = [line.split()[0] for line in (FIXTURES / "eeg_state_dict_keys.txt").read_text().splitlines()]
    assert list(exported["model_state_dict"]) == ["_orig_mod." + k for k in listed]
    assert original_key_order(reversed(listed)) == listed
    # The wrapper has the original's structure.
    assert list(exported) == list(original) and exported["epoch"] == 1
    group, original_group = exported["optimizer_state_dict"]["param_groups"][0], original["optimizer_state_dict"]["param_groups"][0]
    assert list(group) == list(original_group)
    assert group["params"] == original_group["params"] == list(range(142))
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.5, 0.9), 1e-8, 0)
    assert exported["optimizer_state_dict"]["state"] == {}
    assert list(exported["scheduler_state_dict"]) == list(original["scheduler_state_dict"])
    assert exported["scheduler_state_dict"]["base_lrs"] == [1e-4]
    # And back: every parameter and codebook array of the codec, bit for bit.
    again = Codec.from_torch_checkpoint(path)
    _assert_jax_equal(original_codec, again)


def _assert_jax_equal(a: Codec, b: Codec):
    assert a.config == b.config
    for x, y in zip(jax.tree.leaves((a.params, a.codebooks)), jax.tree.leaves((b.params, b.codebooks)), strict=True):
        assert x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """A tiny run's checkpoint at step 2 with random weights and Adam moments.

    Built from numpy arrays (no eager JAX ops, which would compile one by one): the state is only data here.
    """
    from biocodec_jax import model as model_lib
    from biocodec_jax.training import TrainState
    from biocodec_jax.training.checkpointing import Checkpointer
    from biocodec_jax.training.optimizer import make_optimizer

    config = apply_overrides(preset("tiny"), ["optim.warmup_steps=0", "optim.learning_rate=0.01", "optim.total_steps=100"])
    graphdef, abstract = model_lib.abstract_model(config.codec)
    rng = np.random.default_rng(0)

    def random(scale=1.0, square=False):
        draw = lambda s: (scale * rng.standard_normal(s.shape) ** (2 if square else 1)).astype(np.float32)  # noqa: E731
        return jax.tree.map(draw, abstract)

    step = np.int32(2)
    adam = optax.ScaleByAdamState(count=step, mu=random(0.1), nu=random(0.01, square=True))
    state = TrainState(
        step=step, params=random(), codebooks=model_lib.init_codebooks(config.codec),
        opt_state=(adam, optax.ScaleByScheduleState(count=step)), rng=np.zeros(2, np.uint32),
        graphdef=graphdef, tx=make_optimizer(config.optim), config=config,
    )
    workdir = tmp_path_factory.mktemp("run")
    with Checkpointer(workdir / "checkpoints", async_save=False) as ckpt:
        ckpt.save(state)
    return workdir, state


def test_exports_adam_state_of_a_training_run_in_the_originals_order(training_run, tmp_path):
    workdir, state = training_run
    obj = export_torch_checkpoint(workdir, tmp_path / "run.pt", epoch=5)
    back = read_torch_file(tmp_path / "run.pt")
    _assert_same(obj, back)
    cfg = state.config.codec
    model = {k.removeprefix("_orig_mod."): v for k, v in back["model_state_dict"].items()}
    params = [k for k in model if not is_buffer(k)]
    adam = state.opt_state[0]
    mu = to_torch_state_dict(adam.mu, state.codebooks, cfg)
    nu = to_torch_state_dict(adam.nu, state.codebooks, cfg)
    opt = back["optimizer_state_dict"]
    assert list(opt["state"]) == list(range(len(params))) == opt["param_groups"][0]["params"]
    for i, key in enumerate(params):
        entry = opt["state"][i]
        assert list(entry) == ["step", "exp_avg", "exp_avg_sq"] and entry["step"] == np.float32(2)
        assert entry["exp_avg"].shape == model[key].shape
        np.testing.assert_array_equal(entry["exp_avg"], mu[key], err_msg=key)
        np.testing.assert_array_equal(entry["exp_avg_sq"], nu[key], err_msg=key)
    assert back["epoch"] == 5 and back["scheduler_state_dict"] == {"last_epoch": 2, "_step_count": 3, "base_lrs": [0.01]}
    assert opt["param_groups"][0]["lr"] == pytest.approx(float(optax.cosine_decay_schedule(0.01, 100)(2)))


# --- the command -----------------------------------------------------------------------------


def test_cli_converts_both_ways(original_codec, tmp_path, capsys):
    codec_dir, pt = tmp_path / "codec", tmp_path / "back.pt"
    assert cli_main(["convert", "--from-torch", str(ORIGINAL_CKPT), "--output", str(codec_dir)]) == 0
    _assert_jax_equal(original_codec, Codec.load(codec_dir))
    assert cli_main(["convert", "--to-torch", str(codec_dir), "--output", str(pt), "--epoch", "1"]) == 0
    out = capsys.readouterr().out
    assert str(codec_dir) in out and str(pt) in out and "no Adam state" in out
    original, back = read_torch_file(ORIGINAL_CKPT), read_torch_file(pt)
    _assert_same(original["model_state_dict"], back["model_state_dict"])
    # An existing output is not overwritten without --force.
    assert cli_main(["convert", "--to-torch", str(codec_dir), "--output", str(pt)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert cli_main(["convert", "--from-torch", str(ORIGINAL_CKPT), "--output", str(codec_dir)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert cli_main(["convert", "--to-torch", str(codec_dir), "--output", str(pt), "--force"]) == 0


def test_cli_exports_a_training_run_with_its_adam_state(training_run, tmp_path, capsys):
    workdir, _ = training_run
    assert cli_main(["convert", "--to-torch", str(workdir), "--output", str(tmp_path / "run.pt")]) == 0
    assert "Adam state at step 2" in capsys.readouterr().out
    assert cli_main(["convert", "--to-torch", str(workdir), "--output", str(tmp_path / "x.pt"), "--step", "7"]) == 2
    assert "no checkpoint for step 7" in capsys.readouterr().err


def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert cli_main(["convert", "--from-torch", str(missing), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert cli_main(["convert", "--from-torch", str(text), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(text) in err and "not a zip-format PyTorch file" in err
    assert cli_main(["convert", "--to-torch", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x.pt")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.pt").exists()


def test_cli_wrong_architecture_names_the_mismatch(tmp_path, capsys):
    assert cli_main(["convert", "--from-torch", str(ORIGINAL_CKPT), "--output", str(tmp_path / "o"), "--preset", "emg"]) == 2
    err = capsys.readouterr().err
    assert str(ORIGINAL_CKPT) in err and "shape mismatches" in err


# --- with PyTorch (optional; CI has none) ----------------------------------------------------


def test_torch_loads_our_files(original_codec, tmp_path):
    torch = pytest.importorskip("torch")
    obj = _mixed_object()
    loaded = torch.load(write_torch_file(obj, tmp_path / "mixed.pt"), weights_only=True)
    assert isinstance(loaded["od"], collections.OrderedDict) and list(loaded["od"]) == ["w", "w_t", "w_again"]
    assert loaded["od"]["w"].data_ptr() == loaded["od"]["w_again"].data_ptr()  # one shared storage, as in torch
    assert loaded["bf16"].dtype == torch.bfloat16 and loaded["scalar"].shape == () and loaded["huge"] == -(2**70)
    np.testing.assert_array_equal(loaded["od"]["w_t"].numpy(), obj["od"]["w_t"])
    assert (loaded[7], loaded["text"], loaded["betas"], loaded["long"]) == ("int key", "héllo ✓", (0.5, 0.9), obj["long"])

    path = original_codec.to_torch_checkpoint(tmp_path / "exported.pt")
    ckpt = torch.load(path, weights_only=True)
    ours = read_torch_file(path)
    for key, value in ours["model_state_dict"].items():
        assert ckpt["model_state_dict"][key].dtype == torch.float32
        np.testing.assert_array_equal(ckpt["model_state_dict"][key].numpy(), value, err_msg=key)
    reference = torch.load(ORIGINAL_CKPT, weights_only=True)["model_state_dict"]
    assert list(ckpt["model_state_dict"]) == list(reference)
    params = [torch.nn.Parameter(v.clone()) for k, v in ckpt["model_state_dict"].items() if "_codebook" not in k]
    assert len(params) == 142
    adam = torch.optim.Adam(params, lr=1.0)
    adam.load_state_dict(ckpt["optimizer_state_dict"])
    assert adam.param_groups[0]["betas"] == (0.5, 0.9) and adam.param_groups[0]["lr"] == pytest.approx(5e-8)


def test_torch_adam_continues_where_optax_left_off(training_run, tmp_path):
    """One more Adam step in torch, from the exported state, equals one more optax step."""
    torch = pytest.importorskip("torch")
    workdir, state = training_run
    export_torch_checkpoint(workdir, tmp_path / "run.pt")
    ckpt = torch.load(tmp_path / "run.pt", weights_only=True)
    keys = [k for k in ckpt["model_state_dict"] if "_codebook" not in k]
    params = [torch.nn.Parameter(ckpt["model_state_dict"][k].clone()) for k in keys]
    adam = torch.optim.Adam(params)
    adam.load_state_dict(ckpt["optimizer_state_dict"])

    rng = np.random.default_rng(1)
    grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), state.params)
    cfg = state.config.codec
    torch_grads = to_torch_state_dict(grads, state.codebooks, cfg)
    for key, p in zip(keys, params):
        p.grad = torch.from_numpy(torch_grads[key.removeprefix("_orig_mod.")].copy())
    adam.step()
    step = jax.jit(lambda g, o, p: optax.apply_updates(p, state.tx.update(g, o, p)[0]))  # one compile, not one per op
    expected = to_torch_state_dict(step(grads, state.opt_state, state.params), state.codebooks, cfg)
    before = to_torch_state_dict(state.params, state.codebooks, cfg)
    for key, p in zip(keys, params):
        k = key.removeprefix("_orig_mod.")
        # Compare the steps (about lr = 0.01 per element), not the parameters, so float32 rounding
        # of the parameters does not hide a wrong moment.
        np.testing.assert_allclose(p.detach().numpy() - before[k], expected[k] - before[k], rtol=1e-4, atol=1e-7, err_msg=k)
