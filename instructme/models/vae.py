"""Audio VAE: mono waveform <-> latent sequence ``z: [B, C, T']`` (the editor's latent space).

InstructME (arXiv 2308.14360; method overview: VAE encoder E, decoder D) edits music in the
latent space of a pretrained audio autoencoder with a KL (diagonal Gaussian) bottleneck, as in
latent diffusion. This module is that autoencoder, built for speed on CPU (see
``docs/ARCHITECTURE.md``):

- **Encoder**: STFT log-magnitude frames (hop ``stft_hop``) -> ConvNeXt blocks at the STFT
  frame rate -> strided conv down to the latent rate (hop ``hop_length``) -> ConvNeXt blocks ->
  per-frame mean and log-variance ``[B, C, T']``.
- **Decoder** (Vocos-style, Siuzdenko 2023): ConvNeXt blocks at the latent rate -> transposed
  conv up to the STFT frame rate -> ConvNeXt blocks -> a head that predicts log-magnitude and
  phase per bin -> ``torch.istft``. No waveform up-sampler, no separate vocoder.

Every layer is local (depthwise convolutions, per-frame LayerNorm), so the model is fully
convolutional: any length in, the same length out (padded internally to a multiple of
``hop_length`` and cropped back), and a 5-minute song goes through in one pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from instructme.config import SAMPLE_RATE, Config
from instructme.errors import AudioError
from instructme.models.vae_sines import (
    SineHead,
    SinePrediction,
    low_band_stft,
    lowpass_gain,
    synthesize,
)


@dataclasses.dataclass
class VAEConfig(Config):
    """Architecture of :class:`AudioVAE`.

    ``hop_length`` samples per latent frame (latent rate = ``sample_rate / hop_length``);
    ``stft_hop`` is the hop of the encoder's analysis and the decoder's synthesis STFT, and must
    divide ``hop_length``. ``scaling_factor`` multiplies latents in :meth:`AudioVAE.encode_latents`
    so that they have about unit variance on training data (measured by the trainer).
    """

    sample_rate: int = SAMPLE_RATE
    hop_length: int = 512
    stft_hop: int = 128
    n_fft: int = 512
    latent_channels: int = 32
    frame_dim: int = 128  # width of the blocks at the STFT frame rate
    frame_blocks: int = 2  # per side (encoder and decoder)
    latent_dim: int = 256  # width of the blocks at the latent rate
    latent_blocks: int = 4  # per side
    kernel_size: int = 7
    mlp_ratio: int = 3
    scaling_factor: float = 1.0
    #: Decoder-only width and depth at the STFT frame rate (None: ``frame_dim`` /
    #: ``frame_blocks``, as in the encoder). The encoder fixes the latent space; a wider
    #: decoder buys fidelity without touching it (``medium``; see ``vae_grow``).
    dec_frame_dim: int | None = None
    dec_frame_blocks: int | None = None
    #: Sinusoidal low band (:mod:`~instructme.models.vae_sines`; 0 = off): oscillators for the
    #: first ``sine_slots`` bins of an ``sine_n_fft``-point STFT draw the band below the
    #: ``sine_crossover`` (Hz, raised-cosine crossover from the first to the second value) at
    #: its own pitch; the encoder also reads that STFT's log-magnitudes there.
    sine_slots: int = 0
    sine_n_fft: int = 2048
    sine_crossover: tuple[float, float] = (200.0, 350.0)
    sine_blocks: int = 2

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Tests: a few thousand parameters, milliseconds per call.
        "tiny": dict(hop_length=256, stft_hop=64, n_fft=256, latent_channels=8, frame_dim=16,
                     frame_blocks=1, latent_dim=32, latent_blocks=1),
        # CPU: 31.25 latent frames/s x 32 channels; trains on two cores, >= 100x real time.
        "small": dict(),
        # ``small``'s encoder and latent space with a decoder twice as wide and twice as deep
        # at the STFT frame rate, where the spectrum is drawn (grown from ``small``).
        "medium": dict(dec_frame_dim=256, dec_frame_blocks=4),
        # GPU: wider and deeper, same latent layout as ``small``.
        "large": dict(frame_dim=256, frame_blocks=3, latent_dim=512, latent_blocks=8,
                      mlp_ratio=4),
    }

    def __post_init__(self) -> None:
        if self.hop_length % self.stft_hop:
            raise ValueError(f"stft_hop {self.stft_hop} must divide hop_length {self.hop_length}")
        if self.n_fft < self.stft_hop or self.n_fft % 2:
            raise ValueError("n_fft must be even and at least stft_hop")
        self.sine_crossover = tuple(float(f) for f in self.sine_crossover)  # type: ignore[assignment]
        if self.sine_slots:
            lo, hi = self.sine_crossover
            if not 0 < lo < hi or self.sine_slots + 2 > self.sine_n_fft // 2 + 1:
                raise ValueError("sine_crossover must be 0 < low < high and sine_slots fit "
                                 "in sine_n_fft")

    @property
    def decoder_frame_dim(self) -> int:
        return self.frame_dim if self.dec_frame_dim is None else self.dec_frame_dim

    @property
    def decoder_frame_blocks(self) -> int:
        return self.frame_blocks if self.dec_frame_blocks is None else self.dec_frame_blocks

    @property
    def upsample(self) -> int:
        """STFT frames per latent frame."""
        return self.hop_length // self.stft_hop

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> MLP, residual with layer scale (Vocos / ConvNeXt).

    ``x: [B, D, T] -> [B, D, T]``; every operation is local in time.
    """

    def __init__(self, dim: int, kernel_size: int, mlp_ratio: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, mlp_ratio * dim)
        self.pw2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)  # [B, T, D]
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels of ``x: [B, D, T]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _stack(dim: int, n: int, cfg: VAEConfig) -> nn.Sequential:
    scale = 1.0 / max(1, 2 * (cfg.frame_blocks + cfg.latent_blocks))
    return nn.Sequential(*[ConvNeXtBlock(dim, cfg.kernel_size, cfg.mlp_ratio, scale)
                           for _ in range(n)])


class AudioVAE(nn.Module):
    """KL autoencoder for mono audio; see the module docstring for the architecture."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        bins = c.n_fft // 2 + 1
        k = c.kernel_size
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        # Encoder: [B, bins, T*u] -> [B, 2C, T].
        self.enc_in = nn.Conv1d(bins, c.frame_dim, k, padding=k // 2)
        self.enc_frame = _stack(c.frame_dim, c.frame_blocks, c)
        self.enc_down = nn.Sequential(ChannelNorm(c.frame_dim, eps=1e-6),
                                      nn.Conv1d(c.frame_dim, c.latent_dim, c.upsample,
                                                stride=c.upsample))
        self.enc_latent = _stack(c.latent_dim, c.latent_blocks, c)
        self.enc_out = nn.Sequential(ChannelNorm(c.latent_dim, eps=1e-6),
                                     nn.Conv1d(c.latent_dim, 2 * c.latent_channels, 1))
        # Decoder: [B, C, T] -> [B, n_fft + 2, T*u] (log-magnitude, phase).
        self.dec_in = nn.Conv1d(c.latent_channels, c.latent_dim, k, padding=k // 2)
        self.dec_latent = _stack(c.latent_dim, c.latent_blocks, c)
        d = c.decoder_frame_dim
        self.dec_up = nn.Sequential(ChannelNorm(c.latent_dim, eps=1e-6),
                                    nn.ConvTranspose1d(c.latent_dim, d, c.upsample,
                                                       stride=c.upsample))
        self.dec_frame = _stack(d, c.decoder_frame_blocks, c)
        self.dec_norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, 2 * bins)
        if c.sine_slots:
            # The encoder's fine view of the bass (zero-initialised: a grown model starts
            # unchanged) and the decoder's oscillator bank (see ``vae_sines``).
            self.enc_bass = nn.Conv1d(c.sine_slots, c.latent_dim, 3, padding=1)
            nn.init.zeros_(self.enc_bass.weight)
            nn.init.zeros_(self.enc_bass.bias)
            self.sine_head = SineHead(c.latent_dim, c.sine_slots, c.sine_blocks, k,
                                      c.mlp_ratio, ConvNeXtBlock)
            freqs = torch.arange(bins) * c.sample_rate / c.n_fft
            self.register_buffer("main_gain", 1.0 - lowpass_gain(freqs, *c.sine_crossover),
                                 persistent=False)

    # ------------------------------------------------------------------ shapes
    @staticmethod
    def _as_batch(x: torch.Tensor) -> torch.Tensor:
        """``[N]``, ``[B, N]`` or ``[B, 1, N]`` -> ``[B, N]``."""
        if x.dim() == 3:
            if x.shape[1] != 1:
                raise AudioError(f"the VAE takes mono audio [B, 1, N], got {tuple(x.shape)}")
            x = x[:, 0]
        elif x.dim() == 1:
            x = x[None]
        elif x.dim() != 2:
            raise AudioError(f"expected audio [B, N] or [B, 1, N], got {tuple(x.shape)}")
        if x.shape[-1] == 0:
            raise AudioError("audio is empty (zero samples)")
        return x

    def latent_length(self, num_samples: int) -> int:
        """Latent frames ``T'`` for ``num_samples`` of audio (ceil)."""
        return -(-num_samples // self.config.hop_length)

    # ------------------------------------------------------------------ encoder
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio ``[B, N]`` or ``[B, 1, N]`` -> ``(mean, logvar)``, each ``[B, C, ceil(N/hop)]``."""
        x = self._as_batch(x)
        c = self.config
        t = self.latent_length(x.shape[-1])
        x = F.pad(x, (0, t * c.hop_length - x.shape[-1]))
        spec = torch.stft(x.float(), c.n_fft, c.stft_hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)[..., : t * c.upsample]
        h = torch.log(spec.abs() + 1e-5)  # [B, bins, T*u]
        h = self.enc_down(self.enc_frame(self.enc_in(h)))  # [B, D, T]
        if c.sine_slots:
            h = h + self.enc_bass(self._bass_view(x))
        h = self.enc_latent(h)
        mean, logvar = self.enc_out(h).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def _bass_view(self, x: torch.Tensor) -> torch.Tensor:
        """Padded audio ``[B, t * hop]`` -> log-magnitudes of the sine slots' bins ``[B, K, t]``
        (:func:`~instructme.models.vae_sines.low_band_stft`)."""
        c = self.config
        spec = low_band_stft(x, c.sine_n_fft, c.hop_length)[:, 1:c.sine_slots + 1]
        return torch.log(spec.abs() + 1e-5)

    # ------------------------------------------------------------------ decoder
    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Latents ``z: [B, C, T']`` (unscaled) -> audio ``[B, 1, length or T' * hop]``."""
        return self.decode_parts(z, length)[0]

    def decode_parts(self, z: torch.Tensor, length: int | None = None
                     ) -> tuple[torch.Tensor, SinePrediction | None]:
        """:meth:`decode`, plus the sine head's prediction (None without a sine band)."""
        if z.dim() != 3 or z.shape[1] != self.config.latent_channels:
            raise AudioError(f"expected latents [B, {self.config.latent_channels}, T], "
                             f"got {tuple(z.shape)}")
        c = self.config
        h_lat = self.dec_latent(self.dec_in(z))  # [B, D, T]
        h = self.dec_frame(self.dec_up(h_lat))  # [B, D, T*u]
        h = self.head(self.dec_norm(h.transpose(1, 2))).transpose(1, 2)  # [B, 2*bins, T*u]
        logmag, phase = h.chunk(2, dim=1)
        mag = torch.exp(logmag.clamp(max=7.0))
        if c.sine_slots:
            mag = mag * self.main_gain[:, None]
        spec = torch.polar(mag, phase)
        # center=True frames sit at k * stft_hop; one more frame covers the last samples.
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)
        n = z.shape[-1] * c.hop_length
        y = torch.istft(spec, c.n_fft, c.stft_hop, window=self.window, center=True, length=n)
        pred = None
        if c.sine_slots:
            pred = SinePrediction(*self.sine_head(h_lat))
            y = y + synthesize(pred.amplitude(c), pred.offset.detach(), c.sine_n_fft,
                               c.hop_length, c.sample_rate, n)
        if length is not None:
            y = y[..., :length] if length <= n else F.pad(y, (0, length - n))
        return y[:, None], pred

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, sample: bool = True, with_sines: bool = False
                ) -> tuple[Any, ...]:
        """``x: [B, N]`` or ``[B, 1, N]`` -> ``(recon [B, 1, N], mean, logvar)``, and the
        sine head's :class:`SinePrediction` (or None) last with ``with_sines``.

        ``sample`` draws ``z ~ N(mean, exp(logvar))`` (reparameterised); else ``z = mean``.
        """
        x = self._as_batch(x)
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample else mean
        recon, sines = self.decode_parts(z, length=x.shape[-1])
        return (recon, mean, logvar, sines) if with_sines else (recon, mean, logvar)

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, var) || N(0, 1)), mean over all latent values (a scalar)."""
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()

    # ------------------------------------------------------------------ editor API
    def encode_latents(self, x: torch.Tensor, sample: bool = False,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio ``[B, N]`` / ``[B, 1, N]`` -> scaled latents ``[B, C, ceil(N / hop)]``."""
        mean, logvar = self.encode(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                device=mean.device)
            z = mean + noise * torch.exp(0.5 * logvar)
        return z * self.config.scaling_factor

    def decode_latents(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Scaled latents ``[B, C, T']`` -> audio ``[B, length or T' * hop]``."""
        return self.decode(z / self.config.scaling_factor, length=length)[:, 0]

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
