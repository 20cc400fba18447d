"""``manifest.json``: what a ``prepare`` output holds. Written last by :mod:`data_pipelines.prepare`
(its keys are listed there; the Beam pipeline, :mod:`data_pipelines.beam`, writes the same one),
read by the loader and by every script that uses the shards."""

from __future__ import annotations

import json
import os
from typing import Any

from data_pipelines import paths

MANIFEST = "manifest.json"


def read_manifest(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished ``prepare`` output, a local folder or a URL (``gs://...``)
    (FileNotFoundError if missing or unfinished)."""
    path = paths.as_path(shard_dir) / MANIFEST if paths.is_url(shard_dir) else paths.local_path(shard_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{shard_dir}: no {MANIFEST} (not a prepared shard directory, or preparation did not finish: "
            "re-run prepare into it to complete it)"
        )
    return json.loads(path.read_text())
