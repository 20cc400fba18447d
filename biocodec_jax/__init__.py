"""biocodec-jax: BioCodec, the neural-codec tokenizer for EEG and EMG, in JAX/Flax.

Attributes load lazily, so ``import biocodec_jax.config`` (the command line's light start, e.g.
``biocodec-jax --help`` and ``prepare``'s worker processes) does not import JAX.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Codec": "biocodec_jax.codec",
    "Config": "biocodec_jax.config",
    "CodecConfig": "biocodec_jax.config",
    "LossConfig": "biocodec_jax.config",
    "OptimConfig": "biocodec_jax.config",
    "TrainConfig": "biocodec_jax.config",
    "load_config": "biocodec_jax.config",
    "preset": "biocodec_jax.config",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'biocodec_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
