"""Every ```python block of README.md runs as written, so that the README's examples stay true.

Each block is executed with ``exec`` in a fresh namespace, in a temporary working directory that
holds what the README's examples name: ``ckpt.pt`` (the original's EEG checkpoint with random
weights, from tests/fixtures), ``runs/demo/codec`` (a saved codec of the ``tiny`` preset, 250 Hz
like the EEG codec), ``sub-01.edf`` (a short synthetic 2-channel EEG recording) and
``shards/tueg`` (one bundled recording prepared). The names a block uses without defining them
(``codec``: the first block's ``Codec.load``; ``x``, ``chunk``, ``first_batch``, ...) are given in
the namespace, small. For speed the blocks compute with the tiny codec and the training block's
``preset("eeg")`` runs as ``preset("tiny")`` (compiling the EEG model's programs takes about a
minute on 2 cores; the same calls on the tiny preset check the API, and the shapes a block's
comments state are checked against the codec's own sizes). A block the setup does not know fails: add what it
needs here when a new example goes into the README.
"""

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from biocodec_jax import Codec
from biocodec_jax.tokenizer import Tokens
from data_pipelines.config import prepare_preset
from data_pipelines.prepare import prepare
from tests.conftest import ORIGINAL_CKPT, eeg_like_signals
from tests.synthetic_data.edf import EdfSignal, write_edf

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BUNDLED_EDF = REPO / "data" / "eegmmidb" / "S001" / "S001R04.edf"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# For speed (see the module docstring): (pattern, replacement) applied to the training block only.
TRAINING_SUBSTITUTIONS = ((r'preset\("eeg"\)', 'preset("tiny")'),)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python fenced block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_its_python_examples():
    assert len(BLOCKS) >= 5, "the README's ```python blocks were not found (fence format changed?)"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A working directory with the files the README's examples name (see the module docstring)."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copy(ORIGINAL_CKPT, root / "ckpt.pt")
    Codec.from_preset("tiny", seed=0, init_batch=eeg_like_signals(16, 250, seed=3)).save(root / "runs" / "demo" / "codec")
    t = np.arange(20 * 250) / 250.0
    signals = [EdfSignal(name, 20.0 * np.sin(2 * np.pi * f * t) + 5.0 * np.sin(2 * np.pi * 3 * f * t), 250.0)
               for name, f in (("EEG C3", 10.0), ("EEG C4", 6.0))]
    write_edf(root / "sub-01.edf", signals, record_duration=1.0)
    recordings = root / "recordings"
    recordings.mkdir()
    shutil.copy(BUNDLED_EDF, recordings)  # 64 channels x 25 windows of 5 s: 1600 windows, > one batch of 256
    prepare(recordings, root / "shards" / "tueg", prepare_preset("eeg"), dataset="eegmmidb", progress=False)
    return root


@pytest.fixture(scope="module")
def codec(workspace):
    """The ``codec`` the README's later blocks continue with: the first block's ``Codec.load``."""
    return Codec.load(workspace / "runs" / "demo" / "codec")


def given_names(code: str, codec: Codec) -> dict:
    """What a block uses without defining it, small: the codec, inputs at its rate, the Tokens class."""
    names: dict = {"codec": codec, "Tokens": Tokens}  # the tokenize block imports Tokens in a comment
    x = eeg_like_signals(2, 500, seed=0).reshape(1, 2, 500)  # [B, C, T]
    names.update(x=x, n_channels=2, chunk=x[0, :, :100])
    if "train_step" in code:  # the training block, on the tiny preset (1-s windows)
        names.update(first_batch=eeg_like_signals(8, 250, seed=1), batch=eeg_like_signals(8, 250, seed=2))
    return names


def run_block(code: str, workspace: Path, codec: Codec, monkeypatch) -> dict:
    if "train_step" in code:
        for pattern, replacement in TRAINING_SUBSTITUTIONS:
            code, n = re.subn(pattern, replacement, code)
            assert n, f"the training block no longer contains {pattern}: update TRAINING_SUBSTITUTIONS"
    monkeypatch.chdir(workspace)
    namespace = given_names(code, codec)
    exec(compile(code, "README.md block", "exec"), namespace)
    return namespace


@pytest.mark.slow
@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, workspace, codec, monkeypatch):
    ns = run_block(code, workspace, codec, monkeypatch)
    # Where a block states shapes in its comments, hold it to them.
    cfg = codec.codec_config
    if "emb" in ns and "codes" in ns and "y" in ns:  # the "Using the codec" block (EEG: D 128, 6 quantizers, hop 12)
        b, c, t = ns["x"].shape
        frames = math.ceil(t / cfg.hop_length)
        assert ns["emb"].shape == (b, c, cfg.dimension, frames)
        assert ns["codes"].shape == (b, c, cfg.n_q, frames) and ns["codes"].dtype == np.int32
        assert ns["y"].shape == (b, c, t)
        assert (workspace / "biocodec.pt").is_file()
    if "tokens" in ns and "raw" in ns:  # the tokenize block
        assert ns["tokens"].codes.shape[:2] == (2, cfg.n_q) and ns["raw"].ch_names == ["EEG C3", "EEG C4"]
    if "enc" in ns:  # the streaming block
        assert ns["codes"].shape[:2] == (2, cfg.n_q)
    if "it" in ns:  # the loader block
        assert ns["batch"].shape == (256, 1, 1250)
    if "metrics" in ns and "state" in ns:  # the training block
        assert np.isfinite(float(ns["metrics"]["loss"]))
