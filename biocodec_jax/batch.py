"""Files in, files out: ``biocodec-jax tokenize`` / ``reconstruct`` over a recording or a folder of them.

>>> report = tokenize_files(codec, "data/eegmmidb/S004", "tokens/")      # -> tokens/<name>_tokens.npz
>>> report = reconstruct_files(codec, "tokens/", "recon/")               # -> recon/<name>_recon_raw.fif

Each file goes through the codec (``Codec.tokenize`` / ``Codec.detokenize``, see
:mod:`biocodec_jax.tokenizer`); a bad file is reported and skipped, an output is written whole and
renamed into place, an existing output is left as it is unless ``force``. The codec is an argument:
this module does not import :mod:`biocodec_jax.codec` (which imports the tokenizer that re-exports
these names).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from biocodec_jax.tokens import FORMAT, DroppedChannelsWarning, Tokens
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


class _AlreadyDone(Exception):
    """``write_one`` found the output of a file already there (and not asked to overwrite it)."""

    def __init__(self, target: Path):
        super().__init__(str(target))
        self.target = target


EXISTS_REASON = "exists (use --force to overwrite)"


def _each_file(files: list[Path], desc: str, progress: bool, write_one, errors: tuple) -> dict[str, list]:
    """``write_one(path) -> written path`` for every file; a file raising an exception is reported
    and skipped, the rest done. Returns ``{"written": [paths], "failed": [(path, reason)],
    "existing": [(path, output)]}``: the reason is the message of one of the expected ``errors``
    (without the path it may start with), or ``"unexpected <type>: <message>"`` for any other
    exception (a reader or MNE failing in an unforeseen way must not stop a batch job, as in
    ``prepare``); ``existing``: the files whose output was already there (``write_one`` raised
    :class:`_AlreadyDone`), left as they are."""
    report: dict[str, list] = {"written": [], "failed": [], "existing": []}
    for path in tqdm(files, desc=desc, unit="file", disable=not progress):
        try:
            report["written"].append(write_one(path))
        except _AlreadyDone as done:
            report["existing"].append((path, done.target))
        except errors as err:
            reason = str(err)
            report["failed"].append((path, reason[len(f"{path}: "):] if reason.startswith(f"{path}: ") else reason))
        except Exception as err:
            report["failed"].append((path, f"unexpected {type(err).__name__}: {err}"))
    return report


def _write_whole(target: Path, partial: Path, save) -> Path:
    """``save(partial)``, then rename it to ``target``: a failure never leaves a half-written
    ``target`` (nor the partial file)."""
    try:
        save(partial)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


class _Outputs:
    """The output folder of a batch: created with the first file written into it (never left
    empty: removed again, with the parents made for it, if nothing stayed in it), and the output
    name each input claims (two inputs of one run with the same output name: the second fails)."""

    def __init__(self, folder: Path):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a directory; --output is the folder to write into")
        self.folder = folder
        self.missing: list[Path] = []  # the folder and its missing parents, deepest first
        p = folder
        while not p.exists() and p.parent != p:
            self.missing.append(p)
            p = p.parent
        self.claimed: dict[Path, Path] = {}

    def claim(self, target: Path, path: Path) -> None:
        first = self.claimed.setdefault(target, path)
        if first != path:
            raise ValueError(f"its output {target.name} is also that of {first} in this run (the same name); "
                             "write one of them into another --output")

    def make(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def tidy(self) -> None:
        for d in self.missing:
            try:
                d.rmdir()  # only if empty
            except OSError:
                break


def _existing_tokens_problem(path: Path, codec_id: str, n_q: int) -> str | None:
    """None if ``path`` holds tokens of the codec ``codec_id`` with ``n_q`` quantizers (read from its
    metadata and the header of its codes, not the codes themselves), else what differs."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            with z.zip.open("codes.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read_header(f)[0]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or len(shape) != 3:
            raise ValueError("not a tokens file")
    except Exception:
        return "is not a readable tokens file"
    if meta.get("codec_id") != codec_id:
        return f"holds tokens of codec {meta.get('codec_id')}, not of this codec {codec_id}"
    if shape[1] != n_q:
        return f"holds {shape[1]} quantizers, not the {n_q} asked for"
    return None


def tokenize_files(codec: "Codec", source: str | Path, output: str | Path, *, n_q: int | None = None,
                   progress: bool = True, force: bool = False) -> dict[str, list]:
    """Tokenize a recording, or every recording under a directory, into ``output/<name>_tokens.npz``.

    A bad recording is reported and skipped, never half-written (each file is written whole, then
    renamed into place). Channels ``Codec.tokenize`` leaves out (NaN/Inf, flat) are listed in each
    file's tokens and reported here. An output that is already there, tokens of this codec with as
    many quantizers, is left as it is and listed under ``existing`` (already done: re-running on a
    grown corpus tokenizes the new recordings only); ``force=True`` recomputes it. An existing
    output of another codec or quantizer count, or not a tokens file, is a failure unless
    ``force``. ``output`` is created with the first file written into it. Returns
    ``{"written": [paths], "failed": [(path, reason)], "existing": [(path, output)],
    "dropped": [(path, channel, reason)]}``.
    """
    source, output = Path(source), Path(output)
    files = _inputs(source, "*")
    if source.is_dir():
        files = [f for f in files if f.name.lower().endswith(SUPPORTED_SUFFIXES)]
        if not files:
            raise FileNotFoundError(f"{source}: no recordings ({', '.join(SUPPORTED_SUFFIXES)})")
    outputs = _Outputs(output)
    want_n_q = codec.n_q if n_q is None else int(n_q)
    this_codec: dict[str, str] = {}  # its fingerprint, computed once when first needed

    dropped: list[tuple[Path, str, str]] = []

    def write_one(path: Path) -> Path:
        name = path.name[: -len(recording_format(path))] + TOKENS_SUFFIX
        target = output / name
        outputs.claim(target, path)
        if target.exists() and not force:
            if "id" not in this_codec:
                this_codec["id"] = codec.fingerprint()
            problem = _existing_tokens_problem(target, this_codec["id"], want_n_q)
            if problem is None:
                raise _AlreadyDone(target)
            raise ValueError(f"{target} exists and {problem} (use --force to overwrite)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DroppedChannelsWarning)  # reported in "dropped" instead
            tokens = codec.tokenize(path, n_q=n_q)
        written = _write_whole(target, outputs.make() / f".{name}.partial.npz", tokens.save)
        dropped.extend((path, d["channel"], d["reason"]) for d in tokens.dropped_channels)
        return written

    try:
        report = _each_file(files, "tokenize", progress, write_one, (RecordingError, ValueError, OSError))
    finally:
        outputs.tidy()
    report["dropped"] = dropped
    return report


def reconstruct_files(codec: "Codec", source: str | Path, output: str | Path, *, progress: bool = True,
                      force: bool = False) -> dict[str, list]:
    """Decode ``*_tokens.npz`` (one file or a directory of them) into ``output/<name>_recon_raw.fif``
    (physical units, original rate and channel names). Like :func:`tokenize_files`, bad inputs
    (missing, truncated or malformed: :class:`TokensFileError`; another codec's tokens) are
    reported and skipped, an existing output is left as it is (``existing``; ``force=True``
    recomputes it) and ``output`` is created with the first file written. Returns
    ``{"written": [paths], "failed": [(path, reason)], "existing": [(path, output)]}``."""
    source, output = Path(source), Path(output)
    files = _inputs(source, f"*{TOKENS_SUFFIX}")
    if not files:
        raise FileNotFoundError(f"{source}: no *{TOKENS_SUFFIX} files")
    outputs = _Outputs(output)

    def write_one(path: Path) -> Path:
        stem = path.name[: -len(TOKENS_SUFFIX)] if path.name.endswith(TOKENS_SUFFIX) else path.stem
        target = output / f"{stem}_recon_raw.fif"
        outputs.claim(target, path)
        if target.exists() and not force:
            raise _AlreadyDone(target)
        raw = codec.detokenize(Tokens.load(path))
        return _write_whole(target, outputs.make() / f".{stem}.partial_raw.fif",
                            lambda tmp: raw.save(tmp, overwrite=True, verbose=False))

    try:
        return _each_file(files, "reconstruct", progress, write_one, (ValueError, OSError))
    finally:
        outputs.tidy()


__all__ = ["tokenize_files", "reconstruct_files", "TOKENS_SUFFIX", "EXISTS_REASON"]
