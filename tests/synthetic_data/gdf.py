"""A minimal GDF 2.x writer for tests: the header, channel headers, data records and event table
that :func:`mne.io.read_raw_gdf` reads back (channel names, sampling rate, values, events).

GDF 2.x (Schlögl, "GDF - A general dataformat for biosignals", arXiv:cs/0608052) lays a file out as

1. a 256-byte fixed header (version ``"GDF 2.10"``, patient/recording ids, header length in
   256-byte blocks, number of data records, record duration as a fraction, number of channels);
2. a 256-byte variable header per channel, stored field by field for all channels (labels,
   physical dimension code, physical and digital ranges, filters, samples per record, data type);
3. ``n_records`` data records, each holding ``samples_per_record`` samples of channel 1, then of
   channel 2, ... (little endian);
4. the event table: mode (1: position and type; 3: also channel and duration), number of events
   (3 bytes), event sampling rate (float32), then 1-based positions (uint32), types (uint16) and,
   in mode 3, channels (uint16) and durations (uint32).

Physical values ``p`` are stored as digital values ``d`` with ``p = pmin + (d - dmin) * (pmax - pmin) /
(dmax - dmin)``. int16 data covers ``+-physical_max`` with the full int16 range, as the BCI
Competition IV files do (+-100 uV); values beyond it are clipped to the range ends, which is how
those files mark saturated and missing samples. float32 data stores physical values unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GDF data type codes (GDF 2.x, table 8) we write.
GDF_INT16 = 3
GDF_FLOAT32 = 16
_NUMPY_OF = {GDF_INT16: np.dtype("<i2"), GDF_FLOAT32: np.dtype("<f4")}
# Physical dimension codes (ISO/IEEE 11073-10101), as MNE understands them.
MICROVOLT = 4275


@dataclass(frozen=True)
class GDFEvent:
    """One entry of the event table: 0-based sample ``position``, ``typ`` code, ``duration`` in samples."""

    position: int
    typ: int
    duration: int = 0
    channel: int = 0


def _text(value: str, width: int) -> bytes:
    raw = value.encode("latin-1")[:width]
    return raw + b" " * (width - len(raw))


def _fixed_header(n_channels: int, n_records: int, samples_per_record: int, sample_rate: float,
                  version: str, patient: str, recording: str) -> bytes:
    # Record duration as a fraction num/den seconds chosen so that samples_per_record / duration is
    # exactly the sampling rate for integer rates (MNE computes sfreq = n_samps * den / num).
    num, den = samples_per_record, int(round(sample_rate))
    if not np.isclose(samples_per_record * den / num, sample_rate):
        raise ValueError(f"sample_rate {sample_rate} must be an integer number of Hz for this writer")
    header_blocks = 1 + n_channels
    out = bytearray()
    out += _text(f"GDF {version}", 8)
    out += _text(patient, 66)
    out += bytes(10)                            # reserved
    out += bytes(4)                             # smoking/alcohol, weight, height, gender/handedness
    out += _text(recording, 64)
    out += bytes(4) + bytes(12)                 # location (version/size/precision, lat, long, alt)
    out += struct.pack("<Q", 0)                 # start of recording (0: unknown)
    out += struct.pack("<Q", 0)                 # birthday (0: unknown)
    out += struct.pack("<H", header_blocks)
    out += bytes(6)                             # patient classification
    out += bytes(8)                             # equipment provider id
    out += bytes(6)                             # IP address
    out += bytes(6)                             # head size
    out += bytes(12) + bytes(12)                # reference and ground electrode positions
    out += struct.pack("<q", n_records)
    out += struct.pack("<II", num, den)
    out += struct.pack("<H", n_channels)
    out += bytes(2)                             # reserved
    assert len(out) == 256
    return bytes(out)


def _channel_header(names: Sequence[str], dtype_code: int, physical_max: float, samples_per_record: int,
                    version: float, lowpass: float, highpass: float, notch: float) -> bytes:
    n = len(names)
    if dtype_code == GDF_INT16:
        digital = (-32768.0, 32767.0)
        physical = (-physical_max, physical_max)
    else:
        digital = physical = (-physical_max, physical_max)
    out = bytearray()
    out += b"".join(_text(name, 16) for name in names)
    out += bytes(80 * n)                                                 # transducer
    out += b"".join(_text("uV", 6) for _ in names)                       # physical dimension (obsolete)
    out += struct.pack(f"<{n}H", *[MICROVOLT] * n)
    out += struct.pack(f"<{n}d", *[physical[0]] * n)
    out += struct.pack(f"<{n}d", *[physical[1]] * n)
    out += struct.pack(f"<{n}d", *[digital[0]] * n)
    out += struct.pack(f"<{n}d", *[digital[1]] * n)
    out += bytes(68 * n)                                                 # prefiltering text (obsolete)
    out += struct.pack(f"<{n}f", *[lowpass] * n)
    out += struct.pack(f"<{n}f", *[highpass] * n)
    out += struct.pack(f"<{n}f", *[notch] * n)
    out += struct.pack(f"<{n}i", *[samples_per_record] * n)
    out += struct.pack(f"<{n}i", *[dtype_code] * n)
    out += bytes(12 * n)                                                 # electrode positions xyz
    if version < 2.19:
        out += bytes([255]) * n + bytes(19 * n)                          # impedance (unknown) + reserved
    else:
        out += bytes(20 * n)                                             # impedance/frequency (float32 x5)
    assert len(out) == 256 * n
    return bytes(out)


def _event_table(events: Sequence[GDFEvent], sample_rate: float) -> bytes:
    events = sorted(events, key=lambda e: e.position)
    n = len(events)
    out = bytearray()
    out += struct.pack("<B", 3)                                          # mode 3: with channel and duration
    out += n.to_bytes(3, "little")
    out += struct.pack("<f", sample_rate)
    out += struct.pack(f"<{n}I", *[e.position + 1 for e in events])      # 1-based
    out += struct.pack(f"<{n}H", *[e.typ for e in events])
    out += struct.pack(f"<{n}H", *[e.channel for e in events])
    out += struct.pack(f"<{n}I", *[e.duration for e in events])
    return bytes(out)


def write_gdf(
    path: str | Path,
    signals: np.ndarray,
    channel_names: Sequence[str],
    sample_rate: float,
    events: Sequence[GDFEvent] = (),
    *,
    dtype: str = "int16",
    physical_max_uv: float = 100.0,
    version: str = "2.10",
    samples_per_record: int | None = None,
    patient: str = "X",
    recording: str = "synthetic",
    lowpass: float = 100.0,
    highpass: float = 0.5,
    notch: float = 50.0,
) -> Path:
    """Write ``signals`` ``[C, T]`` in volts (as MNE returns them) to a GDF 2.x file at ``path``.

    Values are stored in microvolts; ``dtype="int16"`` quantises ``+-physical_max_uv`` onto the
    int16 range (values beyond it are clipped), ``"float32"`` stores them as they are. Samples go
    into records of ``samples_per_record`` (default: one second); the last record is zero-padded,
    so MNE reads a recording rounded up to whole records. Returns ``path``.
    """
    path = Path(path)
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 2 or signals.shape[0] != len(channel_names):
        raise ValueError(f"signals must be [channels={len(channel_names)}, samples]; got {signals.shape}")
    dtype_code = {"int16": GDF_INT16, "float32": GDF_FLOAT32}[dtype]
    spr = int(samples_per_record or round(sample_rate))
    n_channels, n_samples = signals.shape
    n_records = -(-n_samples // spr)
    uv = np.zeros((n_channels, n_records * spr))
    uv[:, :n_samples] = signals * 1e6
    if dtype_code == GDF_INT16:
        scale = 65535.0 / (2 * physical_max_uv)  # digital units per uV
        digital = np.round((uv + physical_max_uv) * scale - 32768.0)
        stored = np.clip(digital, -32768, 32767).astype(_NUMPY_OF[dtype_code])
    else:
        stored = uv.astype(_NUMPY_OF[dtype_code])
    # [C, R*S] -> records [R, C, S]: each record holds channel 1's samples, then channel 2's, ...
    records = stored.reshape(n_channels, n_records, spr).transpose(1, 0, 2)
    with open(path, "wb") as f:
        f.write(_fixed_header(n_channels, n_records, spr, sample_rate, version, patient, recording))
        f.write(_channel_header(channel_names, dtype_code, physical_max_uv, spr, float(version), lowpass, highpass, notch))
        f.write(np.ascontiguousarray(records).tobytes())
        f.write(_event_table(events, sample_rate))
    return path
