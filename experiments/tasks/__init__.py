"""One program per downstream task; each reads its dataset as published and calls the evaluation library.

    python -m experiments.tasks.bonn --data DIR --codec CKPT_OR_WORKDIR    # or: biocodec-jax evaluate bonn ...

A task module defines ``NAME``, ``MODALITY`` ("eeg"/"emg"), ``VARIANTS``, ``load(data_dir, sample_rate,
variant)`` -> :class:`~biocodec_jax.evaluation.dataset.LabelledWindows` and ``make_splits(data, variant, seed)``;
:mod:`experiments.tasks.common` does the rest.
"""

import importlib

TASKS = ("tuab", "tuev", "sleep_edf", "bciiv2a", "eegmmi", "kaggle_ern", "bonn", "emg_gestures")


def get_task(name: str):
    """The task module called ``name`` (a clear error listing the tasks otherwise)."""
    key = name.replace("-", "_").lower()
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"experiments.tasks.{key}")


def check_variant(task: str, variants, variant: str | None) -> str:
    """``variant``, or the task's default (its first) when None; a clear error for an unknown one."""
    variant = variants[0] if variant is None else variant
    if variant not in variants:
        raise ValueError(f"{task}: unknown variant {variant!r}; choose one of {', '.join(variants)}")
    return variant
