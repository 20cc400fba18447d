"""Typed configuration: codec architecture, objective, optimiser and training run.

Every experiment is a YAML file plus command-line overrides resolved into a :class:`Config`.
Presets reproduce the original BioCodec release (``eeg``, ``emg``) or shrink it for tests
(``tiny``). The resolved config is written next to every run's outputs (:func:`save_config`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from data_pipelines import paths
from data_pipelines.typed_config import apply_overrides, dataclass_from_dict, save_config, to_dict

__all__ = [
    "Numerics", "CodecConfig", "LossConfig", "OptimConfig", "TrainConfig", "Config", "PRESETS", "preset",
    "from_dict", "load_config", "pretrain_config",
    # from data_pipelines.typed_config
    "apply_overrides", "dataclass_from_dict", "save_config", "to_dict",
]

DeadCodeMode = Literal["faithful", "replace"]
Precision = Literal["float32", "float64", "bfloat16"]
ConvImpl = Literal["auto", "xla", "matmul"]


@dataclass(frozen=True)
class Numerics:
    """How the network computes, not what it is: the same weights run under any of these.

    ``precision``: ``float32``; ``bfloat16`` mixed precision (parameters, optimiser state and
    codebooks stay float32; convolutions and LSTM matmuls compute in bfloat16; the quantizer,
    the STFT and every loss stay float32); ``float64`` for numerical checks (parameters too).
    ``conv_impl``: how convolutions are computed (``biocodec_jax.nn.conv``; ``auto`` picks per
    platform). ``lstm_unroll``: time steps per iteration of the LSTM's scan (0: per platform,
    ``biocodec_jax.nn.lstm``).
    """

    precision: Precision = "float32"
    conv_impl: ConvImpl = "auto"
    lstm_unroll: int = 0

    def __post_init__(self):
        for name, kind in (("precision", Precision), ("conv_impl", ConvImpl)):
            if getattr(self, name) not in typing.get_args(kind):
                raise ValueError(f"{name} must be one of {list(typing.get_args(kind))}; got {getattr(self, name)!r}")
        if self.lstm_unroll < 0:
            raise ValueError(f"lstm_unroll must be >= 0 (0: per platform); got {self.lstm_unroll}")

    @property
    def compute_dtype(self) -> str | None:
        """The dtype the layers compute in, where it differs from the parameters' (else None)."""
        return "bfloat16" if self.precision == "bfloat16" else None

    @property
    def param_dtype(self) -> str:
        """The dtype of parameters, optimiser state and codebooks."""
        return "float64" if self.precision == "float64" else "float32"


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of the SEANet encoder/decoder and the residual vector quantizer."""

    sample_rate: int = 250
    # Down-sampling ratios as the original's config lists them (decoder order); the encoder
    # applies them reversed, so (3, 2, 2) means strides 2, 2, 3 on the way in.
    ratios: tuple[int, ...] = (3, 2, 2)
    n_filters: int = 32
    dimension: int = 128
    n_residual_layers: int = 2
    residual_kernel_size: int = 3
    dilation_base: int = 2
    kernel_size: int = 3
    last_kernel_size: int = 3
    compress: int = 1
    lstm_layers: int = 2
    # Residual vector quantizer.
    n_q: int = 6
    codebook_size: int = 256
    codebook_dim: int = 16
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    kmeans_iters: int = 50
    dead_code_threshold: float = 2.0
    # The original computes a dead-code replacement and then overwrites it with the EMA
    # update, so replacement never takes effect. "faithful" reproduces that (a no-op);
    # "replace" makes the replacement stick (see quantization/rvq.py).
    dead_code_mode: DeadCodeMode = "faithful"

    @property
    def hop_length(self) -> int:
        """Input samples per embedding frame (product of the ratios)."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second per channel with all quantizers."""
        return self.n_q * math.log2(self.codebook_size) * self.frame_rate

    def frames(self, n_samples: int) -> int:
        """Embedding frames for an input of ``n_samples``: ceil(T / hop)."""
        return -(-n_samples // self.hop_length)


@dataclass(frozen=True)
class LossConfig:
    """Weights and settings of the objective ``time*l_t + freq*l_f + commitment*commit``."""

    time_weight: float = 0.2
    freq_weight: float = 1.0
    # Weight on mean_q ||sg(q) - x||^2. The original's quantizer scales it by 0.25 and then
    # back-propagates the commitment twice (once inside the total, once on its own), so its
    # effective weight on the gradient is 2 * 0.25 = 0.5. We apply 0.5 once.
    commitment_weight: float = 0.5
    huber_beta: float = 0.7
    stft_n_ffts: tuple[int, ...] = (32, 64, 128, 256)
    # Weights of the [log1p|X|, Re(X/|X|), Im(X/|X|)] STFT features.
    stft_feature_weights: tuple[float, float, float] = (1.0, 0.2, 0.2)


@dataclass(frozen=True)
class OptimConfig:
    """Adam with the original's per-step linear warm-up then cosine decay to zero."""

    learning_rate: float = 1e-4
    b1: float = 0.5
    b2: float = 0.9
    eps: float = 1e-8
    warmup_init_ratio: float = 5e-4
    warmup_steps: int = 48_828  # 5 epochs of 5M windows at batch 512
    total_steps: int = 195_312  # 20 epochs


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does. The windows are the data's: pretraining on shards takes their length
    from the shards' ``manifest.json`` (:func:`biocodec_jax.training.loop.pretrain`)."""

    batch_size: int = 512  # global: all devices of all hosts together
    # None: the shards' window (pretraining fills it in from their manifest); a number insists on it,
    # and shards of another length are refused. The presets' value is the window they are prepared
    # for, used where nothing is read from shards (the demo's prepare, benchmarks, synthetic batches).
    window_seconds: float | None = 5.0
    clip: float = 10.0  # the original's loader clips normalised input to +-clip
    steps: int = 195_312
    seed: int = 0
    log_every: int = 50
    eval_every: int = 1000  # 0: no periodic validation
    eval_batches: int = 16  # global batches of the validation split per evaluation
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # the last K, plus the best by validation loss
    async_checkpointing: bool = True
    data: str = ""  # a `biocodec-jax prepare` output (shards + manifest.json)
    loader_workers: int = 0  # Grain worker processes per host (0: decode in the training process)
    # bfloat16: mixed precision (float32 master weights, optimiser state and codebooks; see
    # Numerics). float64 is for numerical checks (e.g. that 8 devices compute what 1 does, free of
    # float32 summation-order effects); it turns on jax_enable_x64 for the process.
    precision: Precision = "float32"
    conv_impl: ConvImpl = "auto"  # see Numerics
    lstm_unroll: int = 0  # see Numerics

    def __post_init__(self):
        self.numerics  # validates precision, conv_impl and lstm_unroll together

    def window_samples(self, sample_rate: int) -> int:
        if self.window_seconds is None:
            raise ValueError("train.window_seconds is not set: it is the training data's (pretraining takes it "
                             "from the shards' manifest.json)")
        return int(round(self.window_seconds * sample_rate))

    @property
    def numerics(self) -> Numerics:
        return Numerics(self.precision, self.conv_impl, self.lstm_unroll)


@dataclass(frozen=True)
class Config:
    """Everything a run needs; ``preset`` names where it started from."""

    preset: str = "eeg"
    codec: CodecConfig = field(default_factory=CodecConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _eeg() -> Config:
    return Config(preset="eeg")


def _emg() -> Config:
    # EMG: 1 kHz, ratios (3, 3, 2) (hop 18), larger STFT scales, lr 5e-4 at batch 256.
    return Config(
        preset="emg",
        codec=CodecConfig(sample_rate=1000, ratios=(3, 3, 2)),
        loss=LossConfig(stft_n_ffts=(128, 256, 512, 1024)),
        optim=OptimConfig(learning_rate=5e-4),
        train=TrainConfig(batch_size=256),
    )


def _tiny() -> Config:
    # A few thousand parameters and short windows: for tests only.
    return Config(
        preset="tiny",
        codec=CodecConfig(
            sample_rate=250, ratios=(2, 2), n_filters=4, dimension=16, lstm_layers=1,
            n_q=3, codebook_size=16, codebook_dim=4, kmeans_iters=10,
        ),
        loss=LossConfig(stft_n_ffts=(16, 32)),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=10, total_steps=1000),
        train=TrainConfig(batch_size=8, window_seconds=1.0, steps=100),
    )


PRESETS = {"eeg": _eeg, "emg": _emg, "tiny": _tiny}


def preset(name: str) -> Config:
    """The named preset (``eeg``, ``emg`` or ``tiny``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------
# YAML and overrides. The generic machinery (dicts, type checks, dotted overrides, saving) is the
# data layer's (data_pipelines.typed_config), shared with PrepareConfig; re-exported here, where
# users and the README import it from.


def from_dict(data: dict) -> Config:
    """Build a Config from a (possibly partial) dict; missing keys come from its preset."""
    data = dict(data)
    base = to_dict(preset(data.get("preset", "eeg")))
    merged = _deep_merge(base, data)
    return dataclass_from_dict(Config, merged)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: str | Path) -> dict:
    with paths.as_path(path).open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, preset_name: str | None = None) -> Config:
    """Read a YAML config (keys missing from it come from its ``preset``) and apply overrides.

    ``preset_name`` replaces the file's ``preset:`` (e.g. ``tiny`` for a quick look at a production
    config): the file's other sections still apply, over the named preset.
    """
    data = _read_yaml(path)
    if preset_name is not None:
        preset(preset_name)  # an unknown name: the presets' own error
        data = {**data, "preset": preset_name}
    try:
        config = from_dict(data)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e
    return apply_overrides(config, overrides)


WINDOW_KEY = "train.window_seconds"


def pretrain_config(
    path: str | Path | None = None, preset_name: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """The config of a pretraining run (``biocodec-jax pretrain``): the YAML file ``path`` (its preset
    replaced by ``preset_name`` if given), or else the preset ``preset_name`` (default ``eeg``), then
    ``overrides``.

    The window is the data's: ``train.window_seconds`` is None, so that pretraining takes it from the
    shards' manifest, unless the file or an override names it (then shards of another length are an
    error naming both).
    """
    named = any(item.split("=", 1)[0].strip() == WINDOW_KEY for item in overrides)
    if path is not None:
        config = load_config(path, overrides, preset_name=preset_name)
        named = named or "window_seconds" in (_read_yaml(path).get("train") or {})
    else:
        config = apply_overrides(preset(preset_name or "eeg"), overrides)
    if named:
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, window_seconds=None))
