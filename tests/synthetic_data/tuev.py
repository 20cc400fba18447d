"""A tiny TUH EEG Events Corpus (TUEV v2.0.x), laid out as the publisher distributes it::

    <root>/edf/train/<subject>/<subject>_<8-digit number>.edf   (+ .rec beside it)
        e.g. edf/train/aaaaaaar/aaaaaaar_00000001.edf
    <root>/edf/eval/<NNN>/<label>_<NNN>_a_<run>.edf             (+ .rec beside it)
        e.g. edf/eval/000/bckg_000_a_.edf, edf/eval/032/spsw_032_a_1.edf

(the v2.0.1 layout, as parsed by braindecode's ``TUHEvents`` and read by BIOT's TUEV script). A
``.rec`` file holds one CSV row per channel-event, ``channel,start_s,stop_s,label`` (e.g.
``13,90.4,91.4,6``): ``channel`` is the index 0..21 of the TCP bipolar montage (0 FP1-F7 ...
21 P4-O2), ``label`` 1 spsw, 2 gped, 3 pled, 4 eyem, 5 artf, 6 bckg; events last 1 s and an event
seen on several channels has one row per channel. Each event here also puts a 1-s burst on
electrode O2 (:data:`BURST_ELECTRODE`), so a test can find the event inside its window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.synthetic_data.tuh import write_tuh_edf

LABELS = {1: "spsw", 2: "gped", 3: "pled", 4: "eyem", 5: "artf", 6: "bckg"}
BURST_ELECTRODE = "O2"


@dataclass(frozen=True)
class TuevEvent:
    channel: int  # TCP montage index 0..21
    start: float
    stop: float
    label: int  # 1..6


@dataclass(frozen=True)
class TuevRecording:
    """What :func:`make_tuev` wrote for one recording."""

    path: Path
    rec: Path
    partition: str  # "train" | "eval"
    subject: str  # the folder name
    events: tuple[TuevEvent, ...]
    sample_rate: float
    duration_s: int


def _events(*rows: tuple[Sequence[int], float, int]) -> tuple[TuevEvent, ...]:
    """``(channels, start, label)`` -> one 1-s event per channel."""
    return tuple(TuevEvent(c, start, start + 1.0, label) for channels, start, label in rows for c in channels)


# (partition, folder, file stem, rate, seconds, events). Every class occurs in train and in eval;
# one event starts 0.5 s into its recording, so its window must wrap around (as BIOT's does).
DEFAULT_RECORDINGS = (
    ("train", "aaaaaaar", "aaaaaaar_00000001", 250.0, 40, _events(((0, 14), 10.0, 6), ((3,), 20.0, 1), ((12,), 30.4, 4))),
    ("train", "aaaaaaar", "aaaaaaar_00000002", 250.0, 40, _events(((5,), 0.5, 5), ((5, 6, 7), 15.0, 2))),
    ("train", "aaaaaabs", "aaaaaabs_00000001", 256.0, 40, _events(((8,), 12.0, 3), ((1,), 25.0, 6))),
    ("train", "aaaaaaci", "aaaaaaci_00000001", 250.0, 40, _events(((2,), 8.0, 6), ((21,), 22.0, 5))),
    ("train", "aaaaaadd", "aaaaaadd_00000005", 250.0, 40, _events(((10, 11), 18.0, 1), ((0,), 28.0, 6))),
    ("eval", "000", "bckg_000_a_", 250.0, 40, _events(((0,), 10.0, 6), ((4,), 20.0, 4))),
    ("eval", "001", "spsw_001_a_", 250.0, 40, _events(((3, 4), 12.0, 1), ((14,), 24.0, 2))),
    ("eval", "002", "pled_002_a_1", 250.0, 40, _events(((17,), 9.0, 3), ((19,), 21.0, 5), ((0,), 31.0, 6))),
)


def rec_text(events: Sequence[TuevEvent]) -> str:
    """The ``.rec`` content: ``channel,start,stop,label`` rows, times with one decimal."""
    return "".join(f"{e.channel},{e.start:.1f},{e.stop:.1f},{e.label}\n" for e in events)


def make_tuev(root: str | Path, recordings: Sequence[tuple] = DEFAULT_RECORDINGS, *, montage: str = "ar",
              drop: dict[str, Sequence[str]] | None = None, flat: dict[str, Sequence[str]] | None = None,
              seed: int = 0) -> list[TuevRecording]:
    """Write a TUEV copy under ``root``; ``drop`` / ``flat`` map a file stem to channel labels it
    lacks / records as a flat line."""
    written = []
    for i, (partition, folder, stem, rate, seconds, events) in enumerate(recordings):
        path = Path(root) / "edf" / partition / folder / f"{stem}.edf"
        bursts = sorted({(BURST_ELECTRODE, e.start, e.stop) for e in events})
        write_tuh_edf(path, folder, seconds, rate, montage=montage, drop=(drop or {}).get(stem, ()),
                      flat=(flat or {}).get(stem, ()), bursts=bursts, seed=seed + i)
        rec = path.with_suffix(".rec")
        rec.write_text(rec_text(events))
        written.append(TuevRecording(path, rec, partition, folder, tuple(events), rate, seconds))
    return written
