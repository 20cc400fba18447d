"""Choose the EEG channels of a recording and give them canonical names.

Names are normalised so that the same electrode has the same name in every dataset:

- PhysioNet EEG Motor Movement/Imagery: ``"Fc5."`` -> ``"FC5"``, ``"Cz.."`` -> ``"CZ"``;
- TUH EEG: ``"EEG FP1-REF"`` -> ``"FP1"``, ``"EEG T3-LE"`` -> ``"T3"``;
- anything else: surrounding spaces and dots removed, upper case.

A channel counts as EEG when MNE types it ``eeg`` and its name does not mark it as something
else (EDF files carry no channel types, so MNE calls every signal ``eeg``; TUH stores ECG as
``"EEG EKG1-REF"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import mne

from data_pipelines.errors import RecordingError, source_of

# Name fragments (upper case, after normalisation) of non-EEG signals stored as "eeg" in EDF files.
NON_EEG_NAME_MARKERS = ("EKG", "ECG", "EOG", "EMG", "RESP", "PHOTIC", "STI", "TRIGGER", "ANNOTATION", "IBI", "BURSTS", "SUPPR", "SPO2", "PULSE")

_PREFIX = re.compile(r"^(EEG|EOG|ECG|EKG|EMG)\s+", re.IGNORECASE)
_REFERENCE_SUFFIX = re.compile(r"-(REF|LE|AR|AVG|A1|A2|M1|M2)$", re.IGNORECASE)


def normalize_channel_name(name: str) -> str:
    """Canonical upper-case electrode name: ``"Fc5."`` -> ``"FC5"``, ``"EEG FP1-REF"`` -> ``"FP1"``.

    A type prefix (``"EEG "``, ``"EKG "``, ...) is removed only when something follows it; the
    type is kept in the name as a marker (``"EEG EKG1-REF"`` -> ``"EKG1"``, ``"ECG"`` stays ``"ECG"``).
    """
    out = name.strip().strip(".").strip()
    out = _PREFIX.sub("", out)
    out = _REFERENCE_SUFFIX.sub("", out)
    return out.strip().strip(".").upper()


def is_eeg_channel(name: str, ch_type: str = "eeg") -> bool:
    """Whether a channel of MNE type ``ch_type`` named ``name`` (raw or normalised) is EEG."""
    if ch_type != "eeg":  # eog, ecg, emg, stim, misc, resp, bio, ...
        return False
    upper = name.upper()
    return not any(marker in upper for marker in NON_EEG_NAME_MARKERS)


def eeg_channel_indices(names: Sequence[str], types: Sequence[str]) -> list[int]:
    """Indices of the EEG channels among ``names`` with MNE types ``types`` (same length)."""
    if len(names) != len(types):
        raise ValueError(f"{len(names)} channel names but {len(types)} channel types")
    return [i for i, (n, t) in enumerate(zip(names, types)) if is_eeg_channel(n, t)]


def is_emg_channel(name: str, ch_type: str = "emg") -> bool:
    """Whether a channel of MNE type ``ch_type`` named ``name`` is EMG (typed ``emg``, or an
    ``eeg``/``misc``/``bio`` signal whose name says EMG, as EDF files store it)."""
    if ch_type == "emg":
        return True
    return ch_type in ("eeg", "misc", "bio") and "EMG" in name.upper()


def pick_channels(
    raw: mne.io.BaseRaw, modality: str = "eeg", only: Sequence[str] | None = None, rename: bool = True
) -> mne.io.BaseRaw:
    """Keep the ``modality`` (``"eeg"`` or ``"emg"``) channels of ``raw``, canonically renamed.

    ``only``: canonical names to restrict to (e.g. the 10-20 electrodes); those the recording lacks
    are simply absent. Works in place, like MNE's own ``pick``, and returns ``raw``. Raises
    :class:`RecordingError` if no channel is left or two channels get the same name.
    """
    source = source_of(raw)
    if modality == "eeg":
        keep = eeg_channel_indices(raw.ch_names, raw.get_channel_types())
    elif modality == "emg":
        keep = [i for i, (n, t) in enumerate(zip(raw.ch_names, raw.get_channel_types())) if is_emg_channel(n, t)]
    else:
        raise ValueError(f"modality must be 'eeg' or 'emg'; got {modality!r}")
    if only is not None:
        wanted = {normalize_channel_name(n) for n in only}
        keep = [i for i in keep if normalize_channel_name(raw.ch_names[i]) in wanted]
    if not keep:
        restriction = f" (restricted to {sorted(only)})" if only is not None else ""
        raise RecordingError(source, f"no {modality.upper()} channels{restriction} among {raw.ch_names}")
    raw.pick(keep)
    if rename:
        new = [normalize_channel_name(n) for n in raw.ch_names]
        duplicates = sorted({n for n in new if new.count(n) > 1})
        if duplicates:
            raise RecordingError(source, f"channel names collide after normalisation: {duplicates}")
        raw.rename_channels(dict(zip(raw.ch_names, new)), verbose=False)
    return raw


def pick_eeg(raw: mne.io.BaseRaw, rename: bool = True) -> mne.io.BaseRaw:
    """Keep only the EEG channels of ``raw``, canonically renamed (see :func:`pick_channels`)."""
    return pick_channels(raw, "eeg", rename=rename)
