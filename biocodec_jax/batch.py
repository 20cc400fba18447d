"""Files in, files out: ``biocodec-jax tokenize`` / ``reconstruct`` over a recording or a folder of them.

>>> report = tokenize_files(codec, "data/eegmmidb/S004", "tokens/")      # -> tokens/<name>_tokens.npz
>>> report = reconstruct_files(codec, "tokens/", "recon/")               # -> recon/<name>_recon_raw.fif

Each file goes through the codec (``Codec.tokenize`` / ``Codec.detokenize``, see
:mod:`biocodec_jax.tokenizer`); a bad file is reported and skipped, an output is written whole and
renamed into place (or uploaded whole: ``output`` may be a ``gs://`` URL), an existing output is
left as it is unless ``force``. The per-file steps (:class:`TokenizeFile`, :func:`file_outcome`)
are also what the Beam pipeline (:mod:`biocodec_jax.beam_tokenize`) runs on its workers. The codec is an argument:
this module does not import :mod:`biocodec_jax.codec` (which imports the tokenizer that re-exports
these names).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from biocodec_jax.tokens import FORMAT, DroppedChannelsWarning, Tokens
from data_pipelines import paths
from data_pipelines.errors import RecordingError
from data_pipelines.readers import SUPPORTED_SUFFIXES, recording_format

if TYPE_CHECKING:
    from biocodec_jax.codec import Codec


TOKENS_SUFFIX = "_tokens.npz"


def _inputs(path: Path, pattern: str) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob(pattern) if p.is_file())
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{path}: no such file or directory")


def recordings_under(source: str | Path) -> list[Path]:
    """The recording ``source``, or every recording (by suffix) under the folder ``source``, sorted."""
    source = Path(source)
    files = _inputs(source, "*")
    if source.is_dir():
        files = [f for f in files if f.name.lower().endswith(SUPPORTED_SUFFIXES)]
        if not files:
            raise FileNotFoundError(f"{source}: no recordings ({', '.join(SUPPORTED_SUFFIXES)})")
    return files


def output_dir(output: str | os.PathLike):
    """``output`` as a path: ``pathlib.Path`` if local, ``epath.Path`` for a URL (``gs://...``)."""
    return paths.as_path(output) if paths.is_url(output) else Path(output)


class _AlreadyDone(Exception):
    """``write_one`` found the output of a file already there (and not asked to overwrite it)."""

    def __init__(self, target: Path):
        super().__init__(str(target))
        self.target = target


EXISTS_REASON = "exists (use --force to overwrite)"
TOKENIZE_ERRORS = (RecordingError, ValueError, OSError)  # expected failures of one file: reported by message
RECONSTRUCT_ERRORS = (ValueError, OSError)


def file_outcome(path: Path, write_one, errors: tuple) -> tuple[str, object]:
    """``write_one(path)`` as ``("written", output)``, ``("existing", output)`` (it raised
    :class:`_AlreadyDone`) or ``("failed", reason)``: the reason is the message of one of the
    expected ``errors`` (without the path it may start with), or ``"unexpected <type>: <message>"``
    for any other exception (a reader or MNE failing in an unforeseen way must not stop a batch
    job, as in ``prepare``). One rule for the local loop and the Beam workers."""
    try:
        return "written", write_one(path)
    except _AlreadyDone as done:
        return "existing", done.target
    except errors as err:
        reason = str(err)
        return "failed", reason[len(f"{path}: "):] if reason.startswith(f"{path}: ") else reason
    except Exception as err:
        return "failed", f"unexpected {type(err).__name__}: {err}"


def _each_file(files: list[Path], desc: str, progress: bool, write_one, errors: tuple) -> dict[str, list]:
    """``write_one(path) -> written path`` for every file (:func:`file_outcome`); a file raising an
    exception is reported and skipped, the rest done. Returns ``{"written": [paths], "failed":
    [(path, reason)], "existing": [(path, output)]}``; ``existing``: the files whose output was
    already there, left as they are."""
    report: dict[str, list] = {"written": [], "failed": [], "existing": []}
    for path in tqdm(files, desc=desc, unit="file", disable=not progress):
        kind, value = file_outcome(path, write_one, errors)
        report[kind].append(value if kind == "written" else (path, value))
    return report


def _write_whole(target, suffix: str, save):
    """``save(local file)``, then put it in place at ``target`` (local: renamed; URL: uploaded): a
    failure never leaves a half-written ``target`` (nor the partial file)."""
    with paths.staged_file(target, suffix) as partial:
        save(partial)
    return target


class _Outputs:
    """The output folder of a batch: created with the first file written into it (never left
    empty: removed again, with the parents made for it, if nothing stayed in it), and the output
    name each input claims (two inputs of one run with the same output name: the second fails).
    A URL (``gs://...``) has no folders to make or tidy."""

    def __init__(self, folder):
        self.folder = output_dir(folder)
        self.missing: list[Path] = []  # the folder and its missing parents, deepest first
        self.claimed: dict = {}
        if paths.is_url(folder):
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a directory; --output is the folder to write into")
        p = self.folder
        while not p.exists() and p.parent != p:
            self.missing.append(p)
            p = p.parent

    def claim(self, target, path: Path) -> None:
        first = self.claimed.setdefault(str(target), path)
        if first != path:
            raise ValueError(f"its output {target.name} is also that of {first} in this run (the same name); "
                             "write one of them into another --output")

    def tidy(self) -> None:
        for d in self.missing:
            try:
                d.rmdir()  # only if empty
            except OSError:
                break


def _existing_tokens_problem(path, codec_id: str, n_q: int) -> str | None:
    """None if ``path`` (local or URL) holds tokens of the codec ``codec_id`` with ``n_q`` quantizers
    (read from its metadata and the header of its codes, not the codes themselves), else what differs."""
    try:
        with (open(path, "rb") if isinstance(path, Path) else path.open("rb")) as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            with z.zip.open("codes.npy") as codes:
                version = np.lib.format.read_magic(codes)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read_header(codes)[0]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or len(shape) != 3:
            raise ValueError("not a tokens file")
    except Exception:
        return "is not a readable tokens file"
    if meta.get("codec_id") != codec_id:
        return f"holds tokens of codec {meta.get('codec_id')}, not of this codec {codec_id}"
    if shape[1] != n_q:
        return f"holds {shape[1]} quantizers, not the {n_q} asked for"
    return None


def tokens_target(folder, path: Path):
    """``folder/<name>_tokens.npz`` for the recording ``path`` (RecordingError if not a recording)."""
    return folder / (path.name[: -len(recording_format(path))] + TOKENS_SUFFIX)


class TokenizeFile:
    """The one per-file step of ``tokenize``, for the local loop (:func:`tokenize_files`) and the
    Beam workers (:mod:`biocodec_jax.beam_tokenize`): a recording -> ``output/<name>_tokens.npz``
    (:meth:`target`), written whole; returns the written path. An output already there with tokens
    of this codec and quantizer count raises :class:`_AlreadyDone` (unless ``force``); other tokens
    in the way are a ValueError. The channels the codec left out are appended to :attr:`dropped`
    as ``(path, channel, reason)``."""

    def __init__(self, codec: "Codec", output: str | os.PathLike, *, n_q: int | None = None, force: bool = False):
        self.codec, self.output, self.n_q, self.force = codec, output_dir(output), n_q, force
        self.want_n_q = codec.n_q if n_q is None else int(n_q)
        self._codec_id: str | None = None  # its fingerprint, computed once when first needed
        self.dropped: list[tuple[Path, str, str]] = []

    def target(self, path: Path):
        return tokens_target(self.output, path)

    def __call__(self, path: Path):
        target = self.target(path)
        if target.exists() and not self.force:
            if self._codec_id is None:
                self._codec_id = self.codec.fingerprint()
            problem = _existing_tokens_problem(target, self._codec_id, self.want_n_q)
            if problem is None:
                raise _AlreadyDone(target)
            raise ValueError(f"{target} exists and {problem} (use --force to overwrite)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedChannelsWarning)  # reported in "dropped" instead
            tokens = self.codec.tokenize(path, n_q=self.n_q)
        written = _write_whole(target, ".npz", tokens.save)
        self.dropped.extend((path, d["channel"], d["reason"]) for d in tokens.dropped_channels)
        return written


def tokenize_files(codec: "Codec", source: str | Path, output: str | os.PathLike, *, n_q: int | None = None,
                   progress: bool = True, force: bool = False) -> dict[str, list]:
    """Tokenize a recording, or every recording under a directory, into ``output/<name>_tokens.npz``.

    A bad recording is reported and skipped, never half-written (each file is written whole, then
    renamed into place, or uploaded whole when ``output`` is a URL, ``gs://...``). Channels
    ``Codec.tokenize`` leaves out (NaN/Inf, flat) are listed in each file's tokens and reported
    here. An output that is already there, tokens of this codec with as many quantizers, is left
    as it is and listed under ``existing`` (already done: re-running on a grown corpus tokenizes
    the new recordings only); ``force=True`` recomputes it. An existing output of another codec or
    quantizer count, or not a tokens file, is a failure unless ``force``. ``output`` is created
    with the first file written into it. Returns ``{"written": [paths], "failed": [(path, reason)],
    "existing": [(path, output)], "dropped": [(path, channel, reason)]}``.

    :func:`biocodec_jax.beam_tokenize.tokenize_beam` does the same as an Apache Beam pipeline.
    """
    files = recordings_under(source)
    outputs = _Outputs(output)
    tokenize_one = TokenizeFile(codec, output, n_q=n_q, force=force)

    def write_one(path: Path):
        outputs.claim(tokenize_one.target(path), path)
        return tokenize_one(path)

    try:
        report = _each_file(files, "tokenize", progress, write_one, TOKENIZE_ERRORS)
    finally:
        outputs.tidy()
    report["dropped"] = tokenize_one.dropped
    return report


def reconstruct_files(codec: "Codec", source: str | Path, output: str | os.PathLike, *, progress: bool = True,
                      force: bool = False) -> dict[str, list]:
    """Decode ``*_tokens.npz`` (one file or a directory of them) into ``output/<name>_recon_raw.fif``
    (physical units, original rate and channel names; ``output`` may be a URL, ``gs://...``). Like
    :func:`tokenize_files`, bad inputs (missing, truncated or malformed: :class:`TokensFileError`;
    another codec's tokens) are reported and skipped, an existing output is left as it is
    (``existing``; ``force=True`` recomputes it) and ``output`` is created with the first file
    written. Returns ``{"written": [paths], "failed": [(path, reason)], "existing": [(path, output)]}``."""
    source = Path(source)
    files = _inputs(source, f"*{TOKENS_SUFFIX}")
    if not files:
        raise FileNotFoundError(f"{source}: no *{TOKENS_SUFFIX} files")
    outputs = _Outputs(output)

    def write_one(path: Path):
        stem = path.name[: -len(TOKENS_SUFFIX)] if path.name.endswith(TOKENS_SUFFIX) else path.stem
        target = outputs.folder / f"{stem}_recon_raw.fif"
        outputs.claim(target, path)
        if target.exists() and not force:
            raise _AlreadyDone(target)
        raw = codec.detokenize(Tokens.load(path))
        return _write_whole(target, "_raw.fif", lambda tmp: raw.save(tmp, overwrite=True, verbose=False))

    try:
        return _each_file(files, "reconstruct", progress, write_one, RECONSTRUCT_ERRORS)
    finally:
        outputs.tidy()


__all__ = ["tokenize_files", "reconstruct_files", "recordings_under", "TokenizeFile", "file_outcome", "TOKENS_SUFFIX",
           "EXISTS_REASON", "TOKENIZE_ERRORS"]
