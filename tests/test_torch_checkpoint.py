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
from tests.pt_fuzz_worker import T, floats, write_pt


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


# --- crafted files: every declaration checked against the storage's bytes (issue 17) ------------------

KEY = "_orig_mod.encoder.w"


def _one_tensor(path, tensor, records=None, **kw):
    return write_pt(path, {"model_state_dict": {KEY: tensor}}, {"0": floats(4)} if records is None else records, **kw)


@pytest.mark.parametrize(
    "tensor, records, problem",
    [
        (T("0", 1, (256,), (1,)), {"0": floats(1)}, r"size \(256,\), stride \(1,\) and offset 0 reach element 255, past the end"),
        (T("0", 4, (4,), (-1,), offset=3), None, r"stride \(-1,\) is not a tuple of non-negative"),
        (T("0", 4, (2,), (1,), offset=-1), None, r"storage offset -1 is not a non-negative"),
        (T("0", 4, (2,), (1,), offset=4), None, r"reach element 5, past the end of its storage of 4 elements"),
        (T("0", 4, (), (), offset=4), None, r"reach element 4, past the end"),
        (T("0", 1), {"0": bytes(6)}, r"its 6 bytes are not a whole number of 4-byte elements"),
        (T("0", 8, (8,), (1,)), None, r"FloatStorage, 8 elements\): its record holds only 4 elements"),
        (T("7", 4), None, r"storage archive/data/7 .*no such record"),
        (T("0", 4, (2, 2), (1,)), None, r"size \(2, 2\) and stride \(1,\) have different lengths"),
        (T("0", 4, (2.0,), (1,)), None, r"size \(2\.0,\) is not a tuple of non-negative"),
        (T("0", 4, (4,), (1,), storage="DoubleStorage"), None, r"DoubleStorage, 4 elements\): its record holds only 2"),
    ],
    ids=["size-256-of-1", "negative-stride", "negative-offset", "offset-past-end", "scalar-past-end",
         "bytes-not-multiple", "numel-beyond-record", "missing-record", "ndim-mismatch", "float-size", "dtype-wider"],
)
def test_refuses_tensors_outside_their_storage_naming_file_and_key(tmp_path, tensor, records, problem):
    path = _one_tensor(tmp_path / "bad.pt", tensor, records)
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refusing to load tensor ['model_state_dict']['{KEY}']: "), message
    assert re.search(problem, message), message


def test_reads_valid_strided_views_exactly_as_owned_copies(tmp_path):
    records = {"0": floats(12), "1": bytes([0, 1, 2, 0]), "2": np.array([0x3F80, 0x4040], "<u2").tobytes()}
    obj = {
        "t": T("0", 12, (4, 3), (1, 4)),  # a transposed view
        "tail": T("0", 12, (2, 3), (1, 2), offset=5),
        "expanded": T("0", 12, (3, 2), (0, 1), offset=10, parameter=True),
        "scalar": T("0", 12, (), (), offset=11),
        "empty": T("0", 12, (0, 7), (7, 1), offset=12),
        "flags": T("1", 4, storage="BoolStorage"),
        "bf16": T("2", 2, storage="BFloat16Storage"),
    }
    got = read_torch_file(write_pt(tmp_path / "views.pt", obj, records))
    base = 1000 + np.arange(12, dtype=np.float32)
    want = {
        "t": base.reshape(3, 4).T, "tail": base[[[5, 7, 9], [6, 8, 10]]],
        "expanded": np.broadcast_to(base[10:12], (3, 2)), "scalar": np.array(base[11]), "empty": np.zeros((0, 7), np.float32),
        "flags": np.array([False, True, True, False]), "bf16": np.array([1.0, 3.0], np.float32),
    }
    assert list(got) == list(want)
    for k, v in want.items():
        assert isinstance(got[k], np.ndarray) and got[k].flags.owndata and got[k].flags.writeable, k
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k


def test_corrupt_archives_and_pickles_raise_checkpoint_error(tmp_path):
    good = _one_tensor(tmp_path / "good.pt", T("0", 4)).read_bytes()
    cases = {}
    # A byteorder record whose bytes do not match its CRC, a broken central directory entry.
    at = good.index(b"little")
    cases["byteorder-crc"] = good[:at] + b"LITTLE" + good[at + 6 :]
    second = good.index(b"PK\x01\x02", good.index(b"PK\x01\x02") + 1)
    cases["central-directory"] = good[:second] + b"PK\x09\x09" + good[second + 4 :]
    cases["truncated"] = good[: len(good) // 2]
    for name, data in cases.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
    for name, pickled in {"junk": b"\x80\x04\x95garbage", "truncated-pickle": b"\x80\x02}(X\x03\x00\x00\x00ab",
                          "empty": b"", "protocol-99": b"\x80\x63N.", "bad-pid": b"\x80\x02X\x01\x00\x00\x00xQ."}.items():
        write_pt(tmp_path / f"{name}.pt", None, {}, pickled=pickled)
    for mark, problem in {b"big": "big-endian checkpoints are not supported", b"middle": "unknown byte order"}.items():
        _one_tensor(tmp_path / f"{mark.decode()}.pt", T("0", 4), byteorder=mark)
        cases[mark.decode()] = problem
    for path in sorted(tmp_path.glob("*.pt")):
        if path.name == "good.pt":
            continue
        with pytest.raises(CheckpointError) as err:
            read_torch_file(path)
        assert str(err.value).startswith(f"{path}: "), str(err.value)
        if path.stem in ("big", "middle"):
            assert cases[path.stem] in str(err.value)
    assert set(read_torch_file(tmp_path / "good.pt")["model_state_dict"]) == {KEY}


def test_globals_outside_a_tensor_are_refused(tmp_path):
    # torch.FloatStorage and the rebuild function are allowed only as parts of a tensor.
    path = write_pt(tmp_path / "stray.pt", None, {}, pickled=b"\x80\x02}X\x01\x00\x00\x00sctorch\nFloatStorage\ns.")
    with pytest.raises(CheckpointError, match=r"\['s'\] is torch\.FloatStorage, not data"):
        read_torch_file(path)


def test_cli_convert_refuses_a_tensor_outside_its_storage(tmp_path, capsys):
    from biocodec_jax.cli import main as cli_main

    path = _one_tensor(tmp_path / "bad.pt", T("0", 1, (256,), (1,)), {"0": floats(1)})
    assert cli_main(["convert", "--from-torch", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and KEY in err and "past the end of its storage of 1 element" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def fuzz_summary(tmp_path_factory):
    """tests/pt_fuzz_worker.py in a subprocess: a crash (a segfault) fails these tests, not pytest."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("pt_fuzz_worker.py")
    proc = subprocess.run(
        [sys.executable, str(worker), str(tmp_path_factory.mktemp("pt_fuzz")), "--cases", "300", "--seed", "0"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"the worker exited {proc.returncode} (a negative code is a signal):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sizes_and_strides_that_crashed_the_reader_are_refused(fuzz_summary):
    # Among them size (50_000_000,) over 1 element and stride 2**40, which segfaulted `convert`.
    assert fuzz_summary["named"] == {name: "refused" for name in fuzz_summary["named"]}
    assert len(fuzz_summary["named"]) == 9


def test_small_pickles_cannot_make_the_reader_allocate_gigabytes(fuzz_summary):
    for name, result in fuzz_summary["memory_bombs"].items():
        assert result["outcome"] in ("loaded", "refused"), (name, result)
        assert result["peak_memory_growth_mib"] < 256, (name, result)


def test_fuzzed_checkpoints_load_exactly_or_are_refused(fuzz_summary):
    fuzz = fuzz_summary["fuzz"]
    assert fuzz["n_failures"] == 0, "\n".join(fuzz["failures"])
    assert fuzz["cases"] == fuzz["loaded"] + fuzz["refused"] == 300
    assert fuzz["loaded"] >= 30 and fuzz["refused"] >= 150, fuzz  # both outcomes exercised
    assert set(fuzz["kinds"]) == {"layout", "records", "pickle", "zip", "truncate", "byteorder"}


def test_compressed_records_are_refused(tmp_path):
    """A deflated record could expand far beyond the file's size (a zip bomb): torch stores records
    uncompressed, so the reader refuses compressed ones before reading any."""
    import zipfile

    from biocodec_jax.interop.torch_checkpoint import CheckpointError, read_torch_file
    from biocodec_jax.interop.torch_writer import write_torch_file

    good = write_torch_file({"w": np.arange(6, dtype=np.float32)}, tmp_path / "good.pt")
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(read_torch_file(good)["w"], np.arange(6, dtype=np.float32))
    with pytest.raises(CheckpointError, match="compressed record"):
        read_torch_file(bomb)
