"""Recordings shaped like the Temple University Hospital (TUH) EEG corpora's EDF files.

A TUH EDF file (TUAB, TUEV, TUEG) is plain EDF with 1-s data records, every signal at the session's
rate (250, 256 or 512 Hz...), signals named ``EEG FP1-REF`` (``01_tcp_ar`` montage) or
``EEG FP1-LE`` (``02_tcp_le``), plus non-EEG leads (``EEG EKG1-REF``, ``PHOTIC-REF``, ``IBI``...)
and numbered spares (``EEG 26-REF``). :data:`TCP_AR_CHANNELS` is such a channel list.

Each 10-20 electrode carries its own tone (:data:`ELECTRODE_HZ`, 20 uV) plus a little noise, so a
test can tell from a processed channel which electrode(s) it came from; ``bursts`` add a
Hann-tapered tone (5x, at the electrode's own frequency) on one electrode between two times, so a
test can tell where in a window an event was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.synthetic_data.edf import EdfSignal, write_edf

# The 21 electrodes of the 10-20 system with the ear references, and a test tone for each.
ELECTRODES = ("FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T3", "C3", "CZ", "C4", "T4", "T5", "P3", "PZ", "P4",
              "T6", "O1", "O2", "A1", "A2")
ELECTRODE_HZ = {name: round(2.0 + 1.4 * i, 1) for i, name in enumerate(ELECTRODES)}  # whole cycles in 5 s

# A typical 01_tcp_ar recording: EEG in TUH's own order, then extras (as in TUAB/TUEV files).
_TUH_ORDER = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6",
              "A1", "A2", "FZ", "CZ", "PZ", "ROC", "LOC", "EKG1", "T1", "T2", "26", "27")
TCP_AR_CHANNELS = tuple(f"EEG {n}-REF" for n in _TUH_ORDER) + ("EMG-REF", "PHOTIC-REF", "IBI", "BURSTS", "SUPPR")

AMPLITUDE_UV = 20.0
BURST_GAIN = 5.0
PHYSICAL_RANGE_UV = 4999.84


def channel_names(montage: str = "ar") -> tuple[str, ...]:
    """:data:`TCP_AR_CHANNELS`, or with ``-LE`` references for the ``le`` montage."""
    if montage == "ar":
        return TCP_AR_CHANNELS
    if montage == "le":
        return tuple(n.replace("-REF", "-LE") for n in TCP_AR_CHANNELS)
    raise ValueError(f"montage must be 'ar' or 'le'; got {montage!r}")


def electrode_of(channel: str) -> str | None:
    """``"EEG FP1-REF"`` -> ``"FP1"``; None for a channel that is not one of :data:`ELECTRODES`."""
    name = channel.removeprefix("EEG ").removesuffix("-REF").removesuffix("-LE")
    return name if name in ELECTRODE_HZ else None


def write_tuh_edf(
    path: str | Path,
    subject: str,
    duration_s: int,
    sample_rate: float,
    *,
    montage: str = "ar",
    drop: Sequence[str] = (),
    flat: Sequence[str] = (),
    bursts: Sequence[tuple[str, float, float]] = (),
    seed: int = 0,
) -> Path:
    """A TUH-style EDF file of ``duration_s`` seconds at ``sample_rate``.

    ``drop``: channel labels to leave out (a recording lacking an electrode); ``flat``: channel
    labels recorded as a flat line (a disconnected electrode). ``bursts``:
    ``(electrode, start_s, stop_s)`` stretches where that electrode's tone is 5x louder.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    signals = []
    for label in channel_names(montage):
        if label in drop:
            continue
        electrode = electrode_of(label)
        if label in flat:
            data = np.zeros(n)
        elif electrode is None:
            data = rng.normal(0.0, 10.0, n)
        else:
            phase = rng.uniform(0, 2 * np.pi)
            data = AMPLITUDE_UV * np.sin(2 * np.pi * ELECTRODE_HZ[electrode] * t + phase) + rng.normal(0.0, 1.0, n)
            for where, start, stop in bursts:
                if where == electrode:
                    i0, i1 = int(round(start * sample_rate)), int(round(stop * sample_rate))
                    data[i0:i1] += (BURST_GAIN - 1) * AMPLITUDE_UV * np.hanning(i1 - i0) * np.sin(
                        2 * np.pi * ELECTRODE_HZ[electrode] * t[i0:i1] + phase)
        signals.append(EdfSignal(label, data, sample_rate, physical_min=-PHYSICAL_RANGE_UV, physical_max=PHYSICAL_RANGE_UV))
    return write_edf(
        path, signals, record_duration=1.0,
        patient=f"{subject} M 01-JAN-1970 {subject} Age:40",
        recording=f"Startdate 01-JAN-2010 {Path(path).stem} X X",
        start=datetime(2010, 1, 1, 10, 0, 0),
    )
