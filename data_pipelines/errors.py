"""Errors raised while reading and preprocessing recordings.

Every error names the recording (``path``) so that a pipeline over thousands of files can log
and skip the bad ones; channel-level problems also name the channel.
"""

from __future__ import annotations

from pathlib import Path


class RecordingError(Exception):
    """A recording cannot be used: unknown format, unreadable, corrupt, too short, ...

    ``path`` is the file (or any description of the source when the data did not come from a
    file); ``reason`` says what is wrong in plain words.
    """

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else "<array>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


class ChannelError(RecordingError):
    """One channel of a recording is unusable (non-finite values, flat signal, ...)."""

    def __init__(self, path: str | Path | None, channel: str, reason: str):
        self.channel = channel
        super().__init__(path, f"channel {channel!r}: {reason}")
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.path, self.channel, self.reason))


def source_of(raw) -> str:
    """The file an :class:`mne.io.Raw` was read from (``"<raw>"`` if none), for error messages."""
    names = getattr(raw, "filenames", None) or ()
    return str(names[0]) if names and names[0] is not None else "<raw>"
