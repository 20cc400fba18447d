"""One program per downstream task; each reads its dataset as published and calls the evaluation library.

    python -m experiments.tasks.bonn --data DIR --codec CKPT_OR_WORKDIR    # or: biocodec-jax evaluate bonn ...

A task module defines ``NAME``, ``MODALITY`` ("eeg"/"emg"), ``VARIANTS``, ``load(data_dir, sample_rate,
variant)`` -> :class:`~biocodec_jax.evaluation.dataset.LabelledWindows` and ``make_splits(data, variant, seed)``
(its own, or one of :mod:`experiments.tasks.common`'s); :mod:`experiments.tasks.common` does the rest: the
command line (``common.main``; ``biocodec-jax evaluate TASK`` is ``common.evaluate``), the codec, the run.
"""

import importlib

TASKS = ("tuab", "tuev", "sleep_edf", "bciiv2a", "eegmmi", "kaggle_ern", "bonn", "emg_gestures")


def get_task(name: str):
    """The task module called ``name`` (a clear error listing the tasks otherwise)."""
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"experiments.tasks.{key}")
