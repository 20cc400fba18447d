"""The ``biocodec-jax`` command: thin subcommands, each calling one library function or program.

    biocodec-jax demo [--minutes M] [--steps N] [--output DIR] ...   (see biocodec-jax demo --help)
    biocodec-jax prepare --input DIR --output DIR [--preset eeg|emg] [--dataset NAME] [--workers N] ...
                         [--runner local|direct|dataflow|flink|spark [-- RUNNER OPTIONS]]
    biocodec-jax pretrain --config experiments/configs/pretrain_eeg.yaml --workdir DIR [--data DIR] ...
    biocodec-jax evaluate TASK --data DIR --codec CKPT_OR_WORKDIR [--protocol full|low-resource] [--seeds N] ...
    biocodec-jax convert --from-torch CKPT.pt --output DIR [--preset eeg|emg]   (the original's weights -> ours)
    biocodec-jax convert --to-torch DIR_OR_WORKDIR --output CKPT.pt [--step N]  (ours -> the original's checkpoint)
    biocodec-jax info CODEC [--step N] [--json]   (what a codec is: preset, rates, bitrate, size, training)
    biocodec-jax tokenize --codec CODEC --input FILE_OR_DIR --output DIR [--n-q K]   (recordings -> *_tokens.npz)
    biocodec-jax reconstruct --codec CODEC --input TOKENS_OR_DIR --output DIR       (tokens -> *_recon_raw.fif)
    biocodec-jax report --codec CODEC --input FILE [--output DIR]   (report.md + figures: how well it codes FILE)

Every command's --help ends with examples; bad input exits 2 (nothing could start) or 1 (some
files skipped) with a message naming the file.

``demo`` and ``evaluate`` are programs built on the library (``experiments/``), which the library
does not import: they are found by name in the entry-point group ``biocodec_jax.programs``
(``setup.cfg``), each a ``main(argv, prog) -> int`` that parses its own options.

The commands that compute import JAX (and Orbax, Grain, ...) inside the command: this module is
also what ``prepare``'s spawned worker processes import first (they re-run the console script), and
what ``--help`` runs; neither should pay ~1.3 s and ~180 MB for JAX.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from biocodec_jax import __version__, batch, reports
from biocodec_jax.config import pretrain_config
from data_pipelines.config import load_prepare_config
from data_pipelines.datasets import DATASETS
from data_pipelines.errors import RecordingError
from data_pipelines.prepare import prepare
from data_pipelines.readers import recording_format

PROGRAMS = "biocodec_jax.programs"  # entry-point group: program name -> main(argv, prog) -> int


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions to the terminal; keeps text with its own line breaks (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# Programs (experiments/): found by name, their options parsed by them.


def program(name: str) -> Callable[..., int]:
    """The ``main(argv, prog)`` registered as ``name`` in the entry-point group :data:`PROGRAMS`.

    Raises :class:`LookupError` saying how to install it when no installed distribution provides it.
    """
    found = list(entry_points(group=PROGRAMS, name=name))
    if not found:
        raise LookupError(f"the {name!r} program is not installed (no entry point {name!r} in the group {PROGRAMS}); "
                          "install biocodec-jax with its experiments: pip install -e . in the repository")
    return found[0].load()


def _run_program(name: str, rest: list[str]) -> int:
    try:
        main_of = program(name)
    except LookupError as err:
        return _fail(str(err))
    return main_of(rest, prog=f"biocodec-jax {name}")


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    """Train and test the EEG codec on the bundled data (the ``demo`` program: experiments/quickstart.py)."""
    return _run_program("demo", rest)


def _add_demo(sub) -> None:
    sub.add_parser(
        "demo", add_help=False, help="train the EEG codec for a few minutes on bundled real EEG and test it on a held-out subject"
    ).set_defaults(func=_demo, forward=True)


def _evaluate(args: argparse.Namespace, rest: list[str]) -> int:
    """One downstream task program (the ``evaluate`` program: experiments/tasks/), which takes TASK and its options."""
    return _run_program("evaluate", rest)


def _add_evaluate(sub) -> None:
    sub.add_parser(
        "evaluate", add_help=False,
        help="run a downstream task (linear probe, token classifier, PyTorch baselines) with a frozen codec",
    ).set_defaults(func=_evaluate, forward=True)


# ---------------------------------------------------------------------------------------------
# prepare


def _prepare(args: argparse.Namespace, rest: list[str]) -> int:
    """Recordings -> shards + manifest (data_pipelines.prepare). Exit 0 if any window was written;
    1, with no manifest, if none was (the message names the input and counts the files)."""
    logging.basicConfig(level=logging.INFO, format="prepare: %(message)s")
    overrides = list(args.set)
    if args.channels_per_recording is not None:
        overrides.append(f"channels_per_recording={args.channels_per_recording}")
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    try:
        config = load_prepare_config(args.preset, args.config, overrides)
        if args.salvage:
            config = dataclasses.replace(config, salvage_truncated=True)
        if args.runner == "local":
            manifest = prepare(
                args.input, args.output, config, dataset=args.dataset, workers=workers, progress=not args.no_progress
            )
        else:
            from data_pipelines.beam import prepare_beam  # ImportError without the [beam] extra

            logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' start-up chatter

            manifest = prepare_beam(args.input, args.output, config, dataset=args.dataset, runner=args.runner,
                                    workers=workers, pipeline_args=args.pipeline_args, progress=not args.no_progress)
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as err:  # bad input, config or output: nothing started
        return _fail(str(err))
    bad_files = sum(1 for r in manifest["rejected"] if "channel" not in r)
    bad_channels = len(manifest["rejected"]) - bad_files
    if manifest["windows"] == 0:  # prepare wrote no manifest: say why here
        tried = len({r["path"] for r in manifest["recordings"]} | {r["path"] for r in manifest["rejected"]})
        why = (f"no recordings found ({args.dataset} layout)" if tried == 0 else
               f"no window from the {tried} file(s) tried ({bad_files} failed, {bad_channels} channel(s) rejected; "
               "reasons logged above)")
        print(f"error: {args.input}: {why}; no manifest.json written to {args.output}", file=sys.stderr)
        return 1
    splits = ", ".join(f"{k} {v['windows']} windows / {v['recordings']} recordings / {len(v['subjects'])} subjects" for k, v in manifest["splits"].items())
    salvaged = sum(1 for r in manifest["recordings"] if r.get("salvaged"))
    print(
        f"{args.output}: {manifest['windows']} windows of {manifest['window_samples']} samples at "
        f"{manifest['sample_rate']:g} Hz ({splits}); rejected {bad_files} file(s) and {bad_channels} channel(s)"
        + (f", salvaged {salvaged} truncated file(s)" if salvaged else "")
        + f", reasons in {args.output}/manifest.json"
    )
    return 0


RUNNER_CHOICES = ("local", "direct", "dataflow", "flink", "spark")


def _add_runner(parser: argparse.ArgumentParser, what: str) -> None:
    """--runner, and the runner's own options after ``--`` (Beam's PipelineOptions, passed unchanged)."""
    parser.add_argument(
        "--runner", default="local", choices=RUNNER_CHOICES,
        help=f"local (default): {what}; direct: an Apache Beam pipeline on this machine (Beam's DirectRunner, "
        "--workers processes); dataflow / flink / spark: Beam's DataflowRunner / FlinkRunner / SparkRunner, "
        "configured by their own options after -- (e.g. -- --project P --region R --temp_location gs://B/tmp). "
        'Beam runners need pip install "biocodec-jax[beam]"; their workers read --input (and --codec) with local file '
        "I/O: a local folder for direct, a path every worker can read (gcsfuse mount, shared filesystem) on a cluster",
    )
    parser.set_defaults(runner_args=True, pipeline_args=[])


_PREPARE_EPILOG = """\
examples:
  # a folder of EDF/BDF/GDF/FIF/EEGLAB/BrainVision files -> 5-s windows at 250 Hz
  biocodec-jax prepare --input /data/my_eeg --output shards/my_eeg
  # TUH EEG Corpus layout, 5 random channels per recording (the original's recipe), 60 Hz notch
  biocodec-jax prepare --input /data/tuh_eeg --output shards/tueg --dataset tueg \\
      --channels-per-recording 5 --set notch_freq=60
  # EMG armband sessions at 1 kHz
  biocodec-jax prepare --input ../shared/data/myo_emg --output shards/myo --preset emg --dataset myo
  # the same job as an Apache Beam pipeline (DirectRunner, 4 processes), into a bucket
  biocodec-jax prepare --runner direct --workers 4 --input /data/eegmmidb --dataset eegmmidb --output gs://B/shards
  # on Google Cloud Dataflow (input readable by the workers: a gcsfuse mount); runner options after --
  biocodec-jax prepare --runner dataflow --input /mnt/gcs/eegmmidb --dataset eegmmidb --output gs://B/shards -- \\
      --project P --region R --temp_location gs://B/tmp --setup_file ./pyproject.toml

Bad recordings are logged and skipped (listed with the reason under "rejected" in
OUTPUT/manifest.json, with the resolved config); interrupting and re-running the same command
finishes the job (with either runner: their outputs are the same, byte for byte). A truncated
EDF/BDF is rejected unless --salvage: then its readable whole records are kept, logged, and noted
under "salvaged" in its manifest entry. --output may be a gs:// URL (pip install "biocodec-jax[gcs]");
--input is read with local file I/O (a local folder or a mounted bucket).
"""


def _add_prepare(sub) -> None:
    prep = sub.add_parser(
        "prepare",
        help="turn a folder of recordings into shards for training (resumable; bad files are reported and skipped)",
        description="Read every recording under --input, preprocess it (channels, resampling, robust "
        "normalisation, clipping, windows) and write shards + manifest.json to --output. Re-running "
        "into the same --output finishes an interrupted run. Exit status 0 if any window was written.",
        epilog=_PREPARE_EPILOG,
        formatter_class=_HelpFormatter,
    )
    prep.add_argument("--input", required=True, help="folder of recordings (local, or a mounted bucket: gcsfuse)")
    prep.add_argument("--output", required=True, help="output folder (shards, manifest.json): a local path or a gs:// URL")
    prep.add_argument("--preset", default="eeg", choices=("eeg", "emg"), help="rate, window and channel kind (default eeg)")
    prep.add_argument("--dataset", default="generic", choices=sorted(DATASETS), help="layout of --input (default generic)")
    prep.add_argument("--workers", type=int, default=None,
                      help="worker processes, local and direct runners (default: CPU count, at most 8)")
    prep.add_argument("--channels-per-recording", type=int, default=None, metavar="K", help="K random channels per recording (default all)")
    prep.add_argument("--config", default=None, help="YAML with PrepareConfig fields (applied over the preset)")
    prep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. notch_freq=60 (repeatable)")
    prep.add_argument("--salvage", action="store_true",
                      help="keep the readable whole records of a truncated EDF/BDF instead of rejecting it "
                      "(logged; noted as \"salvaged\" in its manifest entry; salvage_truncated=true)")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_runner(prep, "worker processes on this machine")
    prep.set_defaults(func=_prepare)


# ---------------------------------------------------------------------------------------------
# pretrain


def _pretrain_config(args: argparse.Namespace):
    """The run's Config: --config (its preset replaced by --preset) or --preset (default eeg), then the
    flags, then --set overrides; the window is the shards' unless the file or --set names it."""
    overrides = list(args.set)
    for flag, key in (("data", "train.data"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("checkpoint_every", "train.checkpoint_every"), ("seed", "train.seed")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return pretrain_config(args.config, args.preset, overrides)


def _pretrain(args: argparse.Namespace, rest: list[str]) -> int:
    """Data-parallel pretraining with Orbax checkpoints; resumes from the workdir (training.loop)."""
    from biocodec_jax.training import parallel

    # Before anything touches a device: join the multi-host job if there is one.
    parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from biocodec_jax.training.loop import NonFiniteLoss, Preempted, pretrain

    logging.basicConfig(
        level=logging.INFO if jax.process_index() == 0 else logging.WARNING,
        format=f"pretrain[{jax.process_index()}]: %(message)s",
    )
    try:
        result = pretrain(_pretrain_config(args), args.workdir, progress=not args.no_progress)
    except Preempted as e:
        print(str(e), file=sys.stderr)
        return 0
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as e:  # config, shards or workdir unusable (names the file)
        return _fail(str(e))
    if jax.process_index() == 0:
        last = result.losses.get(result.step)
        print(f"{args.workdir}: trained to step {result.step}" + (f", loss {last:.4f}" if last is not None else "")
              + "".join(f", {k} {v:.4f}" for k, v in result.last_eval.items()))
    return 0


_PRETRAIN_EPILOG = """\
examples:
  biocodec-jax pretrain --config experiments/configs/pretrain_eeg.yaml --data shards/tueg --workdir runs/eeg
  # a quick look on a tiny model
  biocodec-jax pretrain --preset tiny --data shards/my_eeg --workdir runs/tiny --steps 50 --batch-size 16
  # several hosts: the same command on each, with its own --process-id
  biocodec-jax pretrain --config experiments/configs/pretrain_eeg.yaml --data shards/tueg --workdir runs/eeg \\
      --coordinator-address 10.0.0.1:1234 --num-processes 4 --process-id 0
  (experiments/launch/ has TPU pod, SLURM and local multi-process scripts)
  # a production config on the tiny model: --preset replaces the file's preset, its other sections apply
  biocodec-jax pretrain --config experiments/configs/pretrain_eeg.yaml --preset tiny --data shards/my_eeg --workdir runs/t

The window length is the shards' (their manifest.json); a train.window_seconds named in the config
or with --set must agree with it. Re-running the same command resumes from the latest readable
checkpoint, on any number of devices.
"""


def _add_pretrain(sub) -> None:
    pre = sub.add_parser(
        "pretrain",
        help="pretrain the codec data-parallel over all devices of all hosts; resumes from --workdir",
        description="Pretrain on shards made by `biocodec-jax prepare`. Checkpoints go to WORKDIR/checkpoints; "
        "re-running the same command resumes from the latest one. SIGTERM saves and exits cleanly.",
        epilog=_PRETRAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    pre.add_argument("--config", default=None, help="YAML config (e.g. experiments/configs/pretrain_eeg.yaml)")
    pre.add_argument("--workdir", required=True, help="run directory: config.yaml, checkpoints/, metrics.jsonl, tensorboard/")
    pre.add_argument("--preset", default=None, choices=("eeg", "emg", "tiny"),
                     help="start from a preset (default eeg); with --config, replaces the file's preset (its other sections apply)")
    pre.add_argument("--data", default=None, help="shard directory (train.data)")
    pre.add_argument("--steps", type=int, default=None, help="train.steps")
    pre.add_argument("--batch-size", type=int, default=None, help="global batch size (train.batch_size)")
    pre.add_argument("--checkpoint-every", type=int, default=None, help="train.checkpoint_every")
    pre.add_argument("--seed", type=int, default=None, help="train.seed")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. optim.learning_rate=1e-4")
    pre.add_argument("--coordinator-address", default=None, help="HOST:PORT of process 0 (multi-host; or JAX_COORDINATOR_ADDRESS)")
    pre.add_argument("--num-processes", type=int, default=None, help="processes in the job (or JAX_NUM_PROCESSES)")
    pre.add_argument("--process-id", type=int, default=None, help="this process's index (or JAX_PROCESS_ID)")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.set_defaults(func=_pretrain)


# ---------------------------------------------------------------------------------------------
# convert


def _convert_output_problem(args: argparse.Namespace, output: Path) -> str | None:
    """What is wrong with the flags or ``--output`` before anything is read (None: nothing)."""
    if args.from_torch is not None:
        if args.step is not None or args.epoch is not None:
            return "--step and --epoch are for --to-torch"
        if output.is_file():
            return f"{output}: exists and is a file; --output is the directory to write the codec into"
        if output.is_dir() and any(output.iterdir()) and not args.force:
            return f"{output}: exists and is not empty; choose a new directory or pass --force to overwrite"
        return None
    if args.preset is not None:
        return "--preset is for --from-torch (the exported checkpoint is the codec's own architecture)"
    if output.is_dir():
        return f"{output}: is a directory; --output is the .pt file to write"
    if output.exists() and not args.force:
        return f"{output}: exists; choose a new file name or pass --force to overwrite"
    if not output.parent.is_dir():
        return f"{output.parent}: no such directory (for --output {output})"
    return None


def _convert(args: argparse.Namespace, rest: list[str]) -> int:
    """Between the original's PyTorch checkpoints and our codec format (interop.torch_checkpoint).

    Exit 0 on success; 2, with ``error: ...`` on stderr, for anything wrong with the input or output.
    """
    output = Path(args.output)
    problem = _convert_output_problem(args, output)
    if problem is not None:
        return _fail(problem)

    from biocodec_jax.codec import Codec
    from biocodec_jax.interop.torch_checkpoint import CheckpointError, export_torch_checkpoint

    try:
        if args.from_torch is not None:
            codec = Codec.from_torch_checkpoint(args.from_torch, config=args.preset)
            codec.save(output)
            print(f"{output}: the {codec.config.preset} codec from {args.from_torch} "
                  f"({len(codec.to_torch_state_dict())} tensors); load it with Codec.load({str(output)!r})")
        else:
            obj = export_torch_checkpoint(args.to_torch, output, step=args.step, epoch=args.epoch or 0)
            adam = obj["optimizer_state_dict"]["state"]
            step = obj["scheduler_state_dict"]["last_epoch"]
            print(f"{output}: the original's training checkpoint from {args.to_torch} "
                  f"({len(obj['model_state_dict'])} model tensors, "
                  + (f"Adam state at step {step})" if adam else "no Adam state: a fresh optimiser)"))
    except (CheckpointError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        return _fail(str(err))
    except (ValueError, RuntimeError) as err:  # e.g. a wrong --step, no readable training checkpoint
        source = args.from_torch or args.to_torch
        return _fail(str(err) if Path(source).name in str(err) else f"{source}: {err}")
    return 0


_CONVERT_EPILOG = """\
examples:
  # the original's training checkpoint (or a .pt / .npz state dict) -> our codec directory
  biocodec-jax convert --from-torch biocodec_eeg.pt --output codecs/eeg
  # name the architecture instead of recognising it from the shapes
  biocodec-jax convert --from-torch weights.npz --output codecs/emg --preset emg

  # our codec (Codec.save) -> the original's training checkpoint, empty Adam state
  biocodec-jax convert --to-torch codecs/eeg --output biocodec_eeg.pt
  # a training run (latest, or --step N) -> the original's checkpoint with Adam's moments
  # and step count (the structure of the original's own checkpoints; torch.load(..., weights_only=True) reads it)
  biocodec-jax convert --to-torch runs/pretrain_eeg --output resume.pt --epoch 3

Writing .pt files does not need PyTorch; reading never executes code from the file.
Exit status: 0 on success, 2 on a missing, unreadable or mismatched input (the message names it).
"""


def _add_convert(sub) -> None:
    conv = sub.add_parser(
        "convert",
        help="convert between the original's PyTorch checkpoints and our codec format (both ways)",
        description="--from-torch: read the original's weights (its training checkpoint, a .pt state dict\n"
        "  or .npz; the eeg/emg preset is recognised from the shapes) and write our codec directory.\n"
        "--to-torch: write the original's training checkpoint {epoch, model_state_dict (_orig_mod. keys),\n"
        "  optimizer_state_dict (Adam), scheduler_state_dict} from a saved codec or a training run.",
        epilog=_CONVERT_EPILOG,
        formatter_class=_HelpFormatter,
    )
    direction = conv.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from-torch", metavar="CKPT", help="the original's .pt training checkpoint, a .pt state dict or .npz")
    direction.add_argument("--to-torch", metavar="DIR", help="a saved codec (Codec.save), a training workdir or its checkpoints/")
    conv.add_argument("--output", required=True, help="--from-torch: codec directory to write; --to-torch: .pt file to write")
    conv.add_argument("--preset", default=None, choices=("eeg", "emg", "tiny"),
                      help="--from-torch: the architecture (default: recognised from the shapes)")
    conv.add_argument("--step", type=int, default=None,
                      help="--to-torch from a training run: this checkpoint step (default the latest readable)")
    conv.add_argument("--epoch", type=int, default=None, help="--to-torch: the 'epoch' entry of the checkpoint (default 0)")
    conv.add_argument("--force", action="store_true", help="overwrite an existing --output")
    conv.set_defaults(func=_convert)


# ---------------------------------------------------------------------------------------------
# info


def _info(args: argparse.Namespace, rest: list[str]) -> int:
    """Print what the codec at ``args.codec`` is (biocodec_jax.info); exit 2 naming the file if it is none."""
    from biocodec_jax import info
    from biocodec_jax.interop.torch_checkpoint import CheckpointError

    try:
        facts = info.describe(args.codec, args.step)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        return _fail(str(err))
    print(info.to_json(facts) if args.json else info.format_facts(facts))
    return 0


def _add_info(sub) -> None:
    inf = sub.add_parser(
        "info",
        help="what a codec is: preset, sampling and frame rate, bitrate, parameters, training step and data",
        description="Describe a saved codec (Codec.save), a training run (workdir or checkpoints/) or the "
        "original's PyTorch checkpoint (.pt / .npz).",
        epilog="examples:\n  biocodec-jax info runs/demo/codec\n  biocodec-jax info runs/pretrain_eeg --step 5000\n"
        "  biocodec-jax info biocodec_eeg.pt --json",
        formatter_class=_HelpFormatter,
    )
    inf.add_argument("codec", help="a saved codec directory, a training workdir / checkpoints directory, or a .pt / .npz")
    inf.add_argument("--step", type=int, default=None, help="a training run's checkpoint step (default: the latest readable)")
    inf.add_argument("--json", action="store_true", help="print JSON instead of aligned lines")
    inf.set_defaults(func=_info)


# ---------------------------------------------------------------------------------------------
# tokenize, reconstruct


def _tokens_io(args: argparse.Namespace, rest: list[str]) -> int:
    """``tokenize`` / ``reconstruct``: every file, bad ones reported and skipped; exit 1 if any failed.

    An output that is already there is left as it is and counted as already done (exit 0: re-running
    the command on a grown corpus does the new files only); ``--force`` recomputes it."""
    from biocodec_jax.codec import Codec
    from biocodec_jax.interop.torch_checkpoint import CheckpointError

    try:
        codec = Codec.open(args.codec).with_numerics(args.precision)
        if args.command == "tokenize" and args.runner != "local":
            if args.workers is not None and args.workers < 1:
                return _fail(f"--workers must be at least 1; got {args.workers}")
            from biocodec_jax.beam_tokenize import tokenize_beam  # ImportError without the [beam] extra

            logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' start-up chatter

            report = tokenize_beam(args.codec, args.input, args.output, n_q=args.n_q, force=args.force,
                                   precision=args.precision, runner=args.runner, workers=args.workers or 2,
                                   pipeline_args=args.pipeline_args)
        elif args.command == "tokenize":
            report = batch.tokenize_files(codec, args.input, args.output, n_q=args.n_q, progress=not args.no_progress,
                                              force=args.force)
        else:
            report = batch.reconstruct_files(codec, args.input, args.output, progress=not args.no_progress,
                                                 force=args.force)
    except (CheckpointError, FileNotFoundError, NotADirectoryError, ValueError, ImportError) as err:
        return _fail(str(err))
    for path, target in report.get("existing", []):
        print(f"already done {path}: {target} {batch.EXISTS_REASON}", file=sys.stderr)
    for path, channel, reason in report.get("dropped", []):
        print(f"dropped channel {channel!r} of {path}: {reason}; tokenized the others", file=sys.stderr)
    for path, reason in report["failed"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{args.command}: {len(report['written'])} written to {args.output}"
          + (f", {len(report['existing'])} already done (outputs there; --force recomputes them)" if report.get("existing") else "")
          + f", {len(report['failed'])} skipped"
          + (f", {len(report['dropped'])} channel(s) left out" if report.get("dropped") else ""))
    return 1 if report["failed"] else 0


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="compute dtype of the encoder/decoder (bfloat16: faster on GPUs/TPUs; a few codes differ)")


def _add_tokenize(sub) -> None:
    tok = sub.add_parser(
        "tokenize",
        help="recordings (EDF, BDF, GDF, FIF, EEGLAB, BrainVision) -> tokens (*_tokens.npz), with the codec's preparation",
        description="Pick the codec's channels, prepare them as its training data (rate, robust normalisation, "
        "clip) and write each recording's codes with its channel names, rates, start time and normalisation. "
        "Bad recordings are reported and skipped; exit 1 if any was skipped, 2 if nothing could start. A recording "
        "whose tokens (of this codec) are already in --output is left as it is and counted as already done, so "
        "re-running on a grown corpus tokenizes the new recordings only; --force recomputes them. --output is "
        "created with the first file written.",
        epilog="examples:\n  biocodec-jax tokenize --codec runs/demo/codec --input data/eegmmidb --output tokens/\n"
        "  biocodec-jax tokenize --codec biocodec_eeg.pt --input sub-01.edf --output tokens/ --n-q 2\n"
        "  biocodec-jax tokenize --codec runs/eeg --input corpus/ --output tokens/ --precision bfloat16   # on a GPU\n"
        "  # an Apache Beam pipeline (DirectRunner, 4 processes, the codec loaded once in each), into a bucket\n"
        "  biocodec-jax tokenize --runner direct --workers 4 --codec runs/eeg/codec --input corpus/ --output gs://B/tokens\n"
        "  # on Dataflow / Flink / Spark: their options after --, as for prepare (biocodec-jax prepare --help)\n"
        "  biocodec-jax tokenize --runner flink --codec /shared/codec --input /shared/corpus --output /shared/tokens -- \\\n"
        "      --flink_master host:8081 --environment_type LOOPBACK",
        formatter_class=_HelpFormatter,
    )
    tok.add_argument("--codec", required=True, help="saved codec, training run, or the original's .pt / .npz")
    tok.add_argument("--input", required=True, help="a recording or a folder of recordings (searched recursively)")
    tok.add_argument("--output", required=True, help="folder for <name>_tokens.npz: a local path or a gs:// URL")
    tok.add_argument("--n-q", type=int, default=None, help="quantizers to keep (default all: the full bitrate)")
    tok.add_argument("--force", action="store_true",
                     help="recompute and overwrite outputs already in --output (default: leave them, already done)")
    tok.add_argument("--no-progress", action="store_true", help="no progress bar")
    tok.add_argument("--workers", type=int, default=None, help="--runner direct: worker processes (default 2)")
    _add_precision(tok)
    _add_runner(tok, "one process, file after file")
    tok.set_defaults(func=_tokens_io)


def _add_reconstruct(sub) -> None:
    rec = sub.add_parser(
        "reconstruct",
        help="tokens (*_tokens.npz) -> recordings (*_recon_raw.fif) in physical units at the original rate",
        description="Decode tokens made by `biocodec-jax tokenize` with the same codec (another codec's tokens "
        "are refused) and undo the normalisation. Bad files are reported and skipped (exit 1). An output already "
        "in --output is left as it is (already done; --force recomputes it).",
        epilog="examples:\n  biocodec-jax reconstruct --codec runs/demo/codec --input tokens/ --output recon/",
        formatter_class=_HelpFormatter,
    )
    rec.add_argument("--codec", required=True, help="the codec that made the tokens")
    rec.add_argument("--input", required=True, help="a *_tokens.npz file or a folder of them")
    rec.add_argument("--output", required=True, help="folder for <name>_recon_raw.fif: a local path or a gs:// URL")
    rec.add_argument("--force", action="store_true",
                     help="recompute and overwrite outputs already in --output (default: leave them, already done)")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_precision(rec)
    rec.set_defaults(func=_tokens_io)


# ---------------------------------------------------------------------------------------------
# report


def _report_name(path: str) -> str:
    """The recording's name without its format's suffix (``S004R04.edf`` -> ``S004R04``, ``x.fif.gz`` -> ``x``)."""
    name = Path(path).name
    try:
        return name[: -len(recording_format(name))]
    except RecordingError:
        return Path(name).stem  # reading will say what is wrong with it


def _report(args: argparse.Namespace, rest: list[str]) -> int:
    """Write a codec's report on one recording (biocodec_jax.reports); exit 2 naming the file if unusable."""
    from biocodec_jax.codec import Codec
    from biocodec_jax.interop.torch_checkpoint import CheckpointError

    def fail(message: str, path: str | None = None) -> int:
        return _fail(message if path is None or str(path) in message else f"{path}: {message}")

    if args.channels < 1:
        return fail(f"--channels must be at least 1; got {args.channels}")
    try:
        codec = Codec.open(args.codec)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        return fail(str(err), args.codec)
    output = Path(args.output) if args.output is not None else Path(f"{_report_name(args.input)}_report")
    if sys.stderr.isatty():  # a minute or so for a long many-channel recording; logs keep only the outcome
        print(f"coding {args.input} with 1..{codec.n_q} quantizers and drawing the figures ...", file=sys.stderr)
    try:
        paths = reports.write_report(codec, args.input, output, max_plot_channels=args.channels,
                                     excerpt_seconds=args.excerpt, codec_source=str(args.codec))
    except (RecordingError, ValueError, OSError) as err:  # TokenizeError is both
        return fail(str(err), args.input)
    results = json.loads(paths["json"].read_text())
    summary, dropped = results["summary"], results["recording"].get("dropped_channels") or []
    corr, sdr = summary["correlation"]["mean"], summary["si_sdr_db"]["mean"]
    for d in dropped:
        print(f"left out channel {d['channel']!r} of {args.input}: {d['reason']}; reported on the others", file=sys.stderr)
    print(f"{paths['markdown']}: report on {args.input} (mean correlation "
          + ("n/a" if corr is None else f"{corr:.3f}") + ", mean SI-SDR " + ("n/a" if sdr is None else f"{sdr:.2f} dB")
          + (f"; {len(dropped)} channel(s) left out, listed in the report" if dropped else "")
          + f"); figures in {paths['markdown'].parent / 'figures'}")
    return 0


def _add_report(sub) -> None:
    rep = sub.add_parser(
        "report",
        help="how well a codec codes a recording: report.md + report.json + figures (signals, PSD, bands, "
        "correlation, SI-SDR, bitrate, codebook usage, quality vs quantizers)",
        description="Prepare the recording as for tokenization, encode and decode it (with every number of "
        "quantizers, 1..n_q) and write OUTPUT/report.md, OUTPUT/report.json and OUTPUT/figures/*.png. All "
        "channels are measured; --channels of them are drawn. Exit status 0 on success, 2 when the codec "
        "or the recording cannot be used (the message names it).",
        epilog="examples:\n  biocodec-jax report --codec runs/demo/codec --input data/eegmmidb/S004/S004R04.edf\n"
        "  biocodec-jax report --codec biocodec_eeg.pt --input sub-01_eeg.fif --output reports/sub-01 --channels 4\n"
        "  biocodec-jax report --codec runs/pretrain_emg --input session1.bdf --excerpt 2",
        formatter_class=_HelpFormatter,
    )
    rep.add_argument("--codec", required=True, help="saved codec, training run, or the original's .pt / .npz")
    rep.add_argument("--input", required=True, help="a recording (EDF, BDF, GDF, FIF, EEGLAB, BrainVision)")
    rep.add_argument("--output", default=None, help="report folder (default ./<recording name>_report)")
    rep.add_argument("--channels", type=int, default=8, metavar="N", help="channels drawn in the signal figure (default 8)")
    rep.add_argument("--excerpt", type=float, default=10.0, metavar="SECONDS",
                     help="length of the drawn excerpt, from the middle of the recording (default 10)")
    rep.set_defaults(func=_report)


# ---------------------------------------------------------------------------------------------

# The subcommands in the order `biocodec-jax --help` lists them.
SUBCOMMANDS = (_add_demo, _add_prepare, _add_pretrain, _add_evaluate, _add_convert, _add_info, _add_tokenize,
               _add_reconstruct, _add_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biocodec-jax", description="BioCodec, the neural-codec tokenizer for EEG and EMG, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``biocodec-jax`` console script."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "runner_args", False):  # prepare, tokenize: the Beam runner's own options after --
        if "--" in rest:
            args.pipeline_args, rest = rest[rest.index("--") + 1:], rest[: rest.index("--")]
        if args.pipeline_args and args.runner == "local":
            parser.error(f"options after -- ({' '.join(args.pipeline_args)}) are a Beam runner's; "
                         f"give --runner {'|'.join(r for r in RUNNER_CHOICES if r != 'local')}")
    if rest and not getattr(args, "forward", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args, rest)
    except BrokenPipeError:  # e.g. `biocodec-jax info CODEC | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
