"""Local paths and object-store URLs (``gs://bucket/...``): the one place the project's file I/O
learns what a path is.

Everything that writes outputs (shards, manifests, workdirs, checkpoints, metrics, codecs, tokens)
takes a ``str`` or a path and goes through :func:`as_path`, which gives an ``etils.epath.Path``:
the filesystem layer Orbax already uses (local files through ``os``; ``gs://`` and ``s3://``
through fsspec, i.e. ``gcsfs`` for Google Cloud Storage, installed by the ``[gcs]`` extra). Its
API is pathlib's (``/``, ``exists``, ``read_text``, ``write_text``, ``glob``, ``mkdir``,
``iterdir``), so code written for local folders works on buckets.

Two things object stores do differently, handled here once:

- **whole-object writes**: an object appears when its upload finishes, whole, and there is no
  rename (a "rename" is copy + delete). Local writes go to a temporary name and ``os.replace``
  it into place; remote ones are written directly (:func:`write_text`, :func:`staged_file`).
- **libraries that need a local file name** (ArrayRecord's writer, ``numpy.savez``, MNE's readers):
  :func:`staged_file` gives a local file to write that is then moved or uploaded to its target;
  :func:`local_copy` downloads a remote file for a reader.

``gs://`` URLs are served by ``gcsfs``, which honours ``STORAGE_EMULATOR_HOST`` (the tests run
against a local emulator); Orbax's array storage (TensorStore) honours ``TENSORSTORE_GCS_HTTP_URL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from etils import epath

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
    """Whether ``path`` is a URL (``gs://...``, ``s3://...``), not a local path."""
    return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path``: a URL stays a URL; a local path is made absolute (work that
    changes directory, or runs in a worker process, still finds it)."""
    if isinstance(path, epath.Path) and is_url(path):
        return path
    if is_url(path):
        return epath.Path(os.fspath(path))
    return epath.Path(os.path.abspath(os.fspath(path)))


def local_path(path: PathLike) -> Path:
    """``path`` as a ``pathlib.Path``; ValueError naming it if it is a URL (for code that reads or
    writes with local file I/O only, e.g. ArrayRecord's reader: mount the bucket, gcsfuse)."""
    if is_url(path):
        raise ValueError(f"{path}: a URL, but this is read with local file I/O; give a local path or mount "
                         "the bucket (gcsfuse) and give the mount's path")
    return Path(os.fspath(path))


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole (parent folders made): a reader sees the old content or all
    of the new, never a part (local: a temporary file renamed into place; URL: one object upload)."""
    if is_url(path):
        target = as_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return
    target = Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def write_json(path: PathLike, data: Any, **kwargs: Any) -> None:
    """``data`` as JSON (indent 1 unless given) to ``path``, whole (:func:`write_text`)."""
    kwargs.setdefault("indent", 1)
    write_text(path, json.dumps(data, **kwargs) + "\n")


def read_json(path: PathLike) -> Any:
    return json.loads(as_path(path).read_text())


@contextlib.contextmanager
def staged_file(target: PathLike, suffix: str = "") -> Iterator[Path]:
    """A local file name to write ``target``'s content into; when the block ends without an
    exception the file is put in place at ``target`` (local: renamed, atomic; URL: uploaded, the
    object appears whole), otherwise deleted and ``target`` left as it was.

    >>> with staged_file("gs://bucket/shards/train/shard-00000.array_record") as local:
    ...     write_array_record(local)
    """
    if not is_url(target):
        final = Path(os.fspath(target))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp" + suffix)
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="biocodec-stage-") as d:
        tmp = Path(d) / ("staged" + suffix)
        yield tmp
        remote = as_path(target)
        remote.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb") as src, remote.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[Path]:
    """A local file with ``path``'s content: ``path`` itself if local, else a temporary download
    (kept for the block; the suffix is kept, readers dispatch on it)."""
    if not is_url(path):
        yield Path(os.fspath(path))
        return
    remote = as_path(path)
    with tempfile.TemporaryDirectory(prefix="biocodec-read-") as d:
        tmp = Path(d) / remote.name
        with remote.open("rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
        yield tmp


__all__ = ["PathLike", "is_url", "as_path", "local_path", "write_text", "write_json", "read_json", "staged_file", "local_copy"]
