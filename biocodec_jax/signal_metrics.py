"""How close a reconstruction is to its signal: Pearson correlation and scale-invariant SDR.

The one definition used by the training step (logged metrics), the report (``biocodec-jax
report``), the demo and the benchmarks. Both work over the last axis, ``[..., T] -> [...]``,
on numpy or JAX arrays (also inside ``jit``/``grad``), and compute in the dtype they are given:
the report passes float64, the training step float32.

Why the array namespace and not an ``xp`` argument: numpy (>= 2.0) and JAX arrays both carry
``__array_namespace__``, so the caller cannot pick the wrong library, and the JAX path runs
exactly the ``jnp`` operations the training step ran before this module existed (its float32
metrics stay bit-identical). Anything else (lists, scalars) is read with numpy.

One ``eps`` convention, :data:`EPS` = 1e-8 placed as in the original's training metrics: added
to the reference energy (the projection), to the noise energy and to the ratio before the
logarithm. It only matters where signal energies approach 1e-8, i.e. for signals in volts
(EEG is ~1e-5 V): compute the metrics on the codec's normalised signals (unit IQR per channel),
as the training step and the report do; there ``eps`` changes SI-SDR by less than 1e-6 dB
against an eps-free formula wherever SI-SDR is above -10 dB (at an untrained codec's -44 dB:
1e-3 dB; it bounds SI-SDR below at -80 dB). What it changes at the edges: a perfect reconstruction has a large
finite SI-SDR (``10 log10(energy / eps)``) rather than ``inf``, and a constant reference -80 dB
rather than NaN. The correlation has no ``eps``: it is NaN for a constant signal (numpy's
division warnings are silenced for it), which the report turns into ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-8


def _namespace(*arrays: Any) -> tuple[Any, list[Any]]:
    """The array library of the first argument that declares one (numpy otherwise), and the
    arguments as arrays of it."""
    for a in arrays:
        if hasattr(a, "__array_namespace__"):
            xp = a.__array_namespace__()
            break
    else:
        xp = np
    return xp, [a if hasattr(a, "__array_namespace__") and a.__array_namespace__() is xp else xp.asarray(a) for a in arrays]


def correlation(x: Any, y: Any) -> Any:
    """Pearson correlation of ``y`` with ``x`` over the last axis -> ``[...]`` (NaN for a constant signal)."""
    xp, (x, y) = _namespace(x, y)
    x = x - xp.mean(x, axis=-1, keepdims=True)
    y = y - xp.mean(y, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # numpy only; a no-op for JAX
        return xp.sum(x * y, axis=-1) / xp.sqrt(xp.sum(x * x, axis=-1) * xp.sum(y * y, axis=-1))


def si_sdr(reference: Any, estimate: Any, eps: float = EPS) -> Any:
    """Scale-invariant SDR (dB) of ``estimate`` against ``reference`` over the last axis -> ``[...]``.

    Both are made zero-mean; ``reference`` is scaled onto ``estimate`` (the projection ``alpha``)
    and the rest of ``estimate`` counts as noise. ``eps``: see the module doc (keep the default).
    """
    xp, (reference, estimate) = _namespace(reference, estimate)
    reference = reference - xp.mean(reference, axis=-1, keepdims=True)
    estimate = estimate - xp.mean(estimate, axis=-1, keepdims=True)
    alpha = xp.sum(estimate * reference, axis=-1, keepdims=True) / (xp.sum(reference * reference, axis=-1, keepdims=True) + eps)
    target = alpha * reference
    noise = estimate - target
    ratio = xp.sum(target * target, axis=-1) / (xp.sum(noise * noise, axis=-1) + eps)
    return 10.0 * xp.log10(ratio + eps)
