"""``bonn``: the Bonn University epilepsy EEG sets (Andrzejak et al., Phys. Rev. E 64, 061907, 2001).

Five sets (Z/A, O/B, N/C, F/D, S/E) of 100 single-channel segments each, 4097 samples at
173.61 Hz (23.6 s), as plain text with one sample per line. The root holds the sets as the
distributed zip files (``Z.zip`` ...) or extracted into folders (``Z/Z001.txt`` ...). The
recordings are not linked to subjects in the release, so each segment is its own subject for the
train/validation split.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import mne
import numpy as np

from data_pipelines.datasets.base import Dataset, RecordingRef, Skipped, walk_files
from data_pipelines.errors import RecordingError
from data_pipelines.readers import raw_from_array

SAMPLE_RATE = 173.61


def _ref(rel_path: str, member_name: str | None) -> RecordingRef:
    stem = Path(member_name or rel_path).stem
    rid = f"{stem[:1].upper()}/{stem}"
    return RecordingRef(rid, rid, rel_path, member_name)


class BonnDataset(Dataset):
    name = "bonn"

    def find(self, root: Path) -> tuple[list[RecordingRef], list[Skipped]]:
        refs, skipped = [], []
        for path in walk_files(root):
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() == ".zip":
                try:
                    with zipfile.ZipFile(path) as archive:
                        names = [n for n in archive.namelist() if n.lower().endswith(".txt")]
                except zipfile.BadZipFile as e:
                    skipped.append(Skipped(rel, f"cannot open the zip archive ({e})"))
                    continue
                refs.extend(_ref(rel, name) for name in names)
            elif path.suffix.lower() == ".txt":
                refs.append(_ref(rel, None))
            else:
                skipped.append(Skipped(rel, f"not a Bonn segment (.txt) or set archive (.zip): {path.suffix!r}"))
        return sorted(refs), skipped

    def read(self, root: Path, ref: RecordingRef) -> mne.io.BaseRaw:
        source = f"{root / ref.path}::{ref.member}" if ref.member else str(root / ref.path)
        try:
            if ref.member:
                with zipfile.ZipFile(root / ref.path) as archive:
                    text = archive.read(ref.member)
            else:
                text = (root / ref.path).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise RecordingError(source, f"cannot be read as a Bonn segment ({type(e).__name__}: {e})") from e
        return raw_from_array(parse_segment(text, source)[None, :], ["EEG"], SAMPLE_RATE, "eeg", source)


def parse_segment(text: bytes, source: str) -> np.ndarray:
    """The samples of one segment file (one number per line); a RecordingError naming ``source`` otherwise."""
    try:
        x = np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise RecordingError(source, f"cannot be read as a Bonn segment ({type(e).__name__}: {e})") from e
    if x.ndim != 1 or x.size == 0:
        raise RecordingError(source, f"expected one column of samples; got shape {x.shape}")
    return x
