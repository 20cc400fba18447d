"""BioCodec in PyTorch: our own rendering of the original architecture, for benchmarks and interop.

A stand-in for the original PyTorch release (github klean2050/BioCodec-release) where a benchmark or
a comparison needs "the PyTorch model": written from the facts in ``shared/reference/README.md``
(none of the original's code), the way a PyTorch user would write it: eager ``nn.Module``s,
``torch.nn.LSTM``, ``torch.nn.utils.parametrizations.weight_norm`` on ``nn.Conv1d`` /
``nn.ConvTranspose1d``, causal reflect padding with ``F.pad``. Nothing is fused or compiled.

The module tree mirrors the original's, so ``state_dict()`` has exactly its keys (``encoder.model.0.
conv.conv.parametrizations.weight.original0``, ``encoder.model.13.lstm.weight_ih_l0``,
``decoder.model.3.convtr.convtr.*``, ``quantizer.vq.layers.{i}._codebook.embed`` ...) and the
original's weights load with ``load_state_dict(..., strict=True)`` (see :func:`load_original`).

Architecture numbers come from :mod:`biocodec_jax.config` (presets ``eeg``, ``emg``, ``tiny``).
Behaviour follows the original, including two of its quirks:

- the training step back-propagates the commitment twice (once in the total, once on its own), so
  its effective weight is 2 x 0.25 = 0.5 (:class:`TorchTrainer`);
- dead-code replacement is not done: the original computes it and then overwrites it with the EMA
  update, so it has no effect.

Needs the ``[torch]`` extra (``pip install biocodec-jax[torch]``); the JAX package does not.

    model = load_original("biocodec_eeg_random_ckpt.pt")       # eval mode
    codes = model.encode(x)                                    # x [B, 1, T] -> int64 [B, 6, T']
    y = model.decode(codes)                                    # [B, 1, T' * 12]
    step = make_train_step(build_torch_codec("eeg"))           # Adam(0.5, 0.9), constant lr
    metrics = step(batch)                                      # dict of floats
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from biocodec_jax.config import CodecConfig, Config, LossConfig
from biocodec_jax.config import preset as _preset
from biocodec_jax.interop import torch_checkpoint

__all__ = [
    "BioCodecTorch",
    "TorchTrainer",
    "build_torch_codec",
    "load_original",
    "load_original_state_dict",
    "make_train_step",
    "reconstruction_losses",
    "stft_features",
]

# The original's quantizer scales its commitment term by this (its logged ``loss_w``).
COMMITMENT_WEIGHT = 0.25


# ---------------------------------------------------------------------------------------------
# Causal, weight-normed convolutions (SEANet style).


def _extra_padding(length: int, k_eff: int, stride: int, pad_total: int) -> int:
    """Right padding that makes the last frame complete."""
    frames = (length - k_eff + pad_total) / stride + 1
    ideal = (math.ceil(frames) - 1) * stride + (k_eff - pad_total)
    return ideal - length


def _pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """``F.pad`` that also reflect-pads inputs shorter than the padding (zero-pads them first)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode)
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra))
    out = F.pad(x, (left, right), mode)
    return out[..., : out.shape[-1] - extra]


class NormConv1d(nn.Module):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(*args, **kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NormConvTranspose1d(nn.Module):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        # Weight [in, out, k]: weight_norm's dim 0 makes g per *input* channel, as in the original.
        self.convtr = weight_norm(nn.ConvTranspose1d(*args, **kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convtr(x)


class SConv1d(nn.Module):
    """Causal conv: reflect-pad ``k_eff - stride`` on the left and what completes the last frame on the right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.k_eff = (kernel_size - 1) * dilation + 1
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_total = self.k_eff - self.stride
        extra = _extra_padding(x.shape[-1], self.k_eff, self.stride, pad_total)
        return self.conv(_pad1d(x, pad_total, extra))


class SConvTranspose1d(nn.Module):
    """Causal transposed conv: ``kernel - stride`` samples trimmed from the right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.trim = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        return y[..., : y.shape[-1] - self.trim]


class ResidualBlock(nn.Module):
    """``x + Conv1x1(ELU(Conv_k_dil(ELU(x))))`` with an identity shortcut."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(alpha=1.0),
            SConv1d(dim, hidden, kernel_size, dilation=dilation),
            nn.ELU(alpha=1.0),
            SConv1d(hidden, dim, 1),
        )
        self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """Unidirectional LSTM over time plus a skip connection; ``[B, C, T]`` in and out."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)  # [T, B, C]
        y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)


def _residuals(cfg: CodecConfig, dim: int) -> list[nn.Module]:
    return [
        ResidualBlock(dim, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress)
        for j in range(cfg.n_residual_layers)
    ]


class SEANetEncoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        mult = 1
        layers: list[nn.Module] = [SConv1d(1, cfg.n_filters, cfg.kernel_size)]
        for ratio in reversed(cfg.ratios):
            width = mult * cfg.n_filters
            layers += _residuals(cfg, width)
            layers += [nn.ELU(alpha=1.0), SConv1d(width, 2 * width, 2 * ratio, stride=ratio)]
            mult *= 2
        layers += [SLSTM(mult * cfg.n_filters, cfg.lstm_layers)]
        layers += [nn.ELU(alpha=1.0), SConv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        mult = 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [SConv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size)]
        layers += [SLSTM(mult * cfg.n_filters, cfg.lstm_layers)]
        for ratio in cfg.ratios:
            width = mult * cfg.n_filters
            layers += [nn.ELU(alpha=1.0), SConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio)]
            layers += _residuals(cfg, width // 2)
            mult //= 2
        layers += [nn.ELU(alpha=1.0), SConv1d(cfg.n_filters, 1, cfg.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ---------------------------------------------------------------------------------------------
# Residual vector quantizer: cosine-similarity codebooks with EMA updates and k-means init.


def kmeans(x: torch.Tensor, num_clusters: int, num_iters: int, generator: torch.Generator | None = None):
    """Euclidean k-means on ``x [N, d]`` -> ``(means [K, d], counts [K])``.

    Means start as ``K`` rows of ``x`` (without replacement when there are enough); an empty
    cluster keeps its mean; the counts are those of the last assignment.
    """
    n, d = x.shape
    if n >= num_clusters:
        idx = torch.randperm(n, generator=generator, device=x.device)[:num_clusters]
    else:
        idx = torch.randint(0, n, (num_clusters,), generator=generator, device=x.device)
    means = x[idx]
    bins = torch.zeros(num_clusters, dtype=torch.long, device=x.device)
    for _ in range(num_iters):
        dists = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ means.t() + means.pow(2).sum(1)[None])
        buckets = dists.argmax(dim=-1)
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        sums = torch.zeros_like(means).index_add_(0, buckets, x)
        new_means = sums / bins.masked_fill(empty, 1)[:, None].to(x.dtype)
        means = torch.where(empty[:, None], means, new_means)
    return means, bins.to(x.dtype)


class CosineCodebook(nn.Module):
    """One codebook: argmax of cosine similarity; EMA statistics as buffers (not trained by gradient)."""

    def __init__(self, dim: int, codebook_size: int, decay: float, epsilon: float, kmeans_iters: int):
        super().__init__()
        self.codebook_size, self.decay, self.epsilon, self.kmeans_iters = codebook_size, decay, epsilon, kmeans_iters
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, dim))

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Index ``[N]`` (int64) of the most cosine-similar code for each row of ``x [N, d]``."""
        sim = F.normalize(x, dim=-1) @ F.normalize(self.embed, dim=-1).t()
        return sim.argmax(dim=-1)

    def dequantize(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.embed)

    @torch.no_grad()
    def init_embed_(self, x: torch.Tensor) -> None:
        """k-means on the first training batch ``x [N, d]``, once."""
        if self.inited.item():
            return
        means, counts = kmeans(x, self.codebook_size, self.kmeans_iters)
        embed = F.normalize(means, dim=-1)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed)
        self.cluster_size.copy_(counts)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def ema_update_(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA of code counts and per-code sums of ``x [N, d]``; codebook = their smoothed ratio, normalised.

        No dead-code replacement: the original samples replacements for codes with
        ``cluster_size < 2`` but this update's final copy overwrites them, so it is a no-op there;
        we reproduce that by not doing it.
        """
        counts = torch.bincount(idx, minlength=self.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, x)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.embed.copy_(F.normalize(self.embed_avg / smoothed[:, None], dim=-1))


class VectorQuantization(nn.Module):
    """``project_in`` (D -> d), codebook, ``project_out`` (d -> D); ``[B, D, T]`` in and out."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.project_in = nn.Linear(cfg.dimension, cfg.codebook_dim)
        self.project_out = nn.Linear(cfg.codebook_dim, cfg.dimension)
        self._codebook = CosineCodebook(
            cfg.codebook_dim, cfg.codebook_size, cfg.ema_decay, cfg.ema_epsilon, cfg.kmeans_iters
        )
        self.commitment_weight = COMMITMENT_WEIGHT

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(quantized [B, D, T], codes [B, T], commitment)``; in training also the EMA update."""
        b, _, t = x.shape
        h = self.project_in(x.transpose(1, 2))  # [B, T, d]
        flat = h.reshape(b * t, -1)
        if self.training:
            self._codebook.init_embed_(flat.detach())
        idx = self._codebook.assign(flat)
        q = self._codebook.dequantize(idx).view_as(h)
        commit = torch.zeros((), device=x.device, dtype=x.dtype)
        if self.training:
            commit = F.mse_loss(q.detach(), h) * self.commitment_weight
            q = h + (q - h).detach()  # straight-through
            self._codebook.ema_update_(flat.detach(), idx)  # codes were chosen with the codebook before it
        return self.project_out(q).transpose(1, 2), idx.view(b, t), commit

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        h = self.project_in(x.transpose(1, 2)).reshape(b * t, -1)
        return self._codebook.assign(h).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.project_out(self._codebook.dequantize(codes)).transpose(1, 2)


class ResidualVectorQuantization(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantization(cfg) for _ in range(cfg.n_q))

    def forward(self, x: torch.Tensor, n_q: int | None = None):
        quantized = torch.zeros_like(x)
        residual = x
        codes, losses = [], []
        for layer in self.layers[:n_q]:
            out, idx, commit = layer(residual)
            residual = residual - out.detach()
            quantized = quantized + out
            codes.append(idx)
            losses.append(commit)
        return quantized, torch.stack(codes, dim=1), torch.stack(losses).mean()

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        residual = x
        codes = []
        for layer in self.layers[:n_q]:
            idx = layer.encode(residual)
            residual = residual - layer.decode(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        out = 0.0
        for i in range(codes.shape[1]):
            out = out + self.layers[i].decode(codes[:, i])
        return out


class ResidualVectorQuantizer(nn.Module):
    """The RVQ on embeddings ``[B, D, T']``; codes ``[B, K, T']`` (int64)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.n_q = cfg.n_q
        self.vq = ResidualVectorQuantization(cfg)

    def forward(self, x: torch.Tensor, n_q: int | None = None):
        """``(quantized, codes, commitment)``; commitment is the mean over quantizers, 0.25-weighted."""
        return self.vq(x, n_q)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        return self.vq.encode(x, n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(codes)


# ---------------------------------------------------------------------------------------------
# The codec.


def _float32_region(t: torch.Tensor):
    """Autocast off (a no-op outside autocast): the quantizer under AMP computes in float32, as in
    our bfloat16 path (its EMA's ``index_add_`` refuses bfloat16 sources into float32 buffers anyway)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


class BioCodecTorch(nn.Module):
    """Encoder, residual vector quantizer and decoder, laid out like the original."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.config = cfg
        # Registration order gives the original's state-dict order: encoder, decoder, quantizer.
        self.encoder = SEANetEncoder(cfg)
        self.decoder = SEANetDecoder(cfg)
        self.quantizer = ResidualVectorQuantizer(cfg)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, D, ceil(T / hop)]`` of ``x [B, 1, T]``."""
        return self.encoder(x)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Codes ``[B, n_q, T']`` (int64) of ``x [B, 1, T]``."""
        emb = self.embed(x)
        with _float32_region(emb):
            return self.quantizer.encode(emb.float(), n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Signal ``[B, 1, T' * hop]`` from codes ``[B, K, T']`` (the first K quantizers)."""
        with _float32_region(codes):
            quantized = self.quantizer.decode(codes)
        return self.decoder(quantized)

    def forward(self, x: torch.Tensor):
        """Eval: the reconstruction ``[B, 1, T]``. Training: ``(reconstruction, commitment)``.

        In training mode the quantizer also k-means-initialises codebooks not yet initialised
        and applies the EMA codebook update (no gradient), as the original does.
        """
        emb = self.encoder(x)
        with _float32_region(emb):  # under autocast: the quantizer and its EMA stay float32
            quantized, _, commit = self.quantizer(emb.float())
        recon = self.decoder(quantized)[..., : x.shape[-1]]
        if self.training:
            return recon, commit
        return recon


def _resolve(config: str | Config | CodecConfig | LossConfig, want: type):
    if isinstance(config, str):
        config = _preset(config)
    if isinstance(config, want):
        return config
    if isinstance(config, Config):
        return config.codec if want is CodecConfig else config.loss if want is LossConfig else config
    raise TypeError(f"expected a preset name, Config or {want.__name__}, got {type(config).__name__}")


def build_torch_codec(preset: str | CodecConfig | Config = "eeg") -> BioCodecTorch:
    """A freshly initialised PyTorch codec (PyTorch's default init; codebooks not yet k-means-initialised)."""
    return BioCodecTorch(_resolve(preset, CodecConfig))


def load_original_state_dict(source: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model state dict of the original's training checkpoint (``.pt``), a plain ``.pt``/``.npz``
    state dict, or a mapping; ``_orig_mod.`` / ``module.`` prefixes stripped.

    Files are read by ``biocodec_jax.interop.torch_checkpoint`` (weights only, the same reader the
    JAX side uses), so both frameworks see exactly the same arrays.
    """
    if isinstance(source, Mapping):
        arrays = {}
        for key, value in source.items():
            for prefix in torch_checkpoint.PREFIXES:
                key = key.removeprefix(prefix)
            arrays[key] = value
    else:
        arrays = torch_checkpoint.load_state_dict(source)
    return {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def load_original(
    source: str | Path | Mapping[str, Any], preset: str | CodecConfig | Config = "eeg"
) -> BioCodecTorch:
    """A codec with the original's weights (strict load), in eval mode."""
    model = build_torch_codec(preset)
    model.load_state_dict(load_original_state_dict(source), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Objective and training step.


def stft_features(x: torch.Tensor, n_fft: int, weights: tuple[float, float, float] = (1.0, 0.2, 0.2)) -> torch.Tensor:
    """``[w0 log1p|X|, w1 Re(X/|X|), w2 Im(X/|X|)]`` -> ``[N, 3, bins, frames]`` of ``x [N, L]``.

    Hop ``n_fft / 8``, periodic Hann window, reflect padding ``(n_fft - hop) / 2`` on both sides,
    no centring. ``X.abs()`` is safe at ``X = 0``: PyTorch's complex-abs backward is ``sgn(X)``,
    which is 0 there (no NaN on silent input).
    """
    hop = n_fft // 8
    pad = (n_fft - hop) // 2
    x = F.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=window, center=False, return_complex=True)
    mag = spec.abs()
    unit = spec / mag.clamp(min=1e-8)
    w0, w1, w2 = weights
    return torch.stack([w0 * torch.log1p(mag), w1 * unit.real, w2 * unit.imag], dim=1)


def reconstruction_losses(
    x: torch.Tensor, y: torch.Tensor, preset: str | Config | LossConfig = "eeg"
) -> dict[str, torch.Tensor]:
    """``l_t`` (smooth L1, beta from the config: 0.7) and ``l_f`` (multi-scale STFT: per n_fft, mean L1
    plus mean squared error of the features) between input ``x`` and reconstruction ``y`` ``[B, 1, T]``.

    The third term of the objective, the commitment, comes from the model's training forward.
    """
    cfg = _resolve(preset, LossConfig)
    x2, y2 = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    l_t = F.smooth_l1_loss(y2, x2, beta=cfg.huber_beta)
    l_f = x.new_zeros(())
    for n_fft in cfg.stft_n_ffts:
        d = stft_features(x2, n_fft, cfg.stft_feature_weights) - stft_features(y2, n_fft, cfg.stft_feature_weights)
        l_f = l_f + d.abs().mean() + d.pow(2).mean()
    return {"l_t": l_t, "l_f": l_f}


def pearson_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item Pearson correlation over the last axis."""
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    return (x * y).sum(-1) / torch.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-item scale-invariant SDR in dB (zero-mean)."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    alpha = (estimate * reference).sum(-1, keepdim=True) / ((reference * reference).sum(-1, keepdim=True) + eps)
    target = alpha * reference
    noise = estimate - target
    return 10 * torch.log10((target * target).sum(-1) / ((noise * noise).sum(-1) + eps) + eps)


class TorchTrainer:
    """The original's optimisation step: Adam(betas from the config: (0.5, 0.9)), constant learning rate.

    ``total = time_weight * l_t + freq_weight * l_f + commitment`` is back-propagated, then the
    commitment once more on its own, as the original does (effective commitment weight 2 x 0.25).
    After a step the parameters' ``.grad`` hold that step's gradients.

    ``amp=True``: PyTorch's automatic mixed precision as a PyTorch user would set it up, the model's
    forward under ``torch.autocast(dtype=torch.bfloat16)`` (convolutions, LSTM and linear layers
    in bfloat16, float32 weights) and the losses in float32 on the float32 cast of the
    reconstruction (as our bfloat16 path); no gradient scaler (bfloat16 needs none).
    """

    def __init__(self, model: BioCodecTorch, lr: float | None = None, config: str | Config = "eeg", amp: bool = False):
        full = _resolve(config, Config)
        self.model = model
        self.amp = amp
        self.loss_config: LossConfig = full.loss
        self.lr = full.optim.learning_rate if lr is None else lr
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=self.lr, betas=(full.optim.b1, full.optim.b2), eps=full.optim.eps
        )

    def step(self, x: torch.Tensor | np.ndarray) -> dict[str, float]:
        """One training step on ``x [B, C, T]`` (channels become items); returns the metrics as floats."""
        x = torch.as_tensor(x, dtype=torch.float32)
        x = x.reshape(-1, 1, x.shape[-1])
        cfg = self.loss_config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            recon, commit = self.model(x)
        recon, commit = recon.float(), commit.float()
        losses = reconstruction_losses(x, recon, cfg)
        total = cfg.time_weight * losses["l_t"] + cfg.freq_weight * losses["l_f"] + commit
        total.backward(retain_graph=True)
        commit.backward()  # the original's second backward on the commitment
        self.optimizer.step()
        with torch.no_grad():
            r, y = x[:, 0], recon.detach()[:, 0]
            corr, sdr = pearson_correlation(r, y).mean(), si_sdr(r, y).mean()
        commit_value = commit.item()
        return {
            "loss": total.item(),
            "l_t": losses["l_t"].item(),
            "l_f": losses["l_f"].item(),
            "commit": commit_value,  # the original's loss_w: 0.25 * mean_q mse
            "commit_mse": commit_value / COMMITMENT_WEIGHT,
            "corr": corr.item(),
            "si_sdr": sdr.item(),
        }

    __call__ = step


def make_train_step(model: BioCodecTorch, lr: float | None = None, preset: str | Config = "eeg") -> TorchTrainer:
    """A callable ``step(x) -> dict of floats`` (a :class:`TorchTrainer`); ``lr`` defaults to the preset's."""
    return TorchTrainer(model, lr=lr, config=preset)
