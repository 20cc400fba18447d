"""``prepare`` as an Apache Beam pipeline: the same shards and ``manifest.json``, byte for byte, on
Beam's DirectRunner (local processes) or a cluster (Dataflow, Flink, Spark).

>>> manifest = prepare_beam("eegmmidb/", "gs://bucket/shards", prepare_preset("eeg"), dataset="eegmmidb",
...                         runner="direct", workers=4)

The plan (recordings found, split by subject, shard groups) is made before the pipeline starts, by
:func:`data_pipelines.prepare.plan`, as for the local run; then:

1. **one recording per element** (after a ``Reshuffle``, so recordings spread over the workers):
   :func:`data_pipelines.prepare.process_recording` (THE preprocessing: the local run's function)
   reads and windows it; the worker writes its records (:func:`data_pipelines.prepare.write_recording`)
   to ``OUT/progress/recordings/<name>.array_record`` and then its fragment
   ``OUT/progress/recordings/<name>.json`` (manifest entry, rejections; written last: it marks the
   recording done). ``<name>`` is the recording id made file-safe (``S001/S001R04`` ->
   ``S001_S001R04-<hash>``).
2. **one shard group per element** (the local run's groups, :func:`~data_pipelines.prepare.shard_groups`),
   once all its recordings are done: their records, in the group's order, become the group's shard,
   then its progress file ``OUT/progress/<split>-<nnnnn>.json`` (the local run's format) is written
   and the group's parts deleted.
3. **the manifest**, after the pipeline: :func:`data_pipelines.prepare.finish` (the local run's
   function) merges the groups' progress into ``OUT/manifest.json`` and removes the fragments.

Resumable as the local run is, and with it: re-running skips the groups that have a progress file
and the recordings that have a fragment; another config or input is refused. An output started
by the local run can be finished by the Beam pipeline and the other way round.

Progress and problems are Beam metrics (namespace ``biocodec``): ``recordings_done`` (recordings
read in this run, usable or not), ``recordings_rejected``, ``windows`` (single-channel windows
written), ``channels_rejected``, ``shards``; they are logged when the run ends. Each rejection is
logged by the worker too, and listed with its reason under ``rejected`` in the manifest.

**Where the files are.** The output may be a local folder or a ``gs://`` URL (shards staged on the
worker, uploaded whole; :mod:`data_pipelines.paths`; ``pip install "biocodec-jax[gcs]"``). The
input recordings are read with local file I/O: on the DirectRunner a local folder; on a cluster,
a path every worker can read (a gcsfuse mount of the bucket at the same path on each worker, or a
shared filesystem).

**Runners** (``runner``, ``biocodec-jax prepare --runner ...``), their own options passed through
unchanged (``pipeline_args``; on the command line, after ``--``) to Beam's ``PipelineOptions``:

- ``direct``: Beam's DirectRunner (its batch engine, the FnApiRunner: no Prism download),
  ``workers`` processes on this machine (``direct_num_workers``,
  ``direct_running_mode='multi_processing'``)::

      biocodec-jax prepare --runner direct --workers 8 --input /data/eegmmidb --output shards/ --dataset eegmmidb

- ``dataflow`` (Google Cloud Dataflow; ``pip install "apache-beam[gcp]"``); the workers need this
  package: ``--setup_file ./pyproject.toml`` (Beam builds an sdist of the repository and installs
  it, with its dependencies, on each worker), or a built sdist with ``--extra_package
  dist/biocodec_jax-0.1.0.tar.gz`` plus ``--requirements_file requirements.txt``, or a custom
  container (``--sdk_container_image``); the input must be readable by the workers (a gcsfuse
  mount, e.g. in the custom container)::

      biocodec-jax prepare --runner dataflow --input /mnt/gcs/eegmmidb --output gs://B/shards -- \\
          --project P --region R --temp_location gs://B/tmp --setup_file ./pyproject.toml \\
          --requirements_file requirements.txt --max_num_workers 32

- ``flink``: ``-- --flink_master host:8081 --environment_type LOOPBACK`` (workers in this process's
  machine; ``DOCKER`` or ``PROCESS`` for a real cluster, with an SDK image that has this package);
- ``spark``: ``-- --spark_master_url spark://host:7077 --environment_type DOCKER ...``.

Apache Beam is an optional extra (``pip install "biocodec-jax[beam]"``): importing this module
without it raises an ImportError saying so; :mod:`data_pipelines.prepare` never imports Beam.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence

from data_pipelines import paths
from data_pipelines import prepare as prep
from data_pipelines.config import PrepareConfig
from data_pipelines.datasets import Dataset, RecordingRef
from data_pipelines.shards import SHARD_SUFFIX, ShardWriter, read_records

BEAM_MISSING = 'Apache Beam is not installed: pip install "biocodec-jax[beam]" (or run with --runner local)'

try:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as _err:  # the optional extra is missing
    raise ImportError(BEAM_MISSING) from _err

log = logging.getLogger("data_pipelines.beam")

# --runner NAME -> Beam's runner; "local" is the process pool of data_pipelines.prepare (no Beam).
# "direct" is the DirectRunner's engine for batch pipelines, the FnApiRunner, named directly: Beam
# 2.77's DirectRunner first tries the Prism runner, a Go binary it downloads from GitHub at run
# time (it fails offline, after a wait, and would ignore direct_running_mode), then falls back to it.
RUNNERS = {"direct": "FnApiRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner"}
# multi_processing: one process per worker (MNE/NumPy/JAX work in Python holds the GIL; threads
# would often wait on one another); in_memory runs one bundle at a time. On the 41 EEGMMI files
# (eeg preset, 2 workers, a busy 2-core machine): multi_processing 34 s, multi_threading 35 s, the
# local process pool 27 s (the DirectRunner's start-up and the parts written then merged cost a
# few seconds; its worth is the same code on a cluster).
DIRECT_RUNNING_MODE = "multi_processing"
METRICS = "biocodec"  # namespace of the pipelines' counters


def pipeline_options(runner: str, workers: int = 2, pipeline_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam's options for ``runner`` (a key of :data:`RUNNERS`); ``pipeline_args`` (the runner's own
    flags, e.g. ``--project P --region R``) come last and so win over the defaults set here."""
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; one of {', '.join(RUNNERS)} (or local, without Beam)")
    flags = [f"--runner={RUNNERS[runner]}"]
    if runner == "direct":
        if workers < 1:
            raise ValueError(f"--workers must be at least 1; got {workers}")
        flags += [f"--direct_num_workers={workers}", f"--direct_running_mode={DIRECT_RUNNING_MODE}"]
    return PipelineOptions(flags=flags + list(pipeline_args))


def safe_name(recording_id: str) -> str:
    """A file name for ``recording_id`` (which may hold ``/`` or other characters): the id with
    anything but letters, digits, ``.``, ``_``, ``-`` made ``_``, plus a short hash of the id (two ids
    never share a name)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", recording_id).strip("._")[:80]
    return f"{readable}-{hashlib.sha1(recording_id.encode()).hexdigest()[:10]}"


def fragment_paths(output, ref: RecordingRef):
    """``(fragment .json, records part)`` of ``ref`` under ``output``."""
    base = output / prep.FRAGMENTS_DIR / safe_name(ref.recording_id)
    return base.with_name(base.name + ".json"), base.with_name(base.name + SHARD_SUFFIX)


def metric_totals(result) -> dict[str, int]:
    """The ``biocodec`` counters of a finished pipeline, summed over its steps (committed values
    where the runner has them, else attempted)."""
    totals: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(METRICS))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value or 0)
    return totals


def run_pipeline(pipeline: beam.Pipeline) -> dict[str, int]:
    """Run ``pipeline``, wait for it, log and return its ``biocodec`` counters."""
    result = pipeline.run()
    state = result.wait_until_finish()
    if state is not None and str(state) not in ("DONE", "PipelineState.DONE"):
        raise RuntimeError(f"the Beam pipeline ended in state {state}")
    totals = metric_totals(result)
    log.info("beam counters: %s", ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "none")
    return totals


class _ProcessRecording(beam.DoFn):
    """Stage 1: one recording -> its records part and fragment; yields ``(group name, recording id)``."""

    def __init__(self, root, dataset: Dataset, config: PrepareConfig, output: str, progress: bool):
        self.root, self.dataset, self.config, self.output, self.progress = root, dataset, config, output, progress
        self.done = beam.metrics.Metrics.counter(METRICS, "recordings_done")
        self.rejected = beam.metrics.Metrics.counter(METRICS, "recordings_rejected")
        self.windows = beam.metrics.Metrics.counter(METRICS, "windows")
        self.channels_rejected = beam.metrics.Metrics.counter(METRICS, "channels_rejected")

    def process(self, element):
        group, ref = element
        output = prep._output(self.output)
        result = prep.process_recording(self.root, ref, self.dataset, self.config)
        fragment = prep.recording_fragment(result, group)
        fragment_path, part_path = fragment_paths(output, ref)
        fragment["part"] = None
        if fragment["written"]:
            with ShardWriter(part_path) as writer:
                prep.write_recording(writer, result)
                writer.commit()
            fragment["part"] = part_path.name
        paths.write_json(fragment_path, fragment)  # last: the recording is done
        self.done.inc()
        self.windows.inc(fragment["written"])
        self.channels_rejected.inc(sum(1 for r in fragment["rejected"] if "channel" in r))
        if result.error is not None:
            self.rejected.inc()
        if self.progress:
            log.info("done %s: %d windows", ref.display_path, fragment["written"])
        yield group.name, ref.recording_id


class _WriteGroup(beam.DoFn):
    """Stage 2: a group whose recordings are all done -> its shard and progress file."""

    def __init__(self, output: str):
        self.output = output
        self.shards = beam.metrics.Metrics.counter(METRICS, "shards")

    def process(self, element):
        name, grouped = element
        (group,) = grouped["group"]
        output = prep._output(self.output)
        if prep.progress_path(output, group).exists():  # a retried bundle: done (and its parts deleted)
            yield name
            return
        fragments = [paths.read_json(fragment_paths(output, ref)[0]) for ref in group.refs]
        with ShardWriter(output / group.shard_path) as writer:
            for ref, fragment in zip(group.refs, fragments):
                if fragment["part"] is not None:
                    for record in read_records(fragment_paths(output, ref)[1]):
                        writer.write(record)
            progress = prep.group_progress(group, fragments)
            if writer.count != sum(f["written"] for f in fragments):
                raise RuntimeError(f"{group.shard_path}: {writer.count} records in the parts, "
                                   f"{sum(f['written'] for f in fragments)} in the fragments")
            if progress["shard"] is not None:
                writer.commit()
                self.shards.inc()
            else:
                writer.abort()
        paths.write_json(prep.progress_path(output, group), progress)
        for ref in group.refs:
            prep._remove(fragment_paths(output, ref)[1])
        yield name


def prepare_beam(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: PrepareConfig,
    *,
    dataset: str | Dataset = "generic",
    runner: str = "direct",
    workers: int = 2,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """:func:`data_pipelines.prepare.prepare` as a Beam pipeline on ``runner`` (see the module
    docstring): the same shards, progress files and manifest; resumable, and refused on an output
    of another config or input. Returns the manifest (written only if any window was)."""
    run = prep.plan(input_dir, config, dataset)
    output = prep._output(output_dir)
    options = pipeline_options(runner, workers, pipeline_args)  # bad options fail before anything is written
    pending = prep.start(output, run, config)
    fragments = output / prep.FRAGMENTS_DIR
    existing = {p.name for p in fragments.glob("*.json")} if fragments.exists() else set()
    todo = [(g, ref) for g in pending for ref in g.refs if fragment_paths(output, ref)[0].name not in existing]
    if pending:
        n_done = sum(len(g.refs) for g in pending) - len(todo)
        log.info("%d recordings to read, %d shards to write%s", len(todo), len(pending),
                 f" ({n_done} recordings done by an earlier run)" if n_done else "")
        where = str(paths.as_path(output_dir))  # absolute; workers rebuild the path from the string
        pipeline = beam.Pipeline(options=options)
        done = (
            pipeline
            | "recordings" >> beam.Create(todo)
            | "spread" >> beam.Reshuffle()
            | "preprocess" >> beam.ParDo(_ProcessRecording(run.root, run.dataset, config, where, progress))
        )
        groups = pipeline | "groups" >> beam.Create([(g.name, g) for g in pending])
        _ = {"group": groups, "done": done} | "join" >> beam.CoGroupByKey() | "shards" >> beam.ParDo(_WriteGroup(where))
        run_pipeline(pipeline)
    return prep.finish(output, run, config)


__all__ = ["prepare_beam", "pipeline_options", "RUNNERS", "BEAM_MISSING", "safe_name", "run_pipeline", "metric_totals"]
