"""Losses of the audio VAE (InstructME's latent space, arXiv 2308.14360, VAE E/D).

Multi-scale log-mel L1 (the project's fidelity metric plus a finer scale) and
multi-resolution STFT (``auraloss``) reconstruction, a small KL term, for a VAE with a
sinusoidal low band the sine head's peak loss (:func:`sine_loss`), and, once the
discriminator is on, a hinge adversarial loss with feature matching
(:mod:`instructme.models.discriminator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import auraloss
import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from instructme.metrics.codec import MultiScaleMelDistance
from instructme.models.discriminator import feature_matching_loss, generator_loss
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_sines import SinePrediction, analyze_peaks

if TYPE_CHECKING:
    from instructme.training.vae import VAETrainConfig


class ReconstructionLoss(nn.Module):
    """Multi-scale log-mel L1 + ``auraloss`` multi-resolution STFT. ``[B, 1, N]`` pairs."""

    def __init__(self, sample_rate: int, low_band_weight: float = 1.0) -> None:
        super().__init__()
        self.mel = MultiScaleMelDistance(sample_rate, (256, 512, 1024, 2048), (40, 80, 80, 80),
                                         low_weight=low_band_weight)
        self.stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=[256, 512, 1024, 2048], hop_sizes=[64, 128, 256, 512],
            win_lengths=[256, 512, 1024, 2048])

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mel(est[:, 0], ref[:, 0]), self.stft(est, ref)


def generator_step_losses(vae: nn.Module, disc: nn.Module | None, recon_loss: ReconstructionLoss,
                          x: torch.Tensor, cfg: VAETrainConfig
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
    """Generator objective for one batch ``x: [B, 1, N]``.

    Returns ``(total, terms, d_inputs)``; ``d_inputs`` = ``(recon.detach(), real_logits)`` for
    the discriminator step (``None`` when ``disc`` is None, i.e. before ``disc_start``).
    """
    recon, mean, logvar, sines = vae(x, with_sines=True)
    mel, stft = recon_loss(recon, x)
    kl = AudioVAE.kl(mean, logvar)
    terms = {"mel": mel, "stft": stft, "kl": kl}
    total = cfg.w_mel * mel + cfg.w_stft * stft + cfg.w_kl * kl
    if sines is not None:
        config = extract_model_from_parallel(vae).config
        terms["sine"] = sine_loss(sines, x[:, 0], config, cfg.sine_floor_db)
        total = total + cfg.w_sine * terms["sine"]
    d_inputs = None
    if disc is not None:
        fake_logits, fake_feats = disc(recon)
        real_logits, real_feats = disc(x)
        terms["adv"] = generator_loss(fake_logits)
        terms["fm"] = feature_matching_loss(real_feats, fake_feats)
        total = total + cfg.w_adv * terms["adv"] + cfg.w_fm * terms["fm"]
        d_inputs = (recon.detach(), real_logits)
    return total, terms, d_inputs


def sine_loss(pred: SinePrediction, x: torch.Tensor, config: VAEConfig,
              floor_db: float = -60.0) -> torch.Tensor:
    """The sine head's supervised loss against the peaks of ``x: [B, N]``
    (:func:`~instructme.models.vae_sines.analyze_peaks`): binary cross-entropy of the peak
    logits, plus at the true peaks the L1 error of the log-amplitude and 4 x that of the bin
    offset (a scalar)."""
    with torch.no_grad():
        mask, log_amp, offset = analyze_peaks(x.float(), config.sine_slots, config.sine_n_fft,
                                              config.hop_length, floor_db=floor_db)
    bce = nn.functional.binary_cross_entropy_with_logits(pred.logit, mask)
    n = mask.sum().clamp(min=1.0)
    l_amp = ((pred.log_amp - log_amp).abs() * mask).sum() / n
    l_off = ((pred.offset - offset).abs() * mask).sum() / n
    return bce + l_amp + 4.0 * l_off
