"""A small plain-Python EDF / EDF+C writer, for synthetic copies of published datasets in tests.

>>> write_edf("x.edf", [EdfSignal("EEG FP1-REF", data_uv, 250.0)], record_duration=1.0)
>>> write_edf("h.edf", [], annotations=[EdfAnnotation(0.0, 30.0, "Sleep stage W")], record_duration=0.0)

The file follows the EDF specification (Kemp et al. 1992) and its EDF+ extension (Kemp & Olivan
2003): a 256-byte header, 256 bytes per signal, then data records holding, signal after signal,
``sample_rate * record_duration`` little-endian int16 samples. Physical values are mapped
linearly from ``[physical_min, physical_max]`` to ``[digital_min, digital_max]`` (what readers
invert). With annotations the file is EDF+C: an ``EDF Annotations`` signal carries, in each data
record, the record's time-keeping TAL (``+<onset>\\x14\\x14\\x00``) and, in the first record, every
annotation as a TAL ``+<onset>\\x15<duration>\\x14<text>\\x14\\x00``. An annotations-only file
(no signals, one record of duration 0) is how Sleep-EDF stores its hypnograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

ANNOTATION_LABEL = "EDF Annotations"


@dataclass(frozen=True)
class EdfSignal:
    """One signal: its label, physical samples (1-D) and rate; physical range defaults to the data's."""

    label: str
    data: np.ndarray
    sample_rate: float
    physical_dimension: str = "uV"
    physical_min: float | None = None
    physical_max: float | None = None
    digital_min: int = -32768
    digital_max: int = 32767
    transducer: str = ""
    prefilter: str = ""


@dataclass(frozen=True)
class EdfAnnotation:
    """An EDF+ annotation: onset (s from the file start), duration (s, or None) and text."""

    onset: float
    duration: float | None
    description: str


def _ascii(value: str, width: int, what: str) -> bytes:
    text = str(value)
    if len(text) > width or not text.isascii():
        raise ValueError(f"EDF header field {what} must be at most {width} ASCII characters; got {text!r}")
    return text.ljust(width).encode("ascii")


def format_number(x: float, width: int = 8) -> str:
    """``x`` in at most ``width`` characters, as precisely as fits (EDF header numbers)."""
    if float(x).is_integer() and len(str(int(x))) <= width:
        return str(int(x))
    for decimals in range(width, -1, -1):
        text = f"{x:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= width:
            return text
    raise ValueError(f"{x} does not fit in {width} characters")


def _tal_number(x: float) -> str:
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return text if text.startswith("-") else "+" + text


def annotation_bytes(record_onset: float, annotations: Sequence[EdfAnnotation] = ()) -> bytes:
    """The TALs of one data record: its time-keeping TAL, then ``annotations``."""
    out = f"{_tal_number(record_onset)}\x14\x14\x00"
    for a in annotations:
        duration = "" if a.duration is None else "\x15" + _tal_number(a.duration).lstrip("+")
        out += f"{_tal_number(a.onset)}{duration}\x14{a.description}\x14\x00"
    return out.encode("latin-1")


def digitize(signal: EdfSignal) -> tuple[np.ndarray, float, float]:
    """``signal.data`` as int16 digital values, with the physical range used (``(digital, pmin, pmax)``)."""
    data = np.asarray(signal.data, dtype=np.float64)
    pmin = float(data.min()) if signal.physical_min is None else float(signal.physical_min)
    pmax = float(data.max()) if signal.physical_max is None else float(signal.physical_max)
    if signal.physical_min is None or signal.physical_max is None:
        # Round outwards to what the 8-character header can hold, so the reader's gain is the writer's.
        pmin, pmax = float(format_number(np.floor(pmin) - 1)), float(format_number(np.ceil(pmax) + 1))
    else:
        pmin, pmax = float(format_number(pmin)), float(format_number(pmax))
    if pmax <= pmin:
        raise ValueError(f"signal {signal.label!r}: physical max {pmax} must exceed physical min {pmin}")
    dmin, dmax = signal.digital_min, signal.digital_max
    scaled = (data - pmin) / (pmax - pmin) * (dmax - dmin) + dmin
    return np.clip(np.round(scaled), dmin, dmax).astype("<i2"), pmin, pmax


def write_edf(
    path: str | Path,
    signals: Sequence[EdfSignal],
    *,
    record_duration: float = 1.0,
    annotations: Sequence[EdfAnnotation] = (),
    edf_plus: bool | None = None,
    patient: str = "X X X X",
    recording: str = "Startdate X X X X",
    start: datetime = datetime(2000, 1, 1, 0, 0, 0),
) -> Path:
    """Write ``signals`` (and EDF+ ``annotations``) to ``path``; returns the path.

    ``edf_plus`` (default: whether there are annotations) adds the ``EDF Annotations`` signal and
    marks the header ``EDF+C``. Every signal must fill a whole number of records of
    ``record_duration`` seconds, the same number for all. Without signals the file has one record
    (annotations only; ``record_duration`` 0 as in Sleep-EDF's hypnograms).
    """
    path = Path(path)
    edf_plus = bool(annotations) if edf_plus is None else edf_plus
    if annotations and not edf_plus:
        raise ValueError("annotations need an EDF+ file (edf_plus=True)")

    per_record, n_records = [], None
    for s in signals:
        spr = s.sample_rate * record_duration
        if record_duration <= 0 or not float(spr).is_integer():
            raise ValueError(f"signal {s.label!r}: {s.sample_rate} Hz x {record_duration} s "
                             "is not a whole number of samples per record")
        spr = int(spr)
        n = len(s.data) / spr
        if not n.is_integer():
            raise ValueError(f"signal {s.label!r}: {len(s.data)} samples is not a whole number of {spr}-sample records")
        if n_records is not None and int(n) != n_records:
            raise ValueError(f"signal {s.label!r} fills {int(n)} records, the others {n_records}")
        n_records = int(n)
        per_record.append(spr)
    n_records = 1 if n_records is None else n_records

    digital, headers = [], []
    for s in signals:
        d, pmin, pmax = digitize(s)
        digital.append(d.reshape(n_records, -1))
        headers.append((s.label, s.transducer, s.physical_dimension, pmin, pmax, s.digital_min, s.digital_max, s.prefilter))

    if edf_plus:
        tals = [annotation_bytes(r * record_duration, annotations if r == 0 else ()) for r in range(n_records)]
        n_bytes = max(len(t) for t in tals)
        n_bytes += n_bytes % 2  # whole int16 samples
        block = np.zeros((n_records, n_bytes), dtype=np.uint8)
        for r, t in enumerate(tals):
            block[r, : len(t)] = np.frombuffer(t, dtype=np.uint8)
        digital.append(block.view("<i2"))
        per_record.append(n_bytes // 2)
        headers.append((ANNOTATION_LABEL, "", "", 0.0, 1.0, -32768, 32767, ""))

    ns = len(headers)
    header = b"".join([
        _ascii("0", 8, "version"),
        _ascii(patient, 80, "patient"),
        _ascii(recording, 80, "recording"),
        _ascii(start.strftime("%d.%m.%y"), 8, "startdate"),
        _ascii(start.strftime("%H.%M.%S"), 8, "starttime"),
        _ascii(str(256 * (ns + 1)), 8, "header bytes"),
        _ascii("EDF+C" if edf_plus else "", 44, "reserved"),
        _ascii(str(n_records), 8, "number of records"),
        _ascii(format_number(record_duration), 8, "record duration"),
        _ascii(str(ns), 4, "number of signals"),
    ])
    columns = list(zip(*headers)) if headers else [()] * 8
    widths = (16, 80, 8, 8, 8, 8, 8, 80)
    names = ("label", "transducer", "physical dimension", "physical min", "physical max", "digital min", "digital max",
             "prefilter")
    for i, (column, width, what) in enumerate(zip(columns, widths, names)):
        for value in column:
            text = format_number(value) if 3 <= i <= 6 else value
            header += _ascii(text, width, what)
    header += b"".join(_ascii(str(n), 8, "samples per record") for n in per_record)
    header += b" " * (32 * ns)
    assert len(header) == 256 * (ns + 1)

    records = np.concatenate(digital, axis=1) if digital else np.zeros((n_records, 0), "<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(records, dtype="<i2").tobytes())
    return path
