import os
from pathlib import Path

# Tests run on CPU; several simulated devices are available for sharding tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "eeg"
ORIGINAL_CKPT = FIXTURES / "biocodec_eeg_random_ckpt.pt"


def load_fixture(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name}.npy")


@pytest.fixture(scope="session")
def original_codec():
    """The original's EEG codec with its fixed random weights, loaded from its training checkpoint."""
    from biocodec_jax import Codec

    return Codec.from_torch_checkpoint(ORIGINAL_CKPT)


@pytest.fixture(scope="session")
def train_step_ref():
    with np.load(FIXTURES / "train_step.npz") as f:
        return {k: f[k] for k in f.files}
