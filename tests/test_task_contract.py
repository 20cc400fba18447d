"""What every task program promises beyond its windows: ``--help`` names the files it reads and how
it checks them (``FILES``), task options reach ``load`` (``add_arguments``), and no task normalises
over a file (``preprocessing["normalisation_scope"]``)."""

import textwrap
import types

import pytest

from biocodec_jax.evaluation.dataset import DatasetError
from experiments.tasks import TASKS, bciiv2a, bonn, eegmmi, get_task, kaggle_ern, sleep_edf, tuev
from experiments.tasks.common import build_parser, main
from tests.synthetic_data import bciiv2a as bci_gen
from tests.synthetic_data import kaggle_ern as ern_gen
from tests.synthetic_data.sleep_edf import make_sleep_edf
from tests.synthetic_data.tuev import make_tuev
from tests.test_tasks_eegmmi_bonn_emg import BUNDLED_EEGMMI, bonn_copy

# The scopes a task may normalise over: the window classified (or part of it, e.g. its baseline),
# a labelled epoch of several windows, or all of one participant's session. Never a file or a
# recording, which in several datasets holds one class.
SCOPES = ("window", "epoch", "participant-session")


@pytest.mark.parametrize("name", TASKS)
def test_help_names_the_files_the_task_reads(name):
    task = get_task(name)
    help_text = build_parser(task).format_help()
    assert "files read:" in help_text and help_text.index("files read:") < help_text.index("examples:")
    files = textwrap.dedent(task.FILES).strip()
    assert len(files.splitlines()) >= 4
    for line in files.splitlines():  # printed as written (indented), not re-wrapped
        assert line.strip() in help_text, line


def test_a_task_without_files_or_options_gets_the_shared_command_line():
    task = types.SimpleNamespace(NAME="plain", VARIANTS=("only",), __doc__="A plain task.\n\nMore.")
    parser = build_parser(task)
    help_text = parser.format_help()
    assert "files read:" not in help_text and "examples:" in help_text and "plain options" not in help_text
    assert parser.parse_args(["--data", "d"]).task_options == ()


def _recording_task(calls: list, with_options: bool):
    """A task module whose ``load`` records its arguments, then fails as a bad dataset does."""
    task = types.ModuleType("recording_task")
    task.__doc__ = "A task that records how it is loaded."
    task.NAME, task.MODALITY, task.VARIANTS = "recording", "eeg", ("v1", "v2")

    def load(data_dir, sample_rate, variant=None, **options):
        calls.append((data_dir, sample_rate, variant, options))
        raise DatasetError("recording: nothing to read")

    def add_arguments(parser):
        parser.add_argument("--level", type=int, default=1, help="how far")
        parser.add_argument("--fast", action="store_true", help="quicker")

    task.load = load
    if with_options:
        task.add_arguments = add_arguments
    return task


@pytest.mark.parametrize("with_options", [True, False])
def test_main_passes_only_the_declared_task_options_to_load(tmp_path, capsys, with_options):
    calls = []
    task = _recording_task(calls, with_options)
    argv = ["--data", str(tmp_path), "--methods", "eegnet,shallow", "--variant", "v2", "--output", str(tmp_path / "out")]
    if with_options:
        help_text = build_parser(task).format_help()
        assert "recording options:" in help_text and "--level LEVEL" in help_text
        argv += ["--level", "3"]
    assert main(task, argv) == 2  # the load's DatasetError
    assert "nothing to read" in capsys.readouterr().err
    assert calls == [(str(tmp_path), 250, "v2", {"level": 3, "fast": False} if with_options else {})]
    if not with_options:
        with pytest.raises(SystemExit):  # an option no task declared is an argument error
            build_parser(task).parse_args(argv + ["--level", "3"])


# Each task loaded on the data its own tests use (bundled recordings, synthetic publisher layouts).
LOADERS = {
    "eegmmi": lambda root: eegmmi.load(BUNDLED_EEGMMI, 250),
    "bonn": lambda root: bonn.load(bonn_copy(root, per_set=1), 250),
    "tuev": lambda root: (make_tuev(root), tuev.load(root, 250))[1],
    "bciiv2a": lambda root: (bci_gen.make_dataset(root, subjects=(1, 6, 8), trials=6), bciiv2a.load(root, 250.0))[1],
    "sleep_edf": lambda root: (make_sleep_edf(root), sleep_edf.load(root, 250))[1],
    "kaggle_ern": lambda root: (ern_gen.make_dataset(root, train_subjects=(2, 6), test_subjects=(1,), sessions=(1,),
                                                     feedbacks=3), kaggle_ern.load(root, 250.0))[1],
}
EXPECTED_SCOPE = {"eegmmi": "window", "bonn": "window", "tuev": "window", "bciiv2a": "window",
                  "sleep_edf": "epoch", "kaggle_ern": "window"}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_no_task_normalises_over_a_file(tmp_path, name):
    data = LOADERS[name](tmp_path / name)
    scope = data.preprocessing.get("normalisation_scope")
    assert scope in SCOPES and scope not in ("file", "recording")
    assert scope == EXPECTED_SCOPE[name]
    assert isinstance(data.preprocessing["normalisation"], str)



def test_a_run_shows_its_progress_and_leaves_logging_as_it_was(capsys):
    """evaluate's progress lines (INFO) reach stderr during the run, even though an import gave the root
    logger a WARNING handler; afterwards no handler of ours is left (a closed stream would break later logs)."""
    import logging

    from experiments.tasks import common

    runner_log = logging.getLogger("biocodec_jax.evaluation.runner")
    before = [(logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
              for n in common.PROGRESS_LOGGERS]
    with common.progress_logging("bonn"):
        runner_log.info("fold 0 done")
    assert "bonn: fold 0 done" in capsys.readouterr().err
    after = [(logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers))
             for n in common.PROGRESS_LOGGERS]
    assert after == before
