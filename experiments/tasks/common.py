"""What every task program shares: the command line, loading the codec, running and reporting.

    python -m experiments.tasks.<task> --data DIR --codec CKPT_OR_WORKDIR [--variant V]
        [--protocol full|low-resource] [--seeds N] [--methods linear_probe,token_classifier,eegnet,shallow]
        [--output DIR] [--config eval.yaml] [--set classifier.epochs=5 ...]

The run writes ``config.yaml`` (the resolved evaluation config and the command's arguments),
``results.json``, ``results.md`` and ``confusion_matrix.png`` into ``--output``
(default ``runs/eval/<task>[-<variant>]``); codes are cached in ``--cache``
(default ``runs/eval/code_cache``), keyed by codec and preprocessing.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import yaml

from biocodec_jax.codec import Codec
from biocodec_jax.config import apply_overrides, dataclass_from_dict, save_config, to_dict
from biocodec_jax.evaluation.dataset import DatasetError
from biocodec_jax.evaluation.runner import CODEC_METHODS, DEFAULT_PROTOCOL, EvalConfig, as_protocols, run_evaluation
from biocodec_jax.evaluation.splits import partition_holdout_folds, subject_folds
from data_pipelines.channels import pick_channels
from data_pipelines.errors import ChannelError, RecordingError
from experiments.tasks import TASKS, get_task

log = logging.getLogger("evaluate")
PROGRESS_LOGGERS = ("evaluate", "experiments", "biocodec_jax", "data_pipelines")  # what a run reports at INFO

EXAMPLES = """examples:
  biocodec-jax evaluate eegmmi --data ../shared/data/eegmmidb --codec runs/demo/codec
  biocodec-jax evaluate bonn --data ../shared/data/bonn_epilepsy --codec runs/demo/codec --protocol low-resource
  biocodec-jax evaluate emg_gestures --variant myo --data ../shared/data/myo_emg --codec runs/emg/workdir
  biocodec-jax evaluate tuab --data /data/tuh_eeg_abnormal/v3.0.1 --codec original.pt --seeds 5
"""


def build_parser(task: ModuleType, prog: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``task``: the options every task shares, then the task's own.

    A task module may define ``add_arguments(parser)``, which adds its own options (each with a
    default: a run without them is the task's default protocol); they are shown under "<task>
    options", and ``main`` passes the parsed values to ``task.load`` as keyword arguments (only the
    options the task declared; their names are in ``args.task_options``). The epilog prints the
    task's ``FILES`` (which files of the publisher's distribution it reads and how it checks them),
    when it has one, then the examples.
    """
    variants = tuple(task.VARIANTS)
    # The task's options on a parser of their own first: their names are what that parser parses
    # from no arguments, and they join the command line as its parent (a titled group of their own).
    options = argparse.ArgumentParser(add_help=False)
    add_arguments = getattr(task, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(options.add_argument_group(f"{task.NAME} options"))
    task_options = tuple(vars(options.parse_args([])))
    files = getattr(task, "FILES", None)
    epilog = (f"files read:\n{textwrap.indent(textwrap.dedent(files).strip(), '  ')}\n\n" if files else "") + EXAMPLES
    parser = argparse.ArgumentParser(
        prog=prog or f"python -m experiments.tasks.{task.NAME}",
        description=(task.__doc__ or "").strip().split("\n\n")[0],
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[options],
    )
    parser.add_argument("--data", required=True, help="the dataset as its publisher distributes it (see 'files read')")
    parser.add_argument("--codec", help="our codec dir, a training workdir, or the original's .pt/.npz; "
                        "not needed with --methods eegnet,shallow")
    parser.add_argument("--variant", choices=variants, default=variants[0], help=f"sub-protocol (default {variants[0]})")
    parser.add_argument("--protocol", choices=("full", "low-resource"), help="label fractions: 100%% or 1/10/100%%")
    parser.add_argument("--seeds", type=int, help="seeds per split (default 3)")
    parser.add_argument("--methods", help="comma-separated: linear_probe,token_classifier,eegnet,shallow")
    parser.add_argument("--max-splits", type=int, help="only the first N splits (a quick look, not the protocol)")
    parser.add_argument("--config", help="an evaluation config YAML (fields of EvalConfig)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. classifier.epochs=5 (repeatable)")
    parser.add_argument("--output", help="where to write the report (default runs/eval/<task>[-<variant>])")
    parser.add_argument("--cache", help="code cache directory (default runs/eval/code_cache)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the subject folds (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(task_options=task_options)
    return parser


def check_variant(task: str, variants, variant: str | None) -> str:
    """``variant``, or the task's default (its first) when None; a clear error for an unknown one."""
    variant = variants[0] if variant is None else variant
    if variant not in variants:
        raise ValueError(f"{task}: unknown variant {variant!r}; choose one of {', '.join(variants)}")
    return variant


# The splits several tasks share: a task module sets ``make_splits = common.subject_fold_splits(5)``.


def require_electrodes(raw, path: Path, electrodes: Sequence[str], protocol: str):
    """``raw`` reduced to its EEG ``electrodes``; a :class:`ChannelError` naming ``path`` and the first
    one it lacks if any is absent (``protocol`` says who needs them, e.g. "the TUAB protocol needs ...")."""
    pick_channels(raw, "eeg", only=electrodes)
    missing = [e for e in electrodes if e not in raw.ch_names]
    if missing:
        raise ChannelError(path, missing[0], f"missing; {protocol} (absent: {', '.join(missing)})")
    return raw


def absent_classes(y, class_names: Sequence[str]) -> list[str]:
    """The names of the classes with no example in the labels ``y`` (a loader then says which, in its own words)."""
    present = {int(v) for v in np.unique(np.asarray(y))}
    return [c for i, c in enumerate(class_names) if i not in present]


def subject_fold_splits(n_folds: int):
    """A task's ``make_splits(data, variant, seed)``: ``n_folds`` seeded subject folds
    (:func:`~biocodec_jax.evaluation.splits.subject_folds`; one per subject with fewer subjects, at least 3)."""

    def make_splits(data, variant: str | None = None, seed: int = 0):
        return subject_folds(data.subjects, n_folds, seed, where=data.name)

    make_splits.__doc__ = (f"{n_folds} subject folds (one per subject with fewer than {n_folds} subjects; "
                           "at least 3 subjects are needed).")
    return make_splits


def partition_fold_splits(n_folds: int):
    """A task's ``make_splits(data, variant, seed)``: the official ``eval`` partition as the test set of
    every split, the training subjects in ``n_folds`` seeded folds, each in turn the validation set
    (:func:`~biocodec_jax.evaluation.splits.partition_holdout_folds`)."""

    def make_splits(data, variant: str | None = None, seed: int = 0):
        return partition_holdout_folds(data, n_folds, seed)

    make_splits.__doc__ = f"Official eval as test; train subjects in {n_folds} folds, each in turn validation."
    return make_splits


class SkippedFiles:
    """The files a task's loader could not use: each logged by name when it happens, all listed in the
    dataset's ``preprocessing["skipped_files"]`` (so in results.json, and in results.md as a partial
    dataset) and in the codes' cache key. A loader reads each file inside ``try: ... except
    RecordingError as err: skipped(path, err); continue`` and ends with ``skipped.record(preprocessing)``.
    """

    def __init__(self, task: str):
        self.task, self.files = task, []

    def __call__(self, path, err: Exception) -> None:
        reason = str(err)  # "<path>: <reason>" (a ChannelError's names the channel): keep what follows the path
        prefix = f"{getattr(err, 'path', path)}: "
        reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        log.warning("%s: skipping %s: %s", self.task, path, reason)
        self.files.append({"path": str(path), "reason": reason})

    def record(self, preprocessing: dict) -> dict:
        if self.files:
            preprocessing["skipped_files"] = list(self.files)
        return preprocessing


def load_codec(path: str):
    """Our codec directory / training workdir (``Codec.load``) or the original's checkpoint (``.pt``/``.npz``)."""
    return Codec.open(path)


def eval_config(args: argparse.Namespace):
    """The resolved :class:`EvalConfig`: file, then flags, then ``--set`` overrides."""
    data = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    config = dataclass_from_dict(EvalConfig, data or {})
    overrides = []
    if args.protocol:
        overrides.append(f"protocol={args.protocol}")
    if args.seeds is not None:
        overrides.append(f"seeds={args.seeds}")
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    if args.max_splits is not None:
        overrides.append(f"max_splits={args.max_splits}")
    return apply_overrides(config, overrides + list(args.set))


def main(task: ModuleType, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run ``task`` from the command line; exit 0 on success, 2 on a bad dataset or argument."""
    args = build_parser(task, prog).parse_args(argv)
    with progress_logging(task.NAME):
        return _run(task, args)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a record comes (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def progress_logging(name: str):
    """The run's progress (INFO of the project's loggers) on stderr while it runs, then logging as before.

    Not ``logging.basicConfig``: an import (absl, through Orbax) has already given the root logger a
    WARNING-level handler, so basicConfig would do nothing and a run of hours would print no progress;
    forcing it would replace handlers that are not ours (a caller's, a test runner's).
    """
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name}: %(message)s", datefmt="%H:%M:%S"))
    saved = []
    for logger in map(logging.getLogger, PROGRESS_LOGGERS):
        saved.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False  # the root's handler would print each line a second time
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _run(task: ModuleType, args: argparse.Namespace) -> int:
    try:
        config = eval_config(args)
    except (ValueError, TypeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = task.NAME if args.variant == task.VARIANTS[0] and len(task.VARIANTS) == 1 else f"{task.NAME}-{args.variant}"
    output = Path(args.output or Path("runs/eval") / name)
    cache = Path(args.cache) if args.cache else Path("runs/eval/code_cache")

    codec = None
    needs_codec = any(m in CODEC_METHODS for m in config.methods)
    if needs_codec and not args.codec:
        print("error: --codec is required for the linear probe and the token classifier", file=sys.stderr)
        return 2
    if args.codec:
        try:
            codec = load_codec(args.codec)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        preset = codec.config.preset
        if preset in ("eeg", "emg") and preset != task.MODALITY:
            print(f"error: {task.NAME} is an {task.MODALITY.upper()} task but {args.codec} is an {preset.upper()} codec",
                  file=sys.stderr)
            return 2
    sample_rate = codec.sample_rate if codec is not None else {"eeg": 250, "emg": 1000}[task.MODALITY]

    started = time.time()
    try:
        options = {k: getattr(args, k) for k in args.task_options}
        if "workdir" in inspect.signature(task.load).parameters:  # a task that streams its windows to disk
            options["workdir"] = cache / "windows" / name
        data = task.load(args.data, sample_rate, args.variant, **options)
        log.info("%s (read in %.0f s)", data.summary(), time.time() - started)
        # One list of splits is one protocol, named by the task (PROTOCOL), else subject folds.
        splits = as_protocols(task.make_splits(data, args.variant, args.split_seed),
                              getattr(task, "PROTOCOL", DEFAULT_PROTOCOL))
        output.mkdir(parents=True, exist_ok=True)
        save_config(config, output / "config.yaml")
        with open(output / "config.yaml", "a") as f:
            f.write(f"# command: {' '.join(sys.argv)}\n# task: {task.NAME}, variant: {args.variant}, data: {args.data}, "
                    f"codec: {args.codec}, split_seed: {args.split_seed}\n")
        info = {"variant": args.variant, "data_dir": str(args.data), "codec": args.codec, "split_seed": args.split_seed,
                "codec_preset": None if codec is None else codec.config.preset}
        run_evaluation(data, splits, codec, config, output, cache, progress=not args.no_progress, info=info,
                       modality=task.MODALITY)
    except (DatasetError, RecordingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((output / "results.md").read_text())
    print(f"wrote {output}/results.json, results.md, confusion_matrix*.png in {time.time() - started:.0f} s "
          f"(eval config: {output}/config.yaml; {to_dict(config)['protocol']} protocol)")
    return 0


def evaluate(argv: Sequence[str] | None = None, prog: str = "python -m experiments.tasks.common") -> int:
    """``TASK [options]``: the task program called TASK (``biocodec-jax evaluate``, the entry point
    ``evaluate`` of the group ``biocodec_jax.programs``). No TASK: the list of tasks (exit 0 when help was
    asked for, else 2); an unknown one: exit 2 naming the tasks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else None
    if name is None or name in ("-h", "--help"):
        print(f"usage: {prog} TASK --data DIR --codec CKPT_OR_WORKDIR [options]\n"
              f"tasks: {', '.join(TASKS)}\nsee `{prog} TASK --help` for a task's options\n\n"
              "examples:\n"
              "  biocodec-jax evaluate eegmmi --data ../shared/data/eegmmidb --codec runs/demo/codec\n"
              "  biocodec-jax evaluate bonn --data ../shared/data/bonn_epilepsy --codec original.pt --protocol low-resource")
        asked = name is not None or any(a in ("-h", "--help") for a in argv)
        return 0 if asked else 2
    try:
        task = get_task(name)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return main(task, argv[1:], prog=f"{prog} {task.NAME}")
