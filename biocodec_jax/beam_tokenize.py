"""``tokenize`` as an Apache Beam pipeline over recordings: the same ``<name>_tokens.npz`` files as
:func:`biocodec_jax.batch.tokenize_files`, made by the same per-file step
(:class:`biocodec_jax.batch.TokenizeFile`), on Beam's DirectRunner or a cluster.

>>> report = tokenize_beam("runs/eeg/codec", "corpus/", "gs://bucket/tokens", runner="direct", workers=4)

Each worker loads the codec once (``DoFn.setup``), then tokenizes the recordings it is given (one
element per recording, spread over the workers by a ``Reshuffle``). As the local command: an
output already there (tokens of this codec with as many quantizers) is left as it is and counted
as already done, so re-running finishes an interrupted run; a bad recording is reported with its
reason and skipped; two recordings with one output name: the second fails. The outcome of each
file is gathered in one small report file ``OUTPUT/.beam-tokenize-<id>.json``, read back and
deleted when the pipeline ends, and counted with Beam metrics (namespace ``biocodec``):
``files_written``, ``files_existing``, ``files_failed``, ``channels_dropped``.

The codec and the input recordings are read by the workers with local file I/O (local paths on
the DirectRunner; on a cluster, paths every worker can read: a gcsfuse mount, a shared
filesystem); the output may be a ``gs://`` URL (each file staged, then uploaded whole). Runners and
their options are those of ``prepare`` (:mod:`data_pipelines.beam`), e.g.::

    biocodec-jax tokenize --runner direct --workers 4 --codec runs/eeg/codec --input corpus/ --output tokens/
    biocodec-jax tokenize --runner dataflow --codec /mnt/gcs/codec --input /mnt/gcs/corpus --output gs://B/tokens -- \\
        --project P --region R --temp_location gs://B/tmp --setup_file ./pyproject.toml

Apache Beam is an optional extra (``pip install "biocodec-jax[beam]"``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from biocodec_jax import batch
from biocodec_jax.codec import Codec
from data_pipelines import paths
from data_pipelines.beam import METRICS, beam, pipeline_options, run_pipeline


class _Tokenize(beam.DoFn):
    """One recording -> its tokens file (or the reason it failed); yields its outcome as a dict."""

    def __init__(self, codec: str, output: str, n_q: int | None, force: bool, precision: str):
        self.codec_source, self.output, self.n_q, self.force, self.precision = codec, output, n_q, force, precision
        self.counters = {k: beam.metrics.Metrics.counter(METRICS, f"files_{k}") for k in ("written", "existing", "failed")}
        self.channels_dropped = beam.metrics.Metrics.counter(METRICS, "channels_dropped")

    def setup(self):
        codec = Codec.open(self.codec_source).with_numerics(self.precision)
        self.tokenize_one = batch.TokenizeFile(codec, self.output, n_q=self.n_q, force=self.force)

    def process(self, element: str):
        path = Path(element)
        before = len(self.tokenize_one.dropped)
        kind, value = batch.file_outcome(path, self.tokenize_one, batch.TOKENIZE_ERRORS)
        dropped = self.tokenize_one.dropped[before:]
        self.counters[kind].inc()
        self.channels_dropped.inc(len(dropped))
        yield {"path": element, "kind": kind, "value": str(value) if kind != "written" else value.name,
               "dropped": [[channel, reason] for _, channel, reason in dropped]}


class _WriteReport(beam.DoFn):
    def __init__(self, report: str):
        self.report = report

    def process(self, outcomes):
        paths.write_json(self.report, sorted(outcomes, key=lambda o: o["path"]))
        yield len(outcomes)


def tokenize_beam(
    codec: str | os.PathLike,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    n_q: int | None = None,
    force: bool = False,
    precision: str = "float32",
    runner: str = "direct",
    workers: int = 2,
    pipeline_args: Sequence[str] = (),
) -> dict[str, list]:
    """:func:`biocodec_jax.batch.tokenize_files` as a Beam pipeline on ``runner``; ``codec`` is the
    codec's path (each worker opens it: ``Codec.open``). Returns the same report: ``{"written":
    [paths], "failed": [(path, reason)], "existing": [(path, output)], "dropped": [(path, channel,
    reason)]}``, each list in the order of the files."""
    files = batch.recordings_under(source)
    options = pipeline_options(runner, workers, pipeline_args)
    outputs = batch._Outputs(output)
    order = {f: i for i, f in enumerate(files)}
    failed: list[tuple[Path, str]] = []
    todo: list[str] = []
    for path in files:  # output names claimed here, in the files' order, as the local loop does
        kind, reason = batch.file_outcome(path, lambda p: outputs.claim(batch.tokens_target(outputs.folder, p), p),
                                          batch.TOKENIZE_ERRORS)
        if kind == "failed":
            failed.append((path, reason))
        else:
            todo.append(os.path.abspath(path))
    report: dict[str, list] = {"written": [], "failed": failed, "existing": [], "dropped": []}
    report_path = str(paths.as_path(output) / f".beam-tokenize-{uuid.uuid4().hex[:12]}.json")
    try:
        if todo:
            pipeline = beam.Pipeline(options=options)
            _ = (
                pipeline
                | "recordings" >> beam.Create(todo)
                | "spread" >> beam.Reshuffle()
                | "tokenize" >> beam.ParDo(_Tokenize(str(codec), str(paths.as_path(output)), n_q, force, precision))
                | "gather" >> beam.combiners.ToList()
                | "report" >> beam.ParDo(_WriteReport(report_path))
            )
            run_pipeline(pipeline)
            outcomes = paths.read_json(report_path)
            paths.as_path(report_path).unlink(missing_ok=True)
            by_resolved = {os.path.abspath(f): f for f in files}
            for o in outcomes:
                path = by_resolved[o["path"]]
                if o["kind"] == "written":
                    report["written"].append((path, outputs.folder / o["value"]))
                elif o["kind"] == "existing":
                    report["existing"].append((path, batch.output_dir(o["value"])))
                else:
                    report["failed"].append((path, o["value"]))
                report["dropped"].extend((path, channel, reason) for channel, reason in o["dropped"])
    finally:
        outputs.tidy()
    for key in report:
        report[key].sort(key=lambda item: order[item[0]])
    report["written"] = [target for _, target in report["written"]]
    return report


__all__ = ["tokenize_beam"]
