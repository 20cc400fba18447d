"""Where a codec lives on disk: the formats we write and read, and what a path holds.

Three kinds of path hold a codec (:func:`path_kind` tells them apart; every reader asks it):

- a **saved codec** (:attr:`PathKind.CODEC`), the directory :meth:`Codec.save` writes:
  ``config.json`` (the :class:`~biocodec_jax.config.Config`), ``metadata.json`` (provenance, see
  :data:`METADATA_FILE`) and ``arrays/`` (parameters and codebooks, Orbax ``StandardCheckpointer``);
- a **training run** (:attr:`PathKind.RUN`): a workdir of ``pretrain`` (``checkpoints/``, its
  ``preprocessing.json``) or its ``checkpoints/`` directory itself, step directories of an Orbax
  ``CheckpointManager`` (read through :mod:`biocodec_jax.training.checkpointing`, that format's owner);
- the **original's file** (:attr:`PathKind.TORCH`): any file, read as a ``.pt`` training checkpoint
  or state dict, or ``.npz`` (:mod:`biocodec_jax.interop.torch_checkpoint`, that format's owner).

A directory with ``config.json`` is a saved codec even if it also holds checkpoints. Every path
may be local or a ``gs://`` URL (read and written through ``etils.epath``, i.e. ``gcsfs``, and
Orbax's own GCS support; a remote ``.pt``/``.npz`` file is downloaded to a temporary file to be read). The readers
here return the pieces of a codec (:class:`Stored`), not a ``Codec``, so that this module does not
depend on the class built from them (``Codec.load`` / ``Codec.open`` call these).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from flax import nnx

from biocodec_jax import config as config_lib
from biocodec_jax import model as model_lib
from biocodec_jax.config import Config
from biocodec_jax.quantization.codebook import CodebookState
from biocodec_jax.training import checkpointing
from biocodec_jax.training.checkpointing import CHECKPOINTS_DIR  # noqa: F401  (part of the run format)
from biocodec_jax.training.checkpointing import location
from data_pipelines import paths

CONFIG_FILE = "config.json"
ARRAYS_DIR = "arrays"
# What the codec was trained on, beside its weights: {"preprocessing": the `prepare` config of its
# training data (a plain dict), "training": {"step", "data", "workdir"}}. A saved codec keeps it in
# this file; a training run keeps the preprocessing in its workdir (written by the training loop,
# PREPROCESSING_FILE) and the rest in its checkpoints.
METADATA_FILE = "metadata.json"
PREPROCESSING_FILE = "preprocessing.json"


class PathKind(enum.Enum):
    """What a path holds; the value is how ``biocodec-jax info`` names it."""

    CODEC = "saved codec"
    RUN = "training run"
    TORCH = "PyTorch checkpoint (the original's layout)"


class Stored(NamedTuple):
    """The pieces of a codec as read from disk (``graphdef`` None: built from ``config``)."""

    config: Config
    params: nnx.State
    codebooks: CodebookState
    metadata: dict
    graphdef: nnx.GraphDef | None = None


def is_training_run(directory: str | Path) -> bool:
    """Whether ``directory`` is a training workdir (has ``checkpoints/``) or a checkpoints directory
    (has step directories)."""
    directory = location(directory)
    if (directory / CHECKPOINTS_DIR).is_dir():
        return True
    return directory.is_dir() and any(p.is_dir() and p.name.isdigit() for p in directory.iterdir())


def path_kind(path: str | Path) -> PathKind:
    """What ``path`` holds (see the module doc); FileNotFoundError saying what was expected if nothing."""
    shown = str(path)
    path = location(path)
    if path.is_file():
        return PathKind.TORCH
    if (path / CONFIG_FILE).is_file():
        return PathKind.CODEC
    if is_training_run(path):
        return PathKind.RUN
    if not path.exists():
        raise FileNotFoundError(f"{shown}: not a saved codec, a training run or a PyTorch checkpoint: no such file or directory; "
                                "give a codec directory, a training workdir or a .pt/.npz file")
    raise FileNotFoundError(
        f"{shown}: not a saved codec (no {CONFIG_FILE}) nor a training run "
        f"(no {CHECKPOINTS_DIR}/ directory and no checkpoint step directories)"
    )


# ---------------------------------------------------------------------------------------------
# A saved codec.


def save_codec(directory: str | Path, config: Config, params: nnx.State, codebooks: CodebookState, metadata: dict) -> Path:
    """Write a saved codec (``config.json``, ``metadata.json``, ``arrays/``) into ``directory`` (a local
    path or a ``gs://`` URL); returns it. ``config.json`` is written last: a reader that finds it
    finds the arrays complete."""
    directory = location(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / ARRAYS_DIR, {"params": params, "codebooks": codebooks}, force=True)
    paths.write_text(directory / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    paths.write_text(directory / CONFIG_FILE, json.dumps(config_lib.to_dict(config), indent=2) + "\n")
    return directory


def load_codec(directory: str | Path) -> Stored:
    """Read a saved codec; a missing or damaged ``arrays/`` is an error naming the directory."""
    directory = location(directory)
    config = config_lib.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    graphdef, abstract = model_lib.abstract_model(config.codec)
    target = {"params": abstract, "codebooks": jax.eval_shape(lambda: model_lib.init_codebooks(config.codec))}
    arrays = directory / ARRAYS_DIR
    if not arrays.is_dir():
        raise FileNotFoundError(f"{directory}: a saved codec without its arrays ({ARRAYS_DIR}/ is missing): copy the whole directory")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(arrays, target)
    except Exception as err:  # TensorStore / Orbax errors run to hundreds of characters: say what and where
        raise ValueError(
            f"{directory}: the codec's arrays ({ARRAYS_DIR}/) are incomplete or damaged ({checkpointing.short_error(err)})"
        ) from None
    meta_file = directory / METADATA_FILE
    metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return Stored(config, restored["params"], restored["codebooks"], metadata, graphdef)


# ---------------------------------------------------------------------------------------------
# A training run.


def run_workdir(directory: str | Path) -> Path:
    """The workdir of a training run given as the workdir or as its ``checkpoints/`` directory."""
    directory = location(directory)
    return directory if (directory / CHECKPOINTS_DIR).is_dir() else directory.parent


def run_metadata(directory: str | Path, config: Config, step: int) -> dict:
    """Provenance of a training run's checkpoint: its step and data, and the preprocessing file the
    training loop wrote into the workdir (``directory``: the workdir or its checkpoints directory)."""
    workdir = run_workdir(directory)
    metadata: dict = {"training": {"step": int(step), "data": config.train.data or None, "workdir": str(workdir)}}
    prep_file = workdir / PREPROCESSING_FILE
    if prep_file.is_file():
        metadata["preprocessing"] = json.loads(prep_file.read_text())
    return metadata


def load_run(directory: str | Path, step: int | None = None) -> Stored:
    """The model of a training run's checkpoint ``step`` (default: the latest readable one; an
    unreadable latest checkpoint is skipped with a warning), with the config stored in it."""
    directory = location(directory)
    config, params, codebooks, found = checkpointing.restore_params(directory, step)
    return Stored(config, params, codebooks, run_metadata(directory, config, found))


def load_run_state(directory: str | Path, step: int | None = None) -> Any:
    """The whole :class:`~biocodec_jax.training.state.TrainState` of checkpoint ``step`` (default: the
    latest readable one), optimiser state included: what a PyTorch export of a run carries."""
    with checkpointing.Checkpointer(checkpointing.checkpoints_dir(directory), read_only=True, async_save=False) as ckpt:

        def read(s: int):
            return ckpt.restore(checkpointing.abstract_train_state(ckpt.restore_config(s)), step=s)

        return ckpt.first_readable(step, read)


def load(directory: str | Path, step: int | None = None) -> Stored:
    """A saved codec or the model of a training run's checkpoint (``step``: for runs only)."""
    directory = location(directory)
    kind = path_kind(directory)
    if kind is PathKind.RUN:
        return load_run(directory, step)
    if kind is PathKind.TORCH:
        raise FileNotFoundError(f"{directory}: a file, not a saved codec or training run; "
                                "the original's .pt/.npz: Codec.from_torch_checkpoint or Codec.open")
    if step is not None:
        raise ValueError(f"{directory} is a saved codec (one set of weights); step={step} is for training runs")
    return load_codec(directory)
