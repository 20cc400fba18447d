"""Supervised PyTorch baselines from braindecode (EEGNet, ShallowFBCSPNet) on the raw windows.

They read the same preprocessed windows ``x [N, C, T]`` (at the codec's sample rate) and the same
subject splits as the codec-based classifiers, and are trained with the same recipe where it
makes sense: cross-entropy weighted by inverse class frequency, AdamW with cosine annealing, and
the epoch with the best validation balanced accuracy kept. torch and braindecode are an optional
extra (``pip install "biocodec-jax[baselines]"``), imported only inside the functions that need them.

Both architectures were designed at one sample rate (EEGNet at 128 Hz, ShallowFBCSPNet at 250 Hz);
their time constants that act on the input rate are rescaled so that they keep the same duration
in seconds at any rate (see :func:`model_kwargs`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from biocodec_jax.evaluation.dataset import DatasetError, check_labels
from biocodec_jax.evaluation.metrics import balanced_accuracy

log = logging.getLogger(__name__)

BASELINES = ("eegnet", "shallow")
INSTALL_HINT = 'pip install "biocodec-jax[baselines]"  (installs torch and braindecode)'

# Rates the architectures' published time constants refer to.
EEGNET_DESIGN_RATE = 128.0  # Lawhern et al. 2018: 64-sample temporal kernel = half the sampling rate
SHALLOW_DESIGN_RATE = 250.0  # Schirrmeister et al. 2017: 25-sample filter, 75/15 pooling at 250 Hz


def baselines_available() -> bool:
    """True when torch and braindecode are installed (found without importing them: that takes seconds)."""
    return all(importlib.util.find_spec(module) is not None for module in ("torch", "braindecode"))


def _import_torch_and_braindecode():
    try:
        import torch
        import braindecode.models
    except ImportError as err:
        raise ImportError(f"the braindecode baselines need torch and braindecode ({err}); "
                          f"install them with: {INSTALL_HINT}") from err
    return torch, braindecode.models


@dataclass(frozen=True)
class BaselineConfig:
    """How one baseline is trained (see :func:`default_config` for the per-model defaults).

    ``device`` is a torch device name; ``None`` picks CUDA when available, else CPU.
    ``threads`` sets ``torch.set_num_threads`` for the duration of the fit (restored after).
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    threads: int | None = None
    device: str | None = None

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"baseline training needs epochs >= 1 and batch_size >= 1; got {self.epochs}, {self.batch_size}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0; got {self.learning_rate}, {self.weight_decay}")


def default_config(name: str) -> BaselineConfig:
    """The recommended optimiser settings of each model.

    ShallowFBCSPNet: braindecode's trialwise-decoding tutorial values for the shallow network
    (AdamW, lr 0.0625 * 0.01, weight decay 0, batch 64, cosine annealing).
    EEGNet: Lawhern et al. 2018 train with Adam at its default lr 1e-3 and no weight decay
    (dropout and max-norm regularise instead), batch 64 as in braindecode's tutorials.
    """
    _check_name(name)
    if name == "shallow":
        return BaselineConfig(epochs=30, batch_size=64, learning_rate=0.0625 * 0.01, weight_decay=0.0)
    return BaselineConfig(epochs=30, batch_size=64, learning_rate=1e-3, weight_decay=0.0)


def _check_name(name: str) -> None:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")


def _scaled(samples: int, sample_rate: float, design_rate: float) -> int:
    return max(1, int(round(samples * sample_rate / design_rate)))


def model_kwargs(name: str, sample_rate: float) -> dict[str, int]:
    """Time constants of ``name`` at ``sample_rate``, rescaled from the rate the model was designed at.

    EEGNet: only the layers that see the input rate scale with it, the temporal kernel
    (``kernel_length``, 64 at 128 Hz = 0.5 s, braindecode's default) and the first pooling
    (``pool1_kernel_size``, 4 at 128 Hz); after that pooling the features run at ~32 Hz as in
    the paper, so ``depthwise_kernel_length`` (16) and ``pool2_kernel_size`` (8) keep braindecode's
    defaults. At 128 Hz this is exactly braindecode's default EEGNet.
    ShallowFBCSPNet: every time constant sees the input rate, so ``filter_time_length`` (25),
    ``pool_time_length`` (75) and ``pool_time_stride`` (15), braindecode's defaults at 250 Hz, all
    scale; at 250 Hz this is exactly braindecode's default ShallowFBCSPNet.
    """
    _check_name(name)
    if not sample_rate > 0:
        raise ValueError(f"{name}: sample_rate must be positive; got {sample_rate}")
    if name == "eegnet":
        return {"kernel_length": _scaled(64, sample_rate, EEGNET_DESIGN_RATE),
                "pool1_kernel_size": _scaled(4, sample_rate, EEGNET_DESIGN_RATE),
                "depthwise_kernel_length": 16, "pool2_kernel_size": 8}
    return {"filter_time_length": _scaled(25, sample_rate, SHALLOW_DESIGN_RATE),
            "pool_time_length": _scaled(75, sample_rate, SHALLOW_DESIGN_RATE),
            "pool_time_stride": _scaled(15, sample_rate, SHALLOW_DESIGN_RATE)}


def _output_samples(name: str, n_times: int, kw: dict[str, int]) -> int:
    """Time samples left at the classifier for an input of ``n_times`` (braindecode's layer arithmetic)."""
    if name == "eegnet":
        k = kw["kernel_length"]
        t = n_times + 2 * (k // 2) - k + 1  # temporal conv, padding k // 2
        t //= kw["pool1_kernel_size"]
        d = kw["depthwise_kernel_length"]
        t = t + 2 * (d // 2) - d + 1  # separable depthwise conv, padding d // 2
        return t // kw["pool2_kernel_size"]
    t = n_times - kw["filter_time_length"] + 1  # temporal conv, no padding
    if t < kw["pool_time_length"]:
        return 0
    return (t - kw["pool_time_length"]) // kw["pool_time_stride"] + 1


def min_input_samples(name: str, sample_rate: float) -> int:
    """Shortest window (samples) ``name`` accepts at ``sample_rate``."""
    kw = model_kwargs(name, sample_rate)
    t = 1
    while _output_samples(name, t, kw) < 1:
        t += 1
    return t


def build_model(name: str, n_chans: int, n_times: int, n_classes: int, sample_rate: float):
    """The braindecode module for ``name`` (random weights from torch's current RNG); outputs logits."""
    _, models = _import_torch_and_braindecode()
    _check_name(name)
    shortest = min_input_samples(name, sample_rate)
    if n_times < shortest:
        raise ValueError(f"{name}: windows of {n_times} samples are too short at {sample_rate:g} Hz; "
                         f"the model needs at least {shortest} samples ({shortest / sample_rate:.3g} s)")
    kw = model_kwargs(name, sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # braindecode's deprecation notices about signal-shape arguments
        if name == "eegnet":
            # The paper's classifier: dense layer with max-norm 0.25 (braindecode's final_layer_with_constraint).
            return models.EEGNet(n_chans=n_chans, n_outputs=n_classes, n_times=n_times,
                                 final_layer_with_constraint=True, **kw)
        if n_chans == 1:
            # braindecode 1.8.1's ShallowFBCSPNet fails on one channel (CombinedConv squeezes its spatial
            # weight to a vector), and split_first_layer=False fails at init. An all-zero second channel is
            # exactly the one-channel model: its spatial weights multiply zeros, and the only place they enter
            # otherwise, the temporal bias, is cancelled by the batch norm that follows.
            import torch

            shallow = models.ShallowFBCSPNet(n_chans=2, n_outputs=n_classes, n_times=n_times,
                                             final_conv_length="auto", **kw)
            return torch.nn.Sequential(torch.nn.ConstantPad2d((0, 0, 0, 1), 0.0), shallow)
        return models.ShallowFBCSPNet(n_chans=n_chans, n_outputs=n_classes, n_times=n_times,
                                      final_conv_length="auto", **kw)


@dataclass
class FittedBaseline:
    """A trained baseline (weights of its best validation epoch) and its training history.

    ``history`` has one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``
    (class-weighted cross-entropy), ``val_balanced_accuracy`` and ``learning_rate``.
    """

    name: str
    model: Any  # torch.nn.Module, in eval mode
    n_classes: int
    n_chans: int
    n_times: int
    sample_rate: float
    config: BaselineConfig
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (softmax of the logits, eval mode)."""
        x = _as_windows(x, f"{self.name} input")
        if x.shape[1:] != (self.n_chans, self.n_times):
            raise ValueError(f"{self.name}: trained on windows of {self.n_chans} channels x {self.n_times} samples; "
                             f"got {x.shape[1]} x {x.shape[2]}")
        return _predict_logits(self.model, x, self.n_classes, batch_size, self.device, softmax=True)


def _predict_logits(model, x: np.ndarray, n_classes: int, batch_size: int, device: str, softmax: bool) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(x[start:start + batch_size]).to(device))
            out.append((torch.softmax(logits, dim=1) if softmax else logits).cpu().numpy())
    if not out:
        return np.zeros((0, n_classes), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def _as_windows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"{what}: windows must be [N, channels, samples]; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: non-finite values in the windows")
    return x


@contextlib.contextmanager
def _torch_settings(torch, threads: int | None, cuda_devices: list[int]):
    """Seedable, deterministic torch for the duration of one fit; every global setting is restored."""
    saved_threads = torch.get_num_threads()
    saved_algorithms = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        with torch.random.fork_rng(devices=cuda_devices):  # the caller's RNG streams are left untouched
            if threads:
                torch.set_num_threads(int(threads))
            if cuda_devices:
                # Only on CUDA: the CPU kernels of these two models are already deterministic (tested), and
                # use_deterministic_algorithms imports torch._inductor, several seconds on a small machine.
                # warn_only: without CUBLAS_WORKSPACE_CONFIG some CUDA kernels have no deterministic
                # variant, and a warning is better than a failed run.
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
            yield
    finally:
        torch.set_num_threads(saved_threads)
        if cuda_devices:
            torch.use_deterministic_algorithms(saved_algorithms[0], warn_only=saved_algorithms[1])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cudnn


def fit_baseline(name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 n_classes: int, sample_rate: float, config: BaselineConfig | None = None, seed: int = 0,
                 progress: bool = False, class_names: Sequence[str] | None = None) -> FittedBaseline:
    """Train baseline ``name`` on ``(x_train, y_train)``; keep the epoch with the best validation balanced accuracy.

    ``x_*`` are windows ``[N, C, T]`` at ``sample_rate`` (the codec's rate), ``y_*`` integer labels
    in ``0..n_classes-1``. Ties in balanced accuracy go to the lower validation loss. The same
    ``seed`` (and device) gives the same model: it seeds the weights and dropout (torch) and the
    batch order (numpy). ``config`` defaults to :func:`default_config` of ``name``. ``class_names``
    only makes error messages readable. Raises :class:`DatasetError` when a class has no training
    window, ``ValueError`` for windows shorter than the model accepts (:func:`min_input_samples`).
    """
    _check_name(name)
    torch, _ = _import_torch_and_braindecode()

    config = config or default_config(name)
    if n_classes < 2:
        raise ValueError(f"{name}: need at least 2 classes; got {n_classes}")
    x_train, x_val = _as_windows(x_train, f"{name} training set"), _as_windows(x_val, f"{name} validation set")
    y_train = check_labels(y_train, len(x_train), n_classes, f"{name} training set")
    y_val = check_labels(y_val, len(x_val), n_classes, f"{name} validation set")
    if len(x_val) == 0:
        raise DatasetError(f"{name}: the validation set is empty; model selection needs validation windows")
    if x_val.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"{name}: validation windows are {x_val.shape[1]} x {x_val.shape[2]} but training windows "
                         f"{x_train.shape[1]} x {x_train.shape[2]} (channels x samples)")
    counts = np.bincount(y_train, minlength=n_classes)
    if np.any(counts == 0):
        names = class_names if class_names is not None else [str(i) for i in range(n_classes)]
        missing = ", ".join(str(names[i]) for i in np.flatnonzero(counts == 0))
        raise DatasetError(f"{name}: class(es) {missing} absent from the training labels; cannot train a classifier for them")

    _, n_chans, n_times = x_train.shape
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda_devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    # Inverse class frequency, as sklearn's class_weight="balanced" and our token classifier.
    class_weight = torch.tensor(len(y_train) / (n_classes * counts), dtype=torch.float32, device=device)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    with _torch_settings(torch, config.threads, cuda_devices):
        torch.manual_seed(seed)
        model = build_model(name, n_chans, n_times, n_classes, sample_rate).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        # braindecode's recipe: CosineAnnealingLR(T_max=n_epochs - 1), stepped once per epoch.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs - 1, 1))
        y_val_t = torch.from_numpy(y_val).to(device)
        best_key, best_state, best_epoch = None, None, 0
        for epoch in tqdm(range(1, config.epochs + 1), desc=f"training {name}", unit="epoch",
                          disable=not progress, mininterval=5):
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            total = 0.0
            # array_split: batch sizes differ by at most one, so no lone window meets batch norm
            n_batches = max(1, math.ceil(len(x_train) / config.batch_size))
            for batch in np.array_split(rng.permutation(len(x_train)), n_batches):
                xb = torch.from_numpy(x_train[batch]).to(device)
                yb = torch.from_numpy(y_train[batch]).to(device)
                loss = torch.nn.functional.cross_entropy(model(xb), yb, weight=class_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            scheduler.step()
            logits = _predict_logits(model, x_val, n_classes, max(config.batch_size, 256), device, softmax=False)
            val_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits).to(device), y_val_t,
                                                               weight=class_weight))
            val_bacc = balanced_accuracy(y_val, logits.argmax(axis=1))
            history.append({"epoch": epoch, "train_loss": total / len(x_train), "val_loss": val_loss,
                            "val_balanced_accuracy": val_bacc, "learning_rate": lr})
            key = (val_bacc, -val_loss)
            if best_key is None or key > best_key:
                best_key, best_epoch = key, epoch
                best_state = copy.deepcopy(model.state_dict())
            log.debug("%s epoch %d: train loss %.4f, val loss %.4f, val balanced accuracy %.4f",
                      name, epoch, total / len(x_train), val_loss, val_bacc)
        model.load_state_dict(best_state)
        model.eval()
    log.info("%s: best validation balanced accuracy %.4f at epoch %d of %d", name, best_key[0], best_epoch, config.epochs)
    return FittedBaseline(name=name, model=model, n_classes=n_classes, n_chans=n_chans, n_times=n_times,
                          sample_rate=float(sample_rate), config=config, best_epoch=best_epoch,
                          history=history, device=device)
