"""Recordings on disk -> shards of normalised single-channel windows + ``manifest.json``.

>>> manifest = prepare("eegmmidb/", "shards/", prepare_preset("eeg"), dataset="eegmmidb", workers=2)

One recording at a time (:func:`process_recording`, run in worker processes):

1. the adapter reads it (MNE reader, or text/CSV for the sets MNE cannot read); a truncated
   EDF/BDF is rejected, or with ``salvage_truncated`` (``prepare --salvage``) read up to its last
   whole data record, logged and noted in its manifest entry (``"salvaged"``);
2. channels of the modality are picked and canonically named (:mod:`data_pipelines.channels`);
3. a rate below ``min_sample_rate`` or a recording shorter than one window rejects the file;
   a channel with NaN/Inf samples, or flat (IQR 0), as recorded is dropped with its reason (one
   still non-finite or flat after resampling rejects the file, naming it);
4. ``channels_per_recording`` random good channels are kept (seeded by the recording id, so a
   re-run picks the same ones);
5. band-pass / notch (optional), resampling, robust normalisation, clipping, windowing.

Steps 2-5 are :func:`data_pipelines.preprocess.preprocess_recording`, the function ``Codec.tokenize``
prepares a recording with too: the codec sees at inference what it was trained on.

Output layout::

    OUT/manifest.json                       what was made from what (see below); written last
    OUT/train/shard-00000.array_record ...  one record per window (:mod:`data_pipelines.shards`)
    OUT/val/shard-00000.array_record ...
    OUT/progress/<split>-<nnnnn>.json       one per finished shard: what went into it
    OUT/progress/recordings/...             a Beam run's per-recording parts (removed when done)

``OUT`` may be a ``gs://`` URL (:mod:`data_pipelines.paths`: shards staged locally and uploaded
whole, JSON written whole); the input is read with local file I/O (a local folder, or a bucket
mounted with gcsfuse). :mod:`data_pipelines.beam` runs the same job as an Apache Beam pipeline
(``prepare --runner direct|dataflow|flink|spark``) through the same steps (:func:`plan`,
:func:`start`, :func:`process_recording`, :func:`recording_fragment`, :func:`group_progress`,
:func:`finish`), so both write the same files, byte for byte, and either can resume the other.

The split is decided before any file is read, by subject (or recording): a seeded draw of
``val_fraction`` of the subjects. Each split's recordings, sorted by id, are cut into groups of
``recordings_per_shard``; a group becomes one shard, written under a temporary name and renamed
when whole, then its progress file is written. A re-run (same input, same config) skips the
groups that have a progress file and redoes the rest, so an interrupted run finishes with exactly
the shards and manifest of an uninterrupted one; ``manifest.json`` exists only once every group
is done, and only if at least one window was written (a run that produced nothing leaves no
manifest, and no progress: there is nothing to resume). Bad files and channels never stop the
run: each is logged and listed under ``rejected`` with its reason.

Manifest keys: ``format``, ``dataset``, ``input``, ``config``, ``sample_rate``, ``window_samples``,
``windows`` (total), ``splits`` (per split: subjects, recordings, windows), ``shards`` (per split:
``{"path", "windows", "recordings"}``), ``recordings`` (``{"path", "recording", "subject",
"split", "channels", "windows", "source_rate", "duration_s", "shard", "channel_stats",
"salvaged"?}``; ``salvaged`` only for a truncated file read in part: ``{"kept_s", "declared_s",
"reason"}``, ``duration_s`` being what was kept),
``rejected`` (``{"path", "channel"?, "reason"}``; files the adapter passed over are listed too),
``channel_stats`` (per channel name over all recordings: median of the medians and of the IQRs,
in the recording's units, e.g. volts).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_pipelines import paths
from data_pipelines.config import PrepareConfig, config_from_dict, config_to_dict
from data_pipelines.datasets import Dataset, RecordingRef, Skipped, get_dataset
from data_pipelines.errors import ChannelError, RecordingError
from data_pipelines.manifest import MANIFEST
from data_pipelines.preprocess import NoUsableChannelError, choose_channels, preprocess_recording  # noqa: F401 (choose_channels: re-exported)
from data_pipelines.readers import TruncatedRecordingError
from data_pipelines.shards import SHARD_SUFFIX, ShardWriter, encode_recording
from data_pipelines.typed_config import save_config

log = logging.getLogger("data_pipelines.prepare")

PROGRESS_DIR = "progress"
FRAGMENTS_DIR = "progress/recordings"  # a Beam run's per-recording parts (data_pipelines.beam)
SALVAGE_HINT = "; `prepare --salvage` keeps the readable records"
FORMAT = "biocodec-jax shards v1"
SPLITS = ("train", "val")


# ---------------------------------------------------------------------------------------------
# One recording.


@dataclass
class RecordingResult:
    """What :func:`process_recording` made of one recording (windows, or the reason it failed)."""

    ref: RecordingRef
    windows: np.ndarray | None = None  # [n_windows, n_channels, window_samples] float32
    channels: tuple[str, ...] = ()
    starts: np.ndarray | None = None  # first sample of each window, at the target rate
    source_rate: float | None = None
    duration_s: float | None = None
    channel_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    rejected_channels: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    # A truncated file read in part (salvage_truncated): Truncation.to_dict(), else None.
    salvaged: dict | None = None
    # The windows as shard records (encode_records): what the local run's workers send back in
    # place of ``windows`` (None then), so that the main process only writes them.
    records: list[bytes] | None = None

    @property
    def n_windows(self) -> int:
        """Single-channel windows (windows x channels)."""
        if self.windows is None:
            return 0 if self.records is None else len(self.records)
        return self.windows.shape[0] * self.windows.shape[1]

    def encode_records(self) -> list[bytes]:
        """The shard records of the windows, window-major (:func:`data_pipelines.shards.encode_recording`)."""
        if self.records is not None:
            return self.records
        return encode_recording(self.windows, self.starts, self.channels, self.ref.recording_id, self.ref.subject)

    def single_channel(self) -> np.ndarray:
        """Every (window, channel) as its own item, window-major: ``[n_windows * C, 1, T]``."""
        n, c, t = self.windows.shape
        return self.windows.reshape(n * c, 1, t)


def process_recording(root: Path, ref: RecordingRef, dataset: Dataset, config: PrepareConfig) -> RecordingResult:
    """Read and preprocess one recording; a problem is returned in ``error``, never raised."""
    result = RecordingResult(ref)
    try:
        raw, truncation = dataset.read_recording(root, ref, salvage_truncated=config.salvage_truncated)
        if truncation is not None:
            result.salvaged = truncation.to_dict()
        result.source_rate = float(raw.info["sfreq"])
        result.duration_s = raw.n_times / result.source_rate
        try:
            p = preprocess_recording(raw, config, source=root / ref.path, channels=config.channels or dataset.channels,
                                     recording_id=ref.recording_id)
        except NoUsableChannelError as e:
            result.rejected_channels.extend((d["canonical"], d["reason"]) for d in e.dropped_channels)
            raise RecordingError(e.path, "no usable channel (every channel is flat or holds non-finite samples)") from e
        result.rejected_channels.extend((d["canonical"], d["reason"]) for d in p.dropped_channels)
        result.windows = p.windows()
        result.channels = p.channel_names
        result.starts = p.window_starts()
        result.channel_stats = p.channel_stats()
    except TruncatedRecordingError as e:
        result.error = e.reason + SALVAGE_HINT
    except ChannelError as e:
        result.error = f"channel {e.channel!r}: {e.reason}"
    except RecordingError as e:
        result.error = e.reason
    except Exception as e:  # an adapter or MNE failing in an unforeseen way must not kill the batch job
        result.error = f"unexpected {type(e).__name__}: {e}"
    return result


def recording_windows(path: str | Path, config: PrepareConfig, dataset: str | Dataset = "generic") -> RecordingResult:
    """Windows ``[n, C, T]`` of the single file ``path`` (raises :class:`RecordingError` on failure)."""
    path = Path(path)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    ref = RecordingRef(path.stem, path.stem, path.name)
    result = process_recording(path.parent, ref, dataset, config)
    if result.error is not None:
        raise RecordingError(path, result.error)
    return result


# ---------------------------------------------------------------------------------------------
# Splits and shard groups.


def assign_splits(refs: Sequence[RecordingRef], config: PrepareConfig) -> dict[str, str]:
    """``{recording_id: "train" | "val"}``: a seeded ``val_fraction`` of the subjects (or recordings).

    At least one unit goes to validation when ``val_fraction > 0`` and there are two or more;
    every recording of a subject lands in the same split.
    """
    unit = (lambda r: r.subject) if config.split_by == "subject" else (lambda r: r.recording_id)
    units = sorted({unit(r) for r in refs})
    n_val = 0
    if config.val_fraction > 0 and len(units) >= 2:
        n_val = min(len(units) - 1, max(1, int(round(config.val_fraction * len(units)))))
    order = np.random.default_rng(config.seed).permutation(len(units))
    val_units = {units[i] for i in order[:n_val]}
    return {r.recording_id: ("val" if unit(r) in val_units else "train") for r in refs}


@dataclass(frozen=True)
class ShardGroup:
    split: str
    index: int
    refs: tuple[RecordingRef, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}"

    @property
    def shard_path(self) -> str:
        return f"{self.split}/shard-{self.index:05d}{SHARD_SUFFIX}"


def shard_groups(refs: Sequence[RecordingRef], splits: dict[str, str], per_shard: int) -> list[ShardGroup]:
    groups = []
    for split in SPLITS:
        members = sorted(r for r in refs if splits[r.recording_id] == split)
        for i in range(0, len(members), per_shard):
            groups.append(ShardGroup(split, i // per_shard, tuple(members[i : i + per_shard])))
    return groups


# ---------------------------------------------------------------------------------------------
# The batch job's steps, shared by the local run (:func:`prepare`) and the Beam pipeline
# (:mod:`data_pipelines.beam`): one plan, one record format, one progress format, one manifest.


def _output(output_dir: str | os.PathLike):
    """``output_dir`` as a path: ``pathlib.Path`` if local, ``epath.Path`` for a URL (``gs://...``)."""
    return paths.as_path(output_dir) if paths.is_url(output_dir) else Path(output_dir)


def _remove(path) -> None:
    path.unlink(missing_ok=True)


def _remove_tree(path) -> None:
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.rmtree()


@dataclass(frozen=True)
class Plan:
    """What a run makes of ``root``, decided before any recording is read: the recordings found,
    the files the adapter passed over, the shard groups, and the run's identity (which a resumed
    run must match)."""

    root: Path
    dataset: Dataset
    refs: tuple[RecordingRef, ...]
    skipped: tuple[Skipped, ...]
    groups: tuple[ShardGroup, ...]
    identity: dict


def plan(input_dir: str | Path, config: PrepareConfig, dataset: str | Dataset = "generic") -> Plan:
    """Find the recordings under ``input_dir`` (a local folder) and cut them into shard groups."""
    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    refs, skipped = dataset.find(root)
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    log.info("%s: %d recordings found (%s layout)", root, len(refs), dataset.name)
    splits = assign_splits(refs, config)
    groups = shard_groups(refs, splits, config.recordings_per_shard)
    identity = {
        "format": FORMAT,
        "dataset": dataset.name,
        "config": config_to_dict(config),
        "recordings": hashlib.sha256("\n".join(r.display_path for r in refs).encode()).hexdigest(),
    }
    return Plan(root, dataset, tuple(refs), tuple(skipped), tuple(groups), identity)


def _check_resumable(output, identity: dict) -> None:
    """Refuse to mix runs: an output with progress from another config or input is an error."""
    stamp = output / PROGRESS_DIR / "run.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        if isinstance(previous.get("config"), dict):
            # Read back through the config loader: a field the stored config predates takes the
            # value it meant then (a missing ``resample`` is "fft", config.LEGACY_RESAMPLE).
            try:
                previous = {**previous, "config": config_to_dict(config_from_dict(previous["config"]))}
            except (KeyError, TypeError, ValueError):
                pass  # not a config this version reads: it differs
        if previous != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise ValueError(
                f"{output} holds shards from a run with a different {', '.join(changed)}; "
                "use a new --output (or delete it) to start over"
            )
    else:
        paths.write_json(stamp, identity)


def start(output, run: Plan, config: PrepareConfig) -> list[ShardGroup]:
    """Take ``output`` (a path from :func:`_output`) for ``run``: refuse another run's progress,
    write ``config.yaml``, remove ``manifest.json`` (a manifest means "complete": not while we
    work) and the leftovers of unfinished groups. Returns the groups still to do."""
    output.mkdir(parents=True, exist_ok=True)
    _check_resumable(output, run.identity)
    with paths.staged_file(output / "config.yaml", ".yaml") as tmp:
        save_config(config, tmp)
    _remove(output / MANIFEST)
    pending = [g for g in run.groups if not progress_path(output, g).exists()]
    for g in pending:  # leftovers of a killed run
        _remove(output / g.shard_path)
        _remove(output / (g.shard_path + ".tmp"))
    if len(pending) < len(run.groups):
        log.info("resuming: %d of %d shards already done", len(run.groups) - len(pending), len(run.groups))
    return pending


def finish(output, run: Plan, config: PrepareConfig) -> dict:
    """Merge the groups' progress into the manifest and write it (last), if any window was written.

    A run that produced nothing writes no manifest and forgets its progress: the next one (input
    fixed, or another config) starts afresh. The per-recording fragments of a Beam run
    (``progress/recordings/``) are removed either way: every group that needed them is done."""
    manifest = _manifest(run.root, output, run.dataset, config, run.groups, list(run.skipped))
    if manifest["windows"] == 0:
        _remove_tree(output / PROGRESS_DIR)
        return manifest
    paths.write_json(output / MANIFEST, manifest)
    _remove_tree(output / FRAGMENTS_DIR)
    return manifest


def progress_path(output, group: ShardGroup):
    """The progress file of ``group``: written once its shard is in place."""
    return output / PROGRESS_DIR / f"{group.name}.json"


def write_recording(writer: ShardWriter, result: RecordingResult) -> int:
    """Append ``result``'s windows (window-major: every channel of window 0, then window 1...),
    already encoded (``result.records``) or encoded here."""
    write = writer.write
    for record in result.encode_records():
        write(record)
    return result.n_windows


def _recording_entry(result: RecordingResult, split: str, shard: str | None) -> dict:
    ref = result.ref
    entry = {
        "path": ref.display_path,
        "recording": ref.recording_id,
        "subject": ref.subject,
        "split": split,
        "channels": list(result.channels),
        "windows": result.n_windows,
        "source_rate": result.source_rate,
        "duration_s": None if result.duration_s is None else round(result.duration_s, 6),
        "shard": shard,
        "channel_stats": result.channel_stats,
    }
    if result.salvaged is not None:
        entry["salvaged"] = dict(result.salvaged)
    return entry


def _rejections(result: RecordingResult) -> list[dict]:
    path = result.ref.display_path
    out = [{"path": path, "channel": ch, "reason": reason} for ch, reason in result.rejected_channels]
    if result.error is not None:
        out.append({"path": path, "reason": result.error})
    return out


def _report(rejections: list[dict]) -> None:
    for r in rejections:
        where = f"{r['path']} [{r['channel']}]" if "channel" in r else r["path"]
        log.warning("rejected %s: %s", where, r["reason"])


def recording_fragment(result: RecordingResult, group: ShardGroup) -> dict:
    """What one recording adds to its group's progress: ``{"entry"`` (its manifest entry),
    ``"rejected"`` (its rejections), ``"written"`` (the windows it puts in the shard)``}``; the
    problems are logged. The same for the local run and the Beam workers."""
    written = result.n_windows if result.error is None else 0
    fragment = {
        "entry": _recording_entry(result, group.split, group.shard_path if written else None),
        "rejected": _rejections(result),
        "written": written,
    }
    if result.salvaged is not None:
        s = result.salvaged
        declared = "an unknown length" if s["declared_s"] is None else f"{s['declared_s']:g} s"
        log.warning("salvaged %s: truncated file, kept %g s of whole data records of the %s its header declares",
                    result.ref.display_path, s["kept_s"], declared)
    _report(fragment["rejected"])
    return fragment


def group_progress(group: ShardGroup, fragments: list[dict]) -> dict:
    """The progress file of ``group`` from its recordings' fragments (in the group's order)."""
    entries = [f["entry"] for f in fragments]
    windows = sum(f["written"] for f in fragments)
    return {
        "shard": {"path": group.shard_path, "windows": windows, "recordings": sum(e["windows"] > 0 for e in entries)}
        if windows
        else None,
        "recordings": entries,
        "rejected": [r for f in fragments for r in f["rejected"]],
    }


# ---------------------------------------------------------------------------------------------
# The local run: a process pool over the recordings, groups written in order.


class _Worker:
    """Picklable callable for the process pool: one recording, its windows encoded as the shard's
    records (``records``; ``windows`` dropped), so that the worker does the encoding and the main
    process only writes (it would otherwise encode every record, serially, after receiving the
    float32 windows, which are as large as the records)."""

    def __init__(self, root: Path, dataset: Dataset, config: PrepareConfig):
        self.root, self.dataset, self.config = root, dataset, config

    def __call__(self, ref: RecordingRef) -> RecordingResult:
        result = process_recording(self.root, ref, self.dataset, self.config)
        if result.error is None:
            result.records = result.encode_records()
            result.windows = None
        return result


def _start_method() -> str:
    """How the pool starts its workers: ``fork`` (on Linux) unless JAX is loaded in this process,
    else ``spawn``. Forked workers start at once with this process's imports (MNE, SciPy, NumPy:
    spawning two and importing them again cost ~2.3 s of wall and ~4 CPU-s per run on 2 cores, a
    third of the 41-recording EEGMMI job); but JAX runs threads (and may hold a device) that do not
    survive a fork, so a caller that loaded it (a notebook, the tests) gets spawned workers, as do
    macOS/Windows, where fork is unsafe or missing. ``biocodec-jax prepare`` does not import JAX."""
    if sys.platform.startswith("linux") and "jax" not in sys.modules:
        return "fork"
    return "spawn"


def _init_worker() -> None:
    """Keep freed memory in the worker's heap (glibc): each recording allocates the same large
    arrays again (read, resampled, partitioned copies: ~10-20 MB each for 64 channels), which glibc
    otherwise maps afresh and returns at once (allocations above its dynamic mmap threshold), so
    every one pays its page faults again (on EEGMMI, 2 workers: ~15% of the run's CPU time). 32 MB is
    glibc's largest mmap threshold; the heap keeps at most 256 MB free. No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 32 * 2**20)
        libc.mallopt(m_trim_threshold, 256 * 2**20)
        libc.mallopt(m_top_pad, 64 * 2**20)
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave malloc as it is
        pass


def _results(worker: _Worker, refs: list[RecordingRef], workers: int) -> Iterator[RecordingResult]:
    """Results in the order of ``refs`` (ordered output is what makes shards reproducible)."""
    if workers <= 1:
        yield from map(worker, refs)
        return
    # concurrent.futures, not multiprocessing.Pool: Pool's worker-handler thread waits on the result
    # pipe too, so while a large result is being read it wakes and spins (~40,000 turns per run
    # here), taking a core from the workers; the executor's one thread reads the results itself.
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(_start_method()),
                                   initializer=_init_worker)
    try:
        yield from executor.map(worker, refs)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def prepare(
    input_dir: str | Path,
    output_dir: str | os.PathLike,
    config: PrepareConfig,
    *,
    dataset: str | Dataset = "generic",
    workers: int = 1,
    progress: bool = True,
    on_result: Callable[[RecordingResult], None] | None = None,
) -> dict:
    """Turn the recordings under ``input_dir`` into shards and a manifest in ``output_dir``.

    ``output_dir`` is a local folder or a URL (``gs://bucket/shards``: each shard is staged locally
    and uploaded whole; see :mod:`data_pipelines.paths`); ``input_dir`` is local (or a mounted
    bucket, gcsfuse). Resumes an interrupted run into the same ``output_dir`` (same input and
    config; otherwise a ValueError). Returns the manifest. ``on_result`` is called with each
    finished recording.

    ``manifest.json`` is written only if at least one window was: a run that produced nothing (no
    recordings found, or every one rejected) returns the manifest it would have written (with
    ``windows`` 0 and the reasons under ``rejected``) but leaves none on disk, so the output is
    never taken for a finished one. Nor does it leave progress to resume: the next run into
    ``output_dir`` starts afresh (and re-reads files fixed in the meantime).

    :func:`data_pipelines.beam.prepare_beam` is the same job as an Apache Beam pipeline (the same
    output, byte for byte).
    """
    run = plan(input_dir, config, dataset)
    output = _output(output_dir)
    pending = start(output, run, config)

    todo = [r for g in pending for r in g.refs]
    pool_results = _results(_Worker(run.root, run.dataset, config), todo, workers)
    first = [next(pool_results)] if todo else []  # starts the workers: forked before tqdm's thread exists
    results = itertools.chain(first, pool_results)
    bar = None
    if progress:
        bar = tqdm(total=len(todo), desc="recordings", unit="rec", mininterval=0.2 if sys.stderr.isatty() else 15.0)
    try:
        for group in pending:
            _write_group(output, group, results, bar, on_result)
    finally:
        if bar is not None:
            bar.close()
        pool_results.close()
    return finish(output, run, config)


def _write_group(output, group: ShardGroup, results, bar, on_result) -> None:
    fragments = []
    with ShardWriter(output / group.shard_path) as writer:
        for ref in group.refs:
            result = next(results)
            assert result.ref == ref, (result.ref, ref)
            fragments.append(recording_fragment(result, group))
            if result.error is None:
                write_recording(writer, result)
            if on_result is not None:
                on_result(result)
            if bar is not None:
                bar.update(1)
        progress = group_progress(group, fragments)
        if progress["shard"] is not None:
            writer.commit()
        else:
            writer.abort()
    paths.write_json(progress_path(output, group), progress)


def _channel_summary(recordings: list[dict]) -> dict:
    by_name: dict[str, list[dict]] = {}
    for r in recordings:
        for name, stats in r["channel_stats"].items():
            by_name.setdefault(name, []).append(stats)
    return {
        name: {
            "recordings": len(stats),
            "median_of_medians": float(np.median([s["median"] for s in stats])),
            "median_iqr": float(np.median([s["iqr"] for s in stats])),
        }
        for name, stats in sorted(by_name.items())
    }


def _manifest(root: Path, output, dataset: Dataset, config: PrepareConfig, groups, skipped: list[Skipped]) -> dict:
    recordings, rejected = [], [{"path": s.path, "reason": s.reason} for s in skipped]
    shards: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for group in groups:
        part = json.loads(progress_path(output, group).read_text())
        recordings.extend(part["recordings"])
        rejected.extend(part["rejected"])
        if part["shard"] is not None:
            shards[group.split].append(part["shard"])
    splits = {}
    for split in SPLITS:
        used = [r for r in recordings if r["split"] == split and r["windows"] > 0]
        splits[split] = {
            "subjects": sorted({r["subject"] for r in used}),
            "recordings": len(used),
            "windows": sum(r["windows"] for r in used),
        }
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "input": str(root),
        "config": config_to_dict(config),
        "sample_rate": config.sample_rate,
        "window_samples": config.window_samples,
        "windows": sum(s["windows"] for s in splits.values()),
        "splits": splits,
        "shards": shards,
        "recordings": recordings,
        "rejected": rejected,
        "channel_stats": _channel_summary(recordings),
    }
