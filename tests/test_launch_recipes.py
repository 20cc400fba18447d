"""experiments/launch: the multi-host recipes are rendered from one template (experiments/launch/recipes.py),
every `biocodec-jax` command they contain parses with the CLI's own parser, and the checked-in scripts are
the rendering of the defaults and, run with stand-ins for gcloud / srun / biocodec-jax, start the same
commands. Fast: no JAX, no network (the scripts run in bash with --dry-run or stand-ins)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from biocodec_jax.cli import build_parser
from experiments.launch import recipes as R

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the recipes are bash; the test reads them with bash")

# ---------------------------------------------------------------------------------------------
# reading shell text the way bash does (enough of it for these recipes)

OPERATORS = set("();<>|&")
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


def logical_lines(text: str) -> list[str]:
    """Lines as bash runs them: ``\\``+newline continuations joined, comments and blank lines dropped."""
    joined = text.replace("\\\n", "")
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line: split at ; && || | &, words after a redirection dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out, words, redirected = [], [], False
    for token in lex:
        if token and set(token) <= OPERATORS:
            if token in SEPARATORS:
                if words:
                    out.append(words)
                words, redirected = [], False
            else:  # > >> < >& ...: the rest of this command is redirections
                redirected = True
            continue
        if not redirected:
            words.append(token)
    if words:
        out.append(words)
    return out


PREFIX_COMMANDS = {"env", "nohup", "srun", "exec"}


def split_prefix(words: list[str]) -> tuple[list[str], list[str]] | None:
    """(the words before the biocodec-jax program, the words after it), or None when the command runs
    another program. Before it: NAME=value assignments, env / nohup / exec / srun and their options."""
    i, wrapped = 0, False
    while i < len(words):
        word = words[i]
        if "=" in word and word.split("=", 1)[0].isidentifier() or word in PREFIX_COMMANDS:
            wrapped = wrapped or word in PREFIX_COMMANDS
        elif not (wrapped and word.startswith("-")):
            break
        i += 1
    if i < len(words) and words[i].rsplit("/", 1)[-1] == "biocodec-jax":
        return words[:i], words[i + 1:]
    return None


def bash_words(command_line: str) -> list[str]:
    """The words bash passes to the program of a simple command line (bash's own quoting rules: shlex
    keeps the backslash of ``\\$`` inside double quotes, bash does not); nothing is run but printf."""
    out = subprocess.run(["bash", "-c", "printf '%s\\0' " + command_line], text=True, capture_output=True,
                         check=True, timeout=30).stdout
    return out.split("\0")[:-1]


def gcloud_lines(text: str) -> list[list[str]]:
    """The gcloud commands of a text as bash passes them on (each also splits with shlex: well-formed)."""
    lines = [line for line in logical_lines(text) if line.startswith("gcloud ")]
    for line in lines:
        shlex.split(line)
    return [bash_words(line) for line in lines]


def biocodec_commands(shell_text: str) -> list[tuple[list[str], list[str]]]:
    """Every `biocodec-jax ...` command in a shell text, also inside gcloud's --command "...":
    (prefix: env assignments / env / nohup / srun and its options, argv after the program)."""
    found = []
    for line in logical_lines(shell_text):
        if line.startswith("gcloud "):
            words = bash_words(line)
            if "--command" in words:
                found += biocodec_commands(words[words.index("--command") + 1])
            continue
        for words in simple_commands(line):
            split = split_prefix(words)
            if split is not None:
                found.append(split)
    return found


def parse(argv: list[str]):
    """The CLI's parser on argv; fails the test (instead of exiting) when it does not parse."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed why on stderr
        pytest.fail(f"does not parse with biocodec-jax's parser (exit {e.code}): {shlex.join(argv)}")


def assert_pretrain(argv: list[str], pre: R.Pretrain):
    args = parse(argv)
    assert args.command == "pretrain"
    assert (args.workdir, args.data, args.config) == (pre.workdir, pre.data, pre.config)
    assert (args.steps, args.batch_size, args.set) == (pre.steps, pre.batch_size, list(pre.sets))
    return args


# Values that need quoting at both levels (the local shell, then the remote one).
AWKWARD = dict(workdir="gs://my-bucket/runs/eeg run 1", data="/mnt/gcs/shards/tueg's", steps=1000, batch_size=256,
               sets=("optim.learning_rate=1e-4", 'train.note="a $b"'))


# ---------------------------------------------------------------------------------------------
# the recipes


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("custom", [False, True])
def test_tpu_pod_recipe(custom, detach):
    tpu = R.TpuPod(tpu_name="my-pod", zone="europe-west4-b", project="my-proj", bucket="my-bucket",
                   detach=detach) if custom else R.TpuPod(detach=detach)
    pre = tpu.pretrain(**AWKWARD) if custom else tpu.pretrain()
    text = R.recipe("tpu-pod", tpu, pre)

    # the gcloud lines: well-formed, on every worker of this TPU VM
    lines = gcloud_lines(text)
    assert [w[4] for w in lines] == ["ssh", "scp", "ssh", "ssh"]  # mount; copy, install; train
    for words in lines:
        assert words[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and "--worker=all" in words
        assert words[words.index("--zone") + 1] == tpu.zone
        assert ("--project" in words) == custom
        if words[4] == "ssh":
            assert words[5] == tpu.tpu_name and len(words) == words.index("--command") + 2

    # one biocodec-jax command, the training, with the values given, auto-distributed
    [(prefix, argv)] = biocodec_commands(text)
    assert_pretrain(argv, pre)
    assert "BIOCODEC_AUTO_DISTRIBUTED=1" in prefix and ("nohup" in prefix) == detach
    train = lines[-1][-1]
    assert train.startswith(f"cd {tpu.repo_dir} && ")

    # the shards through gcsfuse (ArrayRecord reads local files), the workdir in the bucket
    mount = lines[0][-1]
    assert f"gcsfuse --implicit-dirs -o ro {tpu.bucket} {tpu.mount_point}" in mount
    if not custom:
        assert pre.workdir == "gs://BUCKET/runs/pretrain-eeg" and pre.data == "/mnt/gcs/shards/tueg"
        assert "SUBSTITUTE" in text and "BUCKET: your GCS bucket" in text
    # the install step unpacks what git archive made and installs the [gcs] extra
    assert "git archive --format=tar.gz -o /tmp/biocodec-jax-code.tar.gz HEAD" in text
    assert "pip install -q -e '.[gcs]'" in lines[2][-1] and "'jax[tpu]'" in lines[2][-1]


@pytest.mark.parametrize("custom", [False, True])
def test_slurm_recipe(custom):
    s = R.Slurm(nodes=4, gpus_per_node=4, time="2:00:00") if custom else R.Slurm()
    pre = s.pretrain(**AWKWARD) if custom else s.pretrain()
    text = R.recipe("slurm", s, pre)
    sbatch = [line for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert {f"#SBATCH --nodes={s.nodes}", "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={s.gpus_per_node}",
            f"#SBATCH --time={s.time}"} <= set(sbatch)
    # sbatch reads #SBATCH lines only before the first command
    first_command = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
    assert all(text.splitlines().index(line) < first_command for line in sbatch)

    [(prefix, argv)] = biocodec_commands(text)
    assert_pretrain(argv, pre)
    assert prefix[:4] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--label"]
    exports = dict(w[1].split("=", 1) for line in logical_lines(text)
                   for w in simple_commands(line) if w[0] == "export")
    assert exports == {"BIOCODEC_AUTO_DISTRIBUTED": "1",
                       "JAX_LOCAL_DEVICE_IDS": ",".join(map(str, range(s.gpus_per_node)))}


@pytest.mark.parametrize("custom", [False, True])
def test_local_recipe(custom):
    loc = R.Local(processes=3, devices_per_process=2, port=23456) if custom else R.Local()
    pre = loc.pretrain(**AWKWARD) if custom else loc.pretrain()
    found = biocodec_commands(R.recipe("local", loc, pre))
    assert len(found) == loc.processes
    for i, (prefix, argv) in enumerate(found):
        args = parse(argv)  # the coordinator flags follow the shared list
        assert (args.workdir, args.data, args.config, args.set) == (pre.workdir, pre.data, pre.config, list(pre.sets))
        assert (args.coordinator_address, args.num_processes, args.process_id) == (
            f"127.0.0.1:{loc.port}", loc.processes, i)
        assert prefix == ["JAX_PLATFORMS=cpu", f"XLA_FLAGS=--xla_force_host_platform_device_count={loc.devices_per_process}",
                          "BIOCODEC_AUTO_DISTRIBUTED=0"]


def test_the_generator_cli_prints_what_it_was_given(capsys):
    assert R.main(["slurm", "--nodes", "4", "--workdir", "/lustre/runs/eeg", "--data", "/lustre/shards/tueg",
                   "--set", "train.precision=bfloat16", "--batch-size", "512"]) == 0
    text = capsys.readouterr().out
    assert "Generated by `python -m experiments.launch.recipes slurm --nodes 4 --workdir /lustre/runs/eeg" in text
    assert "#SBATCH --nodes=4" in text and "SUBSTITUTE" not in text
    [(_, argv)] = biocodec_commands(text)
    assert_pretrain(argv, R.Pretrain(workdir="/lustre/runs/eeg", data="/lustre/shards/tueg", batch_size=512,
                                     sets=("train.precision=bfloat16",)))
    # the TPU defaults follow the bucket; --config '' drops the config file
    assert R.main(["tpu-pod", "--bucket", "eeg-data", "--config", "", "--tpu-name", "pod-1"]) == 0
    [(_, argv)] = biocodec_commands(capsys.readouterr().out)
    assert_pretrain(argv, R.Pretrain(workdir="gs://eeg-data/runs/pretrain-eeg", data="/mnt/gcs/shards/tueg", config=None))


# ---------------------------------------------------------------------------------------------
# the checked-in scripts


@pytest.mark.parametrize("target", sorted(R.TARGETS))
def test_checked_in_scripts_are_the_rendered_defaults(target):
    path = R.checked_in(target)
    assert path.read_text() == R.script(target), (
        f"{path.relative_to(ROOT)} differs from its template: edit experiments/launch/recipes.py and run "
        "`python -m experiments.launch.recipes scripts`")
    if path.suffix == ".sh":
        assert path.stat().st_mode & stat.S_IXUSR
    assert R.main(["scripts", "--check"]) == 0


@pytest.mark.parametrize("target", sorted(R.TARGETS))
def test_scripts_and_recipes_are_valid_bash(target):
    for text in (R.script(target), R.recipe(target)):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def _clean_env(*names):
    return {k: v for k, v in os.environ.items() if k not in names}


def test_tpu_vm_pod_sh_prints_the_recipes_commands():
    script = str(R.checked_in("tpu-pod"))
    env = _clean_env("TPU_NAME", "ZONE", "PROJECT", "BUCKET", "MOUNT_POINT", "REPO_DIR", "VENV", "PRETRAIN_ENV")
    tpu, pre = R.TpuPod(), R.TpuPod().pretrain()
    recipe_lines = gcloud_lines(R.recipe("tpu-pod"))

    def dry(*args):
        out = subprocess.run(["bash", script, "--dry-run", *args], env=env, text=True, capture_output=True,
                             check=True, timeout=60).stdout
        return [shlex.split(line) for line in out.splitlines()]

    # `--` alone: train with the script's defaults, which are the recipe's
    [train] = dry("--")
    assert train[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu.tpu_name] and "--worker=all" in train
    [(prefix, argv)] = biocodec_commands(train[-1])
    assert_pretrain(argv, pre)
    assert "BIOCODEC_AUTO_DISTRIBUTED=1" in prefix
    assert argv == biocodec_commands(recipe_lines[-1][-1])[0][1]

    # arguments after -- replace the defaults
    mine = ["--preset", "tiny", "--workdir", "gs://b/runs/x", "--data", "/mnt/gcs/s", "--set", "a.b=c d"]
    [train] = dry("--detach", "--", *mine)
    [(prefix, argv)] = biocodec_commands(train[-1])
    assert argv == ["pretrain", *mine] and "nohup" in prefix
    parse(argv)

    # --mount runs the recipe's mount command
    [mount] = dry("--mount")
    assert mount[-1] == recipe_lines[0][-1]
    # nothing to do: an error, not a training run
    r = subprocess.run(["bash", script, "--dry-run"], env=env, text=True, capture_output=True, timeout=60)
    assert r.returncode == 2 and "nothing to do" in r.stderr


FAKE = """import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in (
    "BIOCODEC_AUTO_DISTRIBUTED", "JAX_LOCAL_DEVICE_IDS", "JAX_PLATFORMS", "XLA_FLAGS")}}))
"""


@pytest.mark.parametrize("given", [False, True])
def test_slurm_gpu_sbatch_runs_the_recipes_command(tmp_path, given):
    (tmp_path / "fake.py").write_text(FAKE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(tmp_path / "fake.py"))} "$@"\n')
    srun.chmod(0o755)
    env = {**_clean_env("VENV", "MODULES", "SLURM_GPUS_PER_NODE"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_GPUS_ON_NODE": "4"}
    mine = ["--config", "c.yaml", "--workdir", "/lustre/w", "--data", "/lustre/d"]
    r = subprocess.run(["bash", str(R.checked_in("slurm")), *(mine if given else [])], env=env, text=True,
                       capture_output=True, check=True, timeout=60)
    run = json.loads(r.stdout)
    [(prefix, argv)] = biocodec_commands(shlex.join(["srun", *run["argv"]]))
    assert prefix == R.SRUN.split() and run["argv"][len(prefix) - 1] == ".venv/bin/biocodec-jax"
    if given:
        assert argv == ["pretrain", *mine]
    else:
        assert_pretrain(argv, R.Slurm().pretrain())
        assert argv == biocodec_commands(R.recipe("slurm"))[0][1]
    assert run["env"]["BIOCODEC_AUTO_DISTRIBUTED"] == "1" and run["env"]["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3"


def test_local_multiprocess_sh_runs_the_recipes_commands(tmp_path):
    (tmp_path / "fake.py").write_text(FAKE)
    env = {**_clean_env("NUM_PROCESSES", "DEVICES_PER_PROCESS", "PORT", "LOG_DIR", "XLA_FLAGS"),
           "BIOCODEC_JAX": f"{sys.executable} {tmp_path / 'fake.py'}"}
    r = subprocess.run(["bash", str(R.checked_in("local")), "-n", "2", "-d", "3"], env=env, text=True,
                       capture_output=True, check=True, timeout=60)
    runs = sorted((line[:3], json.loads(line[4:])) for line in r.stdout.splitlines())
    assert [p for p, _ in runs] == ["[0]", "[1]"]
    recipe = [argv for _, argv in biocodec_commands(R.recipe("local", R.Local(devices_per_process=3)))]
    for i, (_, run) in enumerate(runs):
        assert run["argv"][0] == "pretrain"
        args = parse(run["argv"])
        assert (args.workdir, args.data, args.process_id, args.num_processes) == (
            R.Local().pretrain().workdir, R.Local().pretrain().data, i, 2)
        assert run["argv"] == recipe[i]
        assert run["env"]["JAX_PLATFORMS"] == "cpu" and run["env"]["BIOCODEC_AUTO_DISTRIBUTED"] == "0"
        assert run["env"]["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=3"]


# ---------------------------------------------------------------------------------------------
# the READMEs


def fenced_blocks(markdown: str) -> list[str]:
    """The contents of a markdown text's fenced code blocks (also those indented in list items)."""
    blocks, inside, indent = [], None, 0
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if inside is None:
                inside, indent = [], len(line) - len(line.lstrip())
            else:
                blocks.append("".join(inside))
                inside = None
        elif inside is not None:
            inside.append(line[indent:] if line[:indent].isspace() else line)
    return blocks


def test_the_launch_readme_shows_the_current_recipes():
    readme = (ROOT / "experiments/launch/README.md").read_text()
    blocks = fenced_blocks(readme)
    for target in ("tpu-pod", "slurm"):
        assert R.recipe(target) in blocks, (
            f"experiments/launch/README.md: the {target} recipe is not the current rendering of "
            f"`python -m experiments.launch.recipes {target}`")


@pytest.mark.parametrize("readme", ["README.md", "experiments/launch/README.md"])
def test_launch_commands_in_the_readmes_parse(readme):
    """Any gcloud --worker=all / srun / sbatch-script line with a biocodec-jax command in a README's code
    blocks parses with the CLI (the main README may show the recipes' commands too)."""
    checked = 0
    for block in fenced_blocks((ROOT / readme).read_text()):
        for line in logical_lines(block):
            if line.startswith("gcloud ") and "--command" in line or line.lstrip().startswith("srun "):
                for _, argv in biocodec_commands(line):
                    args = parse(argv)
                    assert args.command == "pretrain" and args.workdir
                    checked += 1
    if readme.startswith("experiments/"):
        assert checked >= 2  # the TPU and the SLURM recipe
