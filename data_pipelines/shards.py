"""Shard files: single-channel windows with their origin, in ArrayRecord files Grain reads at random.

One record = one single-channel window::

    b"BCW1" | uint32 little-endian n | n bytes of UTF-8 JSON (the origin) | float32 little-endian samples

The origin (:class:`WindowOrigin`: recording id, subject, channel name, start sample at the shard's
sampling rate) travels with the samples, so a window can always be traced back to its file; the
loader's hot path (:func:`decode_window`) reads only the length prefix and the samples.

Records are written with ``group_size:1`` (each record its own chunk: what random access needs)
and ``uncompressed``: ArrayRecord's default compression made a record cost ~4x the time to write
(~91 vs ~21 µs on the EEGMMI windows) for files only ~8% smaller (float32 samples of a noise-like
signal barely compress), and would make every random read decompress its chunk. The records are
the same either way; readers (``ArrayRecordReader``, Grain's ``ArrayRecordDataSource``) read both,
so shards written compressed before this remain readable.

:func:`encode_recording` encodes a recording's windows at once (the bytes of :func:`encode_window`
for each, with the JSON header's constant parts built once per channel); ``prepare``'s workers use
it, so that the main process only writes.
A shard is written under a temporary name and renamed when complete (:class:`ShardWriter`), so a
file with the final name is always whole; a killed run leaves at most a ``*.tmp`` file behind. A
shard may also be written to a ``gs://`` URL: staged locally, uploaded whole when complete.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from data_pipelines import paths

MAGIC = b"BCW1"
_PREFIX = struct.Struct("<4sI")
SHARD_SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1,uncompressed"


@dataclass(frozen=True)
class WindowOrigin:
    """Where a window comes from: recording, subject, channel, first sample (at the shard's rate)."""

    recording: str
    subject: str
    channel: str
    start: int


def encode_window(window: np.ndarray, origin: WindowOrigin) -> bytes:
    """One record: ``window`` (1-D, stored as float32) with its ``origin``."""
    samples = np.asarray(window, dtype="<f4")
    if samples.ndim != 1:
        raise ValueError(f"a record holds one single-channel window (1-D); got shape {samples.shape}")
    header = json.dumps(asdict(origin), separators=(",", ":"), sort_keys=True).encode()
    return _PREFIX.pack(MAGIC, len(header)) + header + samples.tobytes()


def encode_recording(windows: np.ndarray, starts, channels, recording: str, subject: str) -> list[bytes]:
    """The records of ``windows`` ``[n, C, T]`` (window ``w``, channel ``c`` starting at sample
    ``starts[w]`` of channel ``channels[c]``), window-major (every channel of window 0, then window 1...).

    Byte for byte ``encode_window(windows[w, c], WindowOrigin(recording, subject, channels[c],
    int(starts[w])))``: the header is ``json.dumps`` of the origin with sorted keys (``channel``,
    ``recording``, ``start``, ``subject``), of which only ``start`` changes from record to record;
    the rest is made once per channel, with the same ``json.dumps`` string escaping."""
    samples = np.ascontiguousarray(windows, dtype="<f4")
    if samples.ndim != 3 or samples.shape[:2] != (len(starts), len(channels)):
        raise ValueError(f"expected windows [n={len(starts)}, C={len(channels)}, T]; got shape {samples.shape}")
    dumps = json.dumps
    prefixes = [f'{{"channel":{dumps(channel)},"recording":{dumps(recording)},"start":'.encode() for channel in channels]
    suffix = f',"subject":{dumps(subject)}}}'.encode()
    pack = _PREFIX.pack
    records = []
    for w, start in enumerate(starts):
        number = str(int(start)).encode()
        for c, prefix in enumerate(prefixes):
            header = prefix + number + suffix
            records.append(b"".join((pack(MAGIC, len(header)), header, samples[w, c].tobytes())))
    return records


def _header_length(record: bytes) -> int:
    magic, n = _PREFIX.unpack_from(record)
    if magic != MAGIC:
        raise ValueError(f"not a biocodec-jax window record (starts with {bytes(record[:4])!r}, expected {MAGIC!r})")
    return n


def decode_window(record: bytes) -> np.ndarray:
    """The samples of a record, float32 ``[T]`` (a read-only view of ``record``)."""
    offset = _PREFIX.size + _header_length(record)
    return np.frombuffer(record, dtype="<f4", offset=offset)


class ShardWriter:
    """Writes records to a temporary file; :meth:`commit` puts it in place at ``path``.

    ``path`` is a local path (written as ``path.tmp``, renamed into place: atomic) or a URL
    (``gs://...``: written to a local temporary file, uploaded whole on commit), through
    :func:`data_pipelines.paths.staged_file`. Use as a context manager: leaving the block without
    :meth:`commit` (an exception) deletes the temporary file, so no shard is ever half-written
    under its final name.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = paths.as_path(path) if paths.is_url(path) else Path(path)
        self._staged = paths.staged_file(self.path)
        self.tmp_path: Path = self._staged.__enter__()
        self._writer = ArrayRecordWriter(str(self.tmp_path), WRITER_OPTIONS)
        self.count = 0
        self._open = True

    def write(self, record: bytes) -> None:
        self._writer.write(record)
        self.count += 1

    def write_windows(self, windows: np.ndarray, origins: list[WindowOrigin]) -> None:
        """Write ``windows`` ``[N, T]`` with their ``origins`` (one each)."""
        if len(windows) != len(origins):
            raise ValueError(f"{len(windows)} windows but {len(origins)} origins")
        for window, origin in zip(windows, origins):
            self.write(encode_window(window, origin))

    def commit(self):
        """Close the file and put it in place (local: renamed, atomic on POSIX; URL: uploaded)."""
        self._close()
        self._staged.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        self._close()
        error = _Aborted()
        self._staged.__exit__(_Aborted, error, None)  # staged_file deletes it and re-raises: swallowed here

    def _close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._open:
            self.abort()


class _Aborted(Exception):
    """Thrown into :func:`~data_pipelines.paths.staged_file` to discard the staged file."""


def read_records(path: str | os.PathLike, chunk: int = 1024) -> Iterator[bytes]:
    """The records of the ArrayRecord file ``path`` (local or URL: downloaded first), in order,
    read ``chunk`` at a time."""
    with paths.local_copy(path) as local:
        reader = ArrayRecordReader(str(local))
        try:
            n = reader.num_records()
            for i in range(0, n, chunk):
                yield from reader.read(range(i, min(n, i + chunk)))
        finally:
            reader.close()
