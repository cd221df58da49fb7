"""Training loop of the audio VAE (InstructME's latent space, arXiv 2308.14360, VAE E/D).

Losses: multi-scale log-mel L1 (DESIGN's fidelity metric plus a finer scale) and
multi-resolution STFT (``auraloss``) reconstruction, a small KL term, for a VAE with a
sinusoidal low band the sine head's peak loss (:func:`sine_loss`), and, after
``disc_start`` steps, a hinge adversarial loss with feature matching from
:mod:`instructme.models.discriminator`. Hugging Face ``accelerate`` runs it (one CPU process,
or GPUs unchanged); EMA of the generator weights (``diffusers.training_utils.EMAModel``);
gradient clipping; resumable: ``OUT/state`` holds the optimiser/model/EMA/RNG state and the
step count, and ``OUT`` itself is always a loadable VAE folder (EMA weights, with the latent
``scaling_factor`` measured on training crops). Logs go to ``OUT/logs.jsonl`` and
``OUT/loss.png``; validation reconstructions to ``OUT/samples/step_NNNNNNN/``; with
``snapshot_every``, loadable EMA snapshots to ``OUT/snapshots/step_NNNNNNN/`` (for
:mod:`~instructme.training.vae_average`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from instructme.checkpoint import load_model, save_model
from instructme.config import Config
from instructme.dataset.audio_folder import load_audio_folder
from instructme.errors import CheckpointError, ManifestError
from instructme.fileio import atomic_write_json, atomic_write_jsonl, replace_dir
from instructme.models.discriminator import (
    Discriminator,
    DiscriminatorConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import grow_vae
from instructme.models.vae_sines import SinePrediction, analyze_peaks
from instructme.training.vae_data import CropSampler, fixed_clips, load_split
from instructme.training.vae_plots import plot_vae_losses, save_reconstructions


@dataclasses.dataclass
class VAETrainConfig(Config):
    """Optimisation settings (the model and discriminator have their own configs)."""

    steps: int = 20_000
    batch_size: int = 8
    segment_seconds: float = 1.024
    lr: float = 4e-4
    betas: tuple[float, float] = (0.8, 0.99)
    warmup_steps: int = 200
    #: The last ``decay_steps`` steps decay the learning rate (cosine) to ``lr_final`` x lr.
    decay_steps: int = 0
    lr_final: float = 0.05
    grad_clip: float = 10.0
    w_mel: float = 15.0
    w_stft: float = 1.0
    w_kl: float = 1e-4
    #: Extra weight of the mel bands centred under 500 Hz in the mel loss (1 = none).
    low_band_weight: float = 1.0
    #: Weight of the sine head's peak losses (models with a sinusoidal low band only), and
    #: how far under a frame's loudest bin a spectral peak still counts as a partial.
    w_sine: float = 1.0
    sine_floor_db: float = -60.0
    w_adv: float = 1.0
    w_fm: float = 2.0
    disc_start: int = 2_000
    ema_decay: float = 0.999
    p_mix: float = 0.5
    log_every: int = 25
    save_every: int = 500
    #: Keep a loadable EMA snapshot every N steps in ``OUT/snapshots/`` (0 = none).
    snapshot_every: int = 0
    sample_every: int = 1_000
    val_clips: int = 4
    val_seconds: float = 5.0
    scale_clips: int = 32
    seed: int = 0
    #: Imported recorded music (``instructme data import-audio``) drawn with ``p_extra``.
    extra_audio: str | None = None
    p_extra: float = 0.0
    #: A VAE folder whose weights (and model config) a new run starts from.
    init: str | None = None
    #: Train the decoder only: the init's encoder and ``scaling_factor`` are kept exactly
    #: (the latent space an editor was trained in does not move).
    freeze_encoder: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=4, batch_size=2, segment_seconds=0.25, warmup_steps=1, disc_start=2,
                     log_every=1, save_every=2, sample_every=2, val_clips=1, val_seconds=0.5,
                     scale_clips=2),
        "small": dict(),
        "medium": dict(),
        "large": dict(steps=400_000, batch_size=32, segment_seconds=2.048, disc_start=20_000,
                      ema_decay=0.9999, save_every=5_000, sample_every=10_000, val_clips=8),
    }


class ReconstructionLoss(nn.Module):
    """Multi-scale log-mel L1 + ``auraloss`` multi-resolution STFT. ``[B, 1, N]`` pairs."""

    def __init__(self, sample_rate: int, low_band_weight: float = 1.0) -> None:
        super().__init__()
        import auraloss

        from instructme.metrics.codec import MultiScaleMelDistance

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


class _Stop:
    """Set by SIGTERM/SIGINT so the loop saves a checkpoint and exits cleanly."""

    requested = False

    @classmethod
    def handler(cls, signum: int, frame: Any) -> None:
        cls.requested = True


def lr_factor(cfg: VAETrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, constant, then (the last
    ``decay_steps`` steps before ``steps``) cosine decay to ``lr_final``."""
    factor = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    start = cfg.steps - cfg.decay_steps
    if cfg.decay_steps > 0 and step >= start:
        p = min(1.0, (step - start) / cfg.decay_steps)
        factor *= cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * p))
    return factor


def train_vae(data_dir: str | Path, out_dir: str | Path, preset: str | None = None,
              steps: int | None = None, resume: bool = False, quiet: bool = False,
              model_overrides: dict[str, Any] | None = None, decay_steps: int | None = None,
              **overrides: Any) -> dict[str, Any]:
    """Train (or resume) a VAE on ``data_dir``; returns the last logged record.

    ``preset`` (default ``small``) names the model and training presets. With ``init`` (a
    trained VAE folder) and no ``preset`` the model is the init's; with a ``preset`` whose
    decoder is wider or deeper (e.g. ``medium`` from ``small``), the init's weights are grown
    into it without changing its output (:func:`~instructme.models.vae_grow.grow_vae`).
    ``overrides`` change :class:`VAETrainConfig` fields, ``model_overrides`` :class:`VAEConfig`
    fields of the preset (new runs only; a resumed run keeps its saved configs, except
    ``steps`` and ``decay_steps``: a run can be extended and end with a learning-rate decay).
    """
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    out = Path(out_dir)
    state_dir = out / "state"
    if state_dir.exists() and not resume:
        raise CheckpointError(f"{out} already holds a training run; pass --resume to continue "
                              "it or choose another --out")
    if resume and not (state_dir / "trainer.json").is_file():
        if not quiet:
            print(f"no checkpoint in {out}: starting a new run")
        resume = False
    if resume:
        cfg = VAETrainConfig.from_json_file(state_dir / "train_config.json")
        vae_cfg = VAEConfig.from_json_file(state_dir / "vae_config.json")
        disc_cfg = DiscriminatorConfig.from_json_file(state_dir / "disc_config.json")
    else:
        name = preset or "small"
        cfg = VAETrainConfig.preset(name, **overrides)
        vae_cfg = VAEConfig.preset(name, **(model_overrides or {}))
        disc_cfg = DiscriminatorConfig.preset(
            name if name in DiscriminatorConfig.PRESETS else "small")  # CPU decoders: small
    if steps is not None:
        cfg.steps = steps
    if decay_steps is not None:
        cfg.decay_steps = decay_steps

    init_vae = None
    if cfg.init is not None and not resume:
        init_vae = load_model(AudioVAE, cfg.init)
        if preset is None:  # the init's own architecture
            vae_cfg = dataclasses.replace(init_vae.config, **(model_overrides or {}))
        else:  # the preset's architecture, grown from the init when it is bigger
            if vae_cfg != dataclasses.replace(init_vae.config, scaling_factor=1.0):
                init_vae = grow_vae(init_vae, vae_cfg, seed=cfg.seed)
            vae_cfg = init_vae.config
    torch.manual_seed(cfg.seed)
    train_songs = load_split(data_dir, "train", vae_cfg.sample_rate)
    extra = None
    if cfg.extra_audio is not None:
        extra = load_audio_folder(cfg.extra_audio, "train", vae_cfg.sample_rate)
    try:
        val_songs = load_split(data_dir, "val", vae_cfg.sample_rate) or train_songs
    except ManifestError:  # no validation manifest: show training songs instead
        val_songs = train_songs
    segment = int(round(cfg.segment_seconds * vae_cfg.sample_rate))
    sampler = CropSampler(train_songs, segment, cfg.p_mix, seed=cfg.seed, extra=extra,
                          p_extra=cfg.p_extra)
    val = fixed_clips(val_songs, cfg.val_clips, cfg.val_seconds, vae_cfg.sample_rate,
                      stems_too=True)
    scale_sampler = CropSampler(train_songs, segment, cfg.p_mix, seed=cfg.seed + 1)
    scale_batch = torch.from_numpy(scale_sampler.batch(cfg.scale_clips))

    accelerator = Accelerator()
    vae = AudioVAE(vae_cfg)
    if init_vae is not None:
        load_init_weights(vae, init_vae)
        if not quiet:
            print(f"initialised the VAE from {cfg.init} (a new discriminator and optimiser; "
                  f"{vae.num_parameters:,} parameters)")
    if cfg.freeze_encoder:
        if cfg.init is None:
            raise CheckpointError("freeze_encoder needs an init VAE (the encoder to keep)")
        for p in encoder_parameters(vae):
            p.requires_grad_(False)
    disc = Discriminator(disc_cfg)
    recon_loss = ReconstructionLoss(vae_cfg.sample_rate, cfg.low_band_weight)
    opt_g = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr,
                              betas=cfg.betas)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=cfg.betas)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: lr_factor(cfg, s))
    vae, disc, recon_loss, opt_g, opt_d, sched_g = accelerator.prepare(
        vae, disc, recon_loss, opt_g, opt_d, sched_g)
    ema = EMAModel(vae.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    accelerator.register_for_checkpointing(ema)

    step = 0
    if resume:
        accelerator.load_state(str(state_dir))
        trainer_state = json.loads((state_dir / "trainer.json").read_text())
        step = int(trainer_state["step"])
        sampler.set_state(trainer_state["sampler"])
        _truncate_logs(out / "logs.jsonl", step)
        if not quiet:
            print(f"resumed {out} at step {step}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "logs.jsonl").unlink(missing_ok=True)

    def save_checkpoint() -> None:
        tmp = out / "state.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.save_state(str(tmp))
        atomic_write_json(tmp / "trainer.json", {"step": step, "sampler": sampler.state()})
        atomic_write_json(tmp / "train_config.json", cfg.to_dict())
        atomic_write_json(tmp / "vae_config.json", vae_cfg.to_dict())
        atomic_write_json(tmp / "disc_config.json", disc_cfg.to_dict())
        replace_dir(tmp, state_dir)
        export_model(accelerator.unwrap_model(vae), ema, scale_batch, out, step,
                     keep_scaling=cfg.freeze_encoder)
        plot_vae_losses(out / "logs.jsonl", out / "loss.png")

    def write_samples() -> float:
        model = accelerator.unwrap_model(vae)
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        try:
            return save_reconstructions(model, val, out / "samples" / f"step_{step:07d}")
        finally:
            ema.restore(model.parameters())

    old_handlers = {s: signal.signal(s, _Stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
    _Stop.requested = False
    window: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    last: dict[str, Any] = {"step": step}
    try:
        while step < cfg.steps and not _Stop.requested:
            vae.train()
            x = torch.from_numpy(sampler.batch(cfg.batch_size))[:, None].to(accelerator.device)
            use_adv = step >= cfg.disc_start
            total, terms, d_inputs = generator_step_losses(
                vae, disc if use_adv else None, recon_loss, x, cfg)
            opt_g.zero_grad(set_to_none=True)
            accelerator.backward(total)
            gnorm = accelerator.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
            opt_g.step()
            sched_g.step()
            ema.step(vae.parameters())
            if d_inputs is not None:
                recon_d, real_logits = d_inputs
                fake_logits, _ = disc(recon_d)
                loss_d = discriminator_loss(real_logits, fake_logits)
                opt_d.zero_grad(set_to_none=True)
                accelerator.backward(loss_d)
                accelerator.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
                opt_d.step()
                terms["disc"] = loss_d
            step += 1
            for k, v in {**terms, "total": total, "grad_norm": gnorm}.items():
                window.setdefault(k, []).append(float(v.detach()))
            if not all(math.isfinite(window[k][-1]) for k in terms):
                raise FloatingPointError(f"non-finite loss at step {step}: "
                                         f"{ {k: window[k][-1] for k in terms} }")
            if step % cfg.log_every == 0 or step == cfg.steps:
                dt = time.perf_counter() - t0
                last = {"step": step, "time": time.time(), "steps_per_s": len(window["total"]) / dt,
                        "lr": sched_g.get_last_lr()[0],
                        **{k: float(np.mean(v)) for k, v in window.items()}}
                with open(out / "logs.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(last, sort_keys=True) + "\n")
                if not quiet:
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in last.items() if k != "time"), flush=True)
                window, t0 = {}, time.perf_counter()
            if step % cfg.sample_every == 0:
                val_mel = write_samples()
                rec = {"step": step, "time": time.time(), "val_mel": val_mel}
                with open(out / "logs.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, sort_keys=True) + "\n")
                if not quiet:
                    print(f"step={step} val_mel={val_mel:.4f}", flush=True)
            if step % cfg.save_every == 0:
                save_checkpoint()
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                export_model(accelerator.unwrap_model(vae), ema, scale_batch,
                             out / "snapshots" / f"step_{step:07d}", step,
                             keep_scaling=cfg.freeze_encoder)
        save_checkpoint()
        if _Stop.requested and not quiet:
            print(f"stopped at step {step}; continue with --resume")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return last


def load_init_weights(vae: AudioVAE, init: AudioVAE) -> None:
    """Copy ``init``'s weights into ``vae``; a sinusoidal low band that ``init`` lacks keeps
    its fresh initialisation (the encoder's bass view starts at zero: same latents)."""
    missing, unexpected = vae.load_state_dict(init.state_dict(), strict=False)
    new = [k for k in missing if not k.startswith(SINE_PARAMETERS)]
    if new or unexpected:
        raise CheckpointError(f"--init does not fit this model: missing {new[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")


#: Parameter-name prefixes of the sinusoidal low band (absent from older VAEs).
SINE_PARAMETERS = ("enc_bass.", "sine_head.")


def encoder_parameters(vae: AudioVAE) -> list[nn.Parameter]:
    """The parameters that define the latent space (everything before ``z``)."""
    return [p for name, p in vae.named_parameters() if name.startswith("enc_")]


@torch.no_grad()
def export_model(vae: AudioVAE, ema: Any, scale_batch: torch.Tensor, out: Path, step: int,
                 keep_scaling: bool = False) -> None:
    """Write the EMA weights to ``out`` with ``scaling_factor = 1 / std(latent means)``
    (``keep_scaling``: the model's own, for a frozen encoder whose latent space is fixed)."""
    ema.store(vae.parameters())
    ema.copy_to(vae.parameters())
    try:
        vae.eval()
        mean, _ = vae.encode(scale_batch.to(next(vae.parameters()).device))
        std = float(mean.std())
        scaling = vae.config.scaling_factor if keep_scaling else 1.0 / max(std, 1e-6)
        cfg = dataclasses.replace(vae.config, scaling_factor=scaling)
        original = vae.config
        vae.config = cfg
        try:
            save_model(vae, out, extra={"step": step, "latent_std": std})
        finally:
            vae.config = original
    finally:
        ema.restore(vae.parameters())


def _truncate_logs(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (e.g. after a kill -9)."""
    if not path.is_file():
        return
    keep = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    atomic_write_jsonl(path, [r for r in keep if r.get("step", 0) <= step])
