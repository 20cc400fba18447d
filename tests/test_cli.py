"""The ``biocodec-jax`` command as a whole: every subcommand documents itself with examples."""

import subprocess
import sys

import pytest

from biocodec_jax.cli import build_parser
from biocodec_jax.cli import main as cli_main


def test_every_command_has_help_with_examples(capsys):
    commands = [c for c in build_parser()._subparsers._group_actions[0].choices]  # every subcommand
    assert {"demo", "prepare", "pretrain", "evaluate", "convert", "info", "tokenize", "reconstruct", "report"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as e:
            code = cli_main([command, "--help"])
            raise SystemExit(code)
        assert e.value.code == 0, command
        out = capsys.readouterr().out
        assert f"biocodec-jax {command}" in out and "examples:" in out, command


def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys):
    missing = str(tmp_path / "absent")
    runs = [
        ["prepare", "--input", missing, "--output", str(tmp_path / "shards"), "--no-progress"],
        ["pretrain", "--preset", "tiny", "--data", missing, "--workdir", str(tmp_path / "run"), "--no-progress"],
        ["tokenize", "--codec", missing, "--input", missing, "--output", str(tmp_path / "tokens")],
        ["report", "--codec", missing, "--input", missing],
        ["info", missing],
    ]
    for argv in runs:
        assert cli_main(argv) == 2, argv[0]
        err = capsys.readouterr().err
        assert missing in err and "Traceback" not in err, (argv[0], err)


def test_programs_are_found_by_entry_point_not_imported_by_the_library(capsys):
    """``demo`` and ``evaluate`` are programs in experiments/, found through the entry-point group
    biocodec_jax.programs (setup.cfg); one that is not installed is a one-line error saying so."""
    from biocodec_jax import cli
    from experiments import quickstart
    from experiments.tasks import common

    assert cli.program("demo") is quickstart.main and cli.program("evaluate") is common.evaluate
    with pytest.raises(LookupError, match=r"'nope' program is not installed .*biocodec_jax.programs.*pip install -e"):
        cli.program("nope")
    assert cli_main(["evaluate"]) == 2 and cli_main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: biocodec-jax evaluate TASK" in out and "bonn, emg_gestures" in out
    assert cli_main(["evaluate", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_the_command_line_starts_without_jax():
    """prepare's spawned workers re-import the console script, and --help runs it: JAX stays out until a
    command that computes runs (the reason biocodec_jax/cli.py may import it inside a command)."""
    code = ("import sys, biocodec_jax.cli as cli; cli.build_parser(); "
            "heavy = sorted(m for m in ('jax', 'flax', 'orbax', 'grain', 'experiments') if m in sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
