"""MetricsLogger: JSONL round trip, the disabled (non-zero process) logger, TensorBoard events."""

import json
import math
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from biocodec_jax.training.logging import MetricsLogger, read_metrics


def test_jsonl_round_trip(tmp_path):
    workdir = tmp_path / "run"
    with MetricsLogger(workdir, enabled=True, tensorboard=False) as logger:
        logger.write(1, {"loss": jnp.float32(1.5), "lr": np.float64(3e-4), "count": 7})
        logger.write(2, {"loss": jnp.asarray([0.25])})
        logger.write(2, {"loss": 0.5, "nan": float("nan")}, split="eval")
        # Each write is flushed: readable before the logger is closed.
        assert len(read_metrics(workdir)) == 3
    records = read_metrics(workdir)
    assert records[0] == {"step": 1, "split": "train", "loss": 1.5, "lr": pytest.approx(3e-4), "count": 7.0}
    assert all(type(v) is float for k, v in records[0].items() if k not in ("step", "split"))
    assert records[1] == {"step": 2, "split": "train", "loss": 0.25}
    assert records[2]["split"] == "eval" and records[2]["loss"] == 0.5 and math.isnan(records[2]["nan"])
    assert [r["step"] for r in read_metrics(workdir, split="train")] == [1, 2]
    # Appends (a resumed run), and a truncated last line (a crash mid-write) is skipped.
    with MetricsLogger(workdir, enabled=True, tensorboard=False) as logger:
        logger.write(3, {"loss": 0.1})
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "spl')
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2, 2, 3]


def test_rejects_non_scalars_and_reserved_names(tmp_path):
    with MetricsLogger(tmp_path, enabled=True, tensorboard=False) as logger:
        with pytest.raises(ValueError, match="not a scalar"):
            logger.write(1, {"loss": np.zeros(3)})
        with pytest.raises(ValueError, match="reserved"):
            logger.write(1, {"step": 1.0})


def test_disabled_logger_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    logger = MetricsLogger(workdir, enabled=False)
    logger.write(1, {"loss": 1.0})
    logger.close()
    with MetricsLogger(workdir, enabled=False) as logger:
        logger.write(2, {"loss": 2.0}, split="eval")
    assert not workdir.exists()
    assert read_metrics(workdir) == []


def test_enabled_by_default_on_process_zero(tmp_path):
    with MetricsLogger(tmp_path / "run", tensorboard=False) as logger:  # a single process is process 0
        assert logger.enabled
        logger.write(1, {"loss": 1.0})
    assert read_metrics(tmp_path / "run") == [{"step": 1, "split": "train", "loss": 1.0}]


def _read_event_records(path):
    """Raw TFRecord payloads of a TensorBoard events file (length, crc, data, crc)."""
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i : i + 8])
        out.append(data[i + 12 : i + 12 + length])
        i += 12 + length + 4
    return out


def test_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboardX")
    workdir = tmp_path / "run"
    with MetricsLogger(workdir, enabled=True) as logger:
        logger.write(1, {"loss": 2.0})
        logger.write(2, {"loss": 1.0, "commit": 0.5})
        logger.write(2, {"loss": 1.25}, split="eval")
    events = sorted((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:  # only the file's existence can be checked
        return
    scalars = []
    for payload in _read_event_records(events[0]):
        event = event_pb2.Event.FromString(payload)
        for value in event.summary.value:
            scalars.append((value.tag, event.step, value.simple_value))
    assert sorted(scalars) == sorted(
        [("train/loss", 1, 2.0), ("train/loss", 2, 1.0), ("train/commit", 2, 0.5), ("eval/loss", 2, 1.25)]
    )
    assert json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 2.0


def test_without_tensorboardx_warns_once_and_keeps_jsonl(tmp_path, monkeypatch):
    import sys

    import biocodec_jax.training.logging as metrics_logging

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    monkeypatch.setattr(metrics_logging, "_warned_no_tensorboardx", False)
    with pytest.warns(UserWarning, match="tensorboardX"):
        first = MetricsLogger(tmp_path / "a", enabled=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = MetricsLogger(tmp_path / "b", enabled=True)
    for logger in (first, second):
        logger.write(1, {"loss": 1.0})
        logger.close()
    assert read_metrics(tmp_path / "a") == [{"step": 1, "split": "train", "loss": 1.0}]
    assert not (tmp_path / "a" / "tensorboard").exists()


def test_disabled_logger_on_a_url_touches_nothing():
    """Process != 0 of a run with a gs:// workdir: no staging directory, no request to the bucket
    (an unreachable one here); the enabled logger's uploads are tested in test_gcs.py."""
    logger = MetricsLogger("gs://no-such-bucket-reachable/run", enabled=False)
    logger.write(1, {"loss": 1.0})
    logger.flush()
    logger.close()
    assert logger._stage is None
