"""``manifest.json``: what a ``prepare`` output holds. Written last by :mod:`data_pipelines.prepare`
(its keys are listed there), read by the loader and by every script that uses the shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """The manifest of a finished ``prepare`` output (FileNotFoundError if missing or unfinished)."""
    shard_dir = Path(shard_dir)
    path = shard_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{shard_dir}: no {MANIFEST} (not a prepared shard directory, or preparation did not finish: "
            "re-run prepare into it to complete it)"
        )
    return json.loads(path.read_text())
