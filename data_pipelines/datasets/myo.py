"""``myo``: raw surface EMG from the Myo armband (github aljazfrancic/myo-readings-dataset, MIT).

Layout: ``<participant>-<session>/<gesture>.txt`` (e.g. ``12345-1/0.txt``) at any depth under the
input. The repository as published nests the session folders one level down, by the forearm the
armband was on::

    _readings_right_hand/12345-1/0.txt ... _readings_left_hand/33334-1/7.txt

and the input may be the repository (or any folder above it), one of the reading folders, or a
folder holding the session folders directly (``../shared/data/myo_emg``). A recording is a ``.txt``
file named by a gesture number whose folder is named ``<participant>-<session>`` (session a number);
the folders above it are free. The subject is the participant (both hands of one participant are
one subject); the recording id is the path below the input, so the hand folder stays in it. The
forearm, when a folder above says ``left`` or ``right`` (``_readings_left_hand``), is kept as
metadata: :func:`parse_myo_path` and the Raw's ``info["description"]``. Documentation and
pictures (``README*``, ``LICENSE*``, ``*.md``, images) are passed over silently; any other file
is listed as skipped with what was expected and what was found (``curated.txt``, a list of
sessions, is one).

Each line holds the 8 EMG channels and a gesture label, comma-separated, at about 200 Hz. The
label column is dropped (downstream tasks read it themselves).

Units: the values are the armband's raw signed 8-bit ADC counts (-128..127). Thalmic Labs published
no gain from counts to volts, so none is invented: the channels stay MNE type ``emg`` (the ``emg``
preset picks them) but carry MNE's "no unit" (``FIFF_UNIT_NONE``, :data:`FIFF_UNIT`) instead of
volts, and the values are the counts unchanged (:data:`UNIT`). Preparation is unit-free (per-channel
``(x - median) / IQR``); medians and IQRs in a manifest or tokens of this dataset are in counts.
Code that names a unit from the channel *type* alone (MNE's defaults say ``V`` / ``µV`` for
``emg``) must read ``info["chs"][i]["unit"]`` to get this right.

200 Hz is far below the ``emg`` preset's 1 kHz: the preset's ``min_sample_rate`` (200 Hz) admits
it and the signal is resampled, but it carries no content above 100 Hz; say so when reporting
results on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from mne.io.constants import FIFF

from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped, relative_id, walk_files
from data_pipelines.errors import RecordingError
from data_pipelines.readers import raw_from_array

SAMPLE_RATE = 200.0
N_CHANNELS = 8
CHANNEL_NAMES = tuple(f"EMG{i}" for i in range(1, N_CHANNELS + 1))

# What the values are: counts of the armband's signed 8-bit ADC, no published gain to volts.
UNIT = "ADC counts (signed 8-bit, -128..127; arbitrary units, no published gain to volts)"
FIFF_UNIT = FIFF.FIFF_UNIT_NONE

LAYOUT = "<participant>-<session>/<gesture>.txt"
EXAMPLE = "12345-1/0.txt"
EXPECTED = f"expected {LAYOUT} (e.g. {EXAMPLE}) under the input"

SESSION_FOLDER = re.compile(r"^(?P<participant>[^-\s]+)-(?P<session>\d+)$")
GESTURE_FILE = re.compile(r"^(?P<gesture>\d+)\.txt$", re.IGNORECASE)
# Files of the published repository that are not recordings, passed over without a word.
DOCUMENTATION_NAMES = re.compile(r"^(README|LICEN[CS]E|NOTICE|AUTHORS|CHANGELOG)([._-].*)?$", re.IGNORECASE)
DOCUMENTATION_SUFFIXES = (".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf")
HANDS = ("left", "right")


@dataclass(frozen=True)
class MyoFile:
    """What a recording's path says: ``participant``, ``session``, ``gesture`` (the file's number)
    and ``hand`` (``"left"`` / ``"right"`` when a folder name says so, else None)."""

    participant: str
    session: str
    gesture: int
    hand: str | None


def _hand(folder_names) -> str | None:
    """The forearm the nearest folder names (``_readings_left_hand`` -> ``"left"``), else None."""
    for name in reversed(list(folder_names)):
        words = set(re.split(r"[^a-z0-9]+", name.lower()))
        found = [h for h in HANDS if h in words]
        if len(found) == 1:
            return found[0]
    return None


def _is_documentation(path: Path) -> bool:
    return path.suffix.lower() in DOCUMENTATION_SUFFIXES or bool(DOCUMENTATION_NAMES.match(path.name))


def parse_myo_path(root: Path, path: Path) -> MyoFile:
    """The layout fields of ``path`` (a file under ``root``); ValueError saying why it is no
    ``<participant>-<session>/<gesture>.txt``. The hand is looked for in the folders between
    ``root`` and the session folder and in ``root``'s own name."""
    rel = Path(path).relative_to(root)
    if rel.suffix.lower() != ".txt":
        raise ValueError("not a .txt file")
    if len(rel.parts) < 2:
        raise ValueError("no <participant>-<session> folder above it")
    folder = SESSION_FOLDER.match(rel.parts[-2])
    if folder is None:
        raise ValueError(f"its folder {rel.parts[-2]!r} is not <participant>-<session>, e.g. 12345-1")
    gesture = GESTURE_FILE.match(rel.name)
    if gesture is None:
        raise ValueError(f"the file name {rel.name!r} is not <gesture>.txt, a gesture number such as 0.txt")
    hand = _hand((Path(root).name, *rel.parts[:-2]))
    return MyoFile(folder.group("participant"), folder.group("session"), int(gesture.group("gesture")), hand)


class MyoDataset(Dataset):
    name = "myo"

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            rel = path.relative_to(root).as_posix()
            try:
                meta = parse_myo_path(root, path)
            except ValueError as why:
                if not _is_documentation(path):
                    skipped.append(Skipped(rel, f"not a Myo recording: {EXPECTED}; found {rel} ({why})"))
                continue
            refs.append(RecordingRef(relative_id(path, root, ".txt"), meta.participant, rel))
        return sorted(refs), skipped

    def read(self, root: Path, ref: RecordingRef) -> mne.io.BaseRaw:
        path = root / ref.path
        try:
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, ValueError) as e:
            raise RecordingError(path, f"cannot be read as Myo CSV ({type(e).__name__}: {e})") from e
        if table.shape[1] != N_CHANNELS + 1:
            raise RecordingError(path, f"expected {N_CHANNELS} EMG columns and a label per line; got {table.shape[1]} columns")
        raw = raw_from_array(table[:, :N_CHANNELS].T, list(CHANNEL_NAMES), SAMPLE_RATE, "emg", path)
        for ch in raw.info["chs"]:  # counts, not volts (see the module doc)
            ch["unit"] = FIFF_UNIT
            ch["unit_mul"] = FIFF.FIFF_UNITM_NONE
        meta = None
        # A ref of find() parses against root; a single file (root its own folder) against the
        # folder above its session folder.
        for base in (root, path.parent.parent):
            try:
                meta = parse_myo_path(base, path)
                break
            except ValueError:
                continue
        if meta is None:  # not named as the layout says: state only what the values are
            raw.info["description"] = f"Myo armband surface EMG; values: {UNIT}"
        else:
            forearm = f", {meta.hand} forearm" if meta.hand else ""
            raw.info["description"] = (
                f"Myo armband surface EMG, participant {meta.participant}, session {meta.session}, "
                f"gesture file {meta.gesture}{forearm}; values: {UNIT}"
            )
            raw.info["subject_info"] = {"his_id": meta.participant}
        return raw
