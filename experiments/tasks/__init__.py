"""One program per downstream task; each reads its dataset as published and calls the evaluation library.

    python -m experiments.tasks.bonn --data DIR --codec CKPT_OR_WORKDIR    # or: biocodec-jax evaluate bonn ...

A task module defines ``NAME``, ``MODALITY`` ("eeg"/"emg"), ``VARIANTS``, ``FILES`` (which files of the
publisher's distribution it reads and how it checks them: printed by ``--help``), ``load(data_dir,
sample_rate, variant, **options)`` -> :class:`~biocodec_jax.evaluation.dataset.LabelledWindows` (options:
those its optional ``add_arguments(parser)`` declares) and ``make_splits(data, variant, seed)`` (its own,
or one of :mod:`experiments.tasks.common`'s), which returns ``{protocol: [Split, ...]}`` or one list of
splits, the protocol then named by ``PROTOCOL``. The loader records in ``preprocessing`` its
``normalisation`` and its ``normalisation_scope`` ("window", "epoch" or "participant-session": never a
file where a file is one class). :mod:`experiments.tasks.common` does the rest: the command line
(``common.main``; ``biocodec-jax evaluate TASK`` is ``common.evaluate``), the codec, the run, whose
controls (chance, random-init codec, handcrafted features) are scored beside the methods.
"""

import importlib

TASKS = ("tuab", "tuev", "sleep_edf", "bciiv2a", "eegmmi", "kaggle_ern", "bonn", "emg_gestures")


def get_task(name: str):
    """The task module called ``name`` (a clear error listing the tasks otherwise)."""
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"experiments.tasks.{key}")
