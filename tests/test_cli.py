"""The ``biocodec-jax`` command as a whole: every subcommand documents itself with examples."""

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
