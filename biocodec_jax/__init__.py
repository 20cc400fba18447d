"""biocodec-jax: BioCodec, the neural-codec tokenizer for EEG and EMG, in JAX/Flax."""

from biocodec_jax.codec import Codec
from biocodec_jax.config import CodecConfig, Config, LossConfig, OptimConfig, TrainConfig, load_config, preset

__all__ = ["Codec", "Config", "CodecConfig", "LossConfig", "OptimConfig", "TrainConfig", "load_config", "preset"]
__version__ = "0.1.0"
