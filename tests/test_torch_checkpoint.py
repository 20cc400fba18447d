"""Reading the original's checkpoints safely, and mapping its keys."""

import io
import pickle
import re
import zipfile

import numpy as np
import pytest

from biocodec_jax import Codec, preset
from biocodec_jax.interop.torch_checkpoint import (
    CheckpointError,
    expected_torch_shapes,
    load_state_dict,
    read_torch_file,
)
from tests.conftest import FIXTURES, ORIGINAL_CKPT


def test_reads_the_training_checkpoint_without_torch():
    obj = read_torch_file(ORIGINAL_CKPT)
    assert set(obj) == {"epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict"}
    assert all(k.startswith("_orig_mod.") for k in obj["model_state_dict"])
    sd = load_state_dict(ORIGINAL_CKPT)
    assert len(sd) == 166 and not any(k.startswith("_orig_mod.") for k in sd)
    listed = {}
    for line in (FIXTURES / "eeg_state_dict_keys.txt").read_text().splitlines():
        key, shape, _dtype = re.fullmatch(r"(\S+) \(([^)]*)\) (\S+)", line).groups()
        listed[key] = tuple(int(v) for v in shape.split(",") if v.strip())
    assert {k: v.shape for k, v in sd.items()} == listed


def test_expected_layout_is_the_originals():
    shapes = expected_torch_shapes(preset("eeg").codec)
    sd = load_state_dict(ORIGINAL_CKPT)
    assert shapes == {k: v.shape for k, v in sd.items()}


def test_state_dict_round_trip_is_exact(original_codec, tmp_path):
    sd = load_state_dict(ORIGINAL_CKPT)
    back = original_codec.to_torch_state_dict()
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    # A plain state dict as .npz loads to the same codec.
    np.savez(tmp_path / "sd.npz", **back)
    again = Codec.from_torch_checkpoint(tmp_path / "sd.npz")
    for k, v in again.to_torch_state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


def _zip_checkpoint(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_refuses_code_in_a_pt_file(tmp_path):
    path = tmp_path / "evil.pt"
    _zip_checkpoint(path, pickle.dumps({"model_state_dict": _Evil()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"refusing to load.*(posix|os)\.system"):
        read_torch_file(path)


def test_refuses_legacy_and_non_checkpoint_files(tmp_path):
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not a zip-format PyTorch file"):
        read_torch_file(legacy)
    empty_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="without a data.pkl"):
        read_torch_file(empty_zip)
    corrupt = tmp_path / "corrupt.pt"
    _zip_checkpoint(corrupt, b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        read_torch_file(corrupt)
    with pytest.raises(FileNotFoundError):
        read_torch_file(tmp_path / "missing.pt")


def test_reports_missing_unexpected_and_mismatched_keys_by_name(tmp_path):
    sd = load_state_dict(ORIGINAL_CKPT)
    del sd["decoder.model.15.conv.conv.bias"]
    sd["encoder.model.99.extra"] = np.zeros(3, np.float32)
    sd["quantizer.vq.layers.0.project_in.bias"] = np.zeros(17, np.float32)
    np.savez(tmp_path / "broken.npz", **sd)
    with pytest.raises(CheckpointError) as err:
        Codec.from_torch_checkpoint(tmp_path / "broken.npz", config="eeg")
    message = str(err.value)
    assert "missing keys (1): decoder.model.15.conv.conv.bias" in message
    assert "unexpected keys (1): encoder.model.99.extra" in message
    assert "quantizer.vq.layers.0.project_in.bias: checkpoint (17,), model (16,)" in message


def test_unrecognised_architecture_asks_for_a_config(tmp_path):
    tiny = Codec.from_preset("tiny")
    np.savez(tmp_path / "tiny.npz", **tiny.to_torch_state_dict())
    with pytest.raises(CheckpointError, match="pass the codec config"):
        Codec.from_torch_checkpoint(tmp_path / "tiny.npz")
    loaded = Codec.from_torch_checkpoint(tmp_path / "tiny.npz", config="tiny")
    assert loaded.codec_config == tiny.codec_config


def test_torch_load_reads_our_files_when_torch_is_installed(tmp_path):
    torch = pytest.importorskip("torch")
    obj = torch.load(ORIGINAL_CKPT, weights_only=True)
    ours = read_torch_file(ORIGINAL_CKPT)
    for k, v in obj["model_state_dict"].items():
        np.testing.assert_array_equal(v.numpy(), ours["model_state_dict"][k])
    assert io is not None
