"""``instructme train vae`` and ``instructme eval vae`` (the audio autoencoder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from instructme.errors import InstructMEError


def _cmd_train(args: argparse.Namespace) -> int:
    from instructme.training.vae import train_vae

    data = Path(args.data)
    if not data.is_dir():
        raise InstructMEError(f"{data}: dataset folder not found")
    if args.steps is not None and args.steps < 1:
        raise InstructMEError("--steps must be at least 1")
    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr),
                                   ("disc_start", args.disc_start), ("seed", args.seed),
                                   ("save_every", args.save_every),
                                   ("snapshot_every", args.snapshot_every),
                                   ("sample_every", args.sample_every), ("init", args.init),
                                   ("extra_audio", args.extra_audio),
                                   ("p_extra", args.p_extra),
                                   ("low_band_weight", args.low_band_weight),
                                   ("w_sine", args.sine_weight),
                                   ("sine_floor_db", args.sine_floor_db)) if v is not None}
    if args.freeze_encoder:
        if args.init is None:
            raise InstructMEError("--freeze-encoder needs --init (the encoder to keep)")
        overrides["freeze_encoder"] = True
    if args.p_extra is not None and not 0.0 <= args.p_extra <= 1.0:
        raise InstructMEError("--p-extra must be between 0 and 1")
    if args.extra_audio is not None and args.p_extra is None:
        overrides["p_extra"] = 0.5
    if args.p_extra is not None and args.extra_audio is None:
        raise InstructMEError("--p-extra needs --extra-audio")
    if args.resume and overrides:
        raise InstructMEError("--resume keeps the run's settings; only --steps and "
                              "--decay-steps may change")
    if args.sine_weight is not None and args.sine_weight < 0:
        raise InstructMEError("--sine-weight must be at least 0")
    if args.sine_floor_db is not None and args.sine_floor_db >= 0:
        raise InstructMEError("--sine-floor-db must be negative")
    if args.low_band_weight is not None and args.low_band_weight <= 0:
        raise InstructMEError("--low-band-weight must be positive")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise InstructMEError("--snapshot-every must be at least 1")
    if args.decay_steps is not None and args.decay_steps < 0:
        raise InstructMEError("--decay-steps must be at least 0")
    model_overrides = {}
    if args.sine_slots is not None:
        if args.sine_slots < 1:
            raise InstructMEError("--sine-slots must be at least 1")
        if args.resume:
            raise InstructMEError("--resume keeps the run's model; --sine-slots is for new runs")
        model_overrides["sine_slots"] = args.sine_slots
    train_vae(data, args.out, preset=args.preset, steps=args.steps, resume=args.resume,
              quiet=args.quiet, decay_steps=args.decay_steps, model_overrides=model_overrides,
              **overrides)
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from instructme.training.vae_average import average_vaes

    for s in args.snapshots:
        if not (Path(s) / "config.json").is_file():
            raise InstructMEError(f"{s}: not a VAE folder (no config.json)")
    if Path(args.out).resolve() in {Path(s).resolve() for s in args.snapshots}:
        raise InstructMEError("--out must not be one of the snapshots")
    if args.data is not None and not Path(args.data).is_dir():
        raise InstructMEError(f"{args.data}: dataset folder not found")
    vae = average_vaes(args.snapshots, args.out, data_dir=args.data, fp16=args.fp16)
    print(f"wrote {args.out}: the mean of {len(args.snapshots)} snapshots "
          f"(scaling_factor {vae.config.scaling_factor:.4f})")
    return 0


def _cmd_sines(args: argparse.Namespace) -> int:
    from instructme.training.vae_sines import train_vae_sines

    if not (Path(args.init) / "config.json").is_file():
        raise InstructMEError(f"{args.init}: not a VAE folder (no config.json)")
    if not Path(args.data).is_dir():
        raise InstructMEError(f"{args.data}: dataset folder not found")
    for name in ("sine_slots", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise InstructMEError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= args.p_extra <= 1.0:
        raise InstructMEError("--p-extra must be between 0 and 1")
    if args.lr <= 0 or args.keep_weight < 0:
        raise InstructMEError("--lr must be positive and --keep-weight at least 0")
    settings = {} if args.resume else dict(
        sine_slots=args.sine_slots, lr=args.lr, keep_weight=args.keep_weight,
        batch_size=args.batch_size, extra_audio=args.extra_audio, p_extra=args.p_extra,
        seed=args.seed)
    rec = train_vae_sines(args.init, args.data, args.out, resume=args.resume, steps=args.steps,
                          quiet=args.quiet, **settings)
    print(f"wrote {args.out}: sine loss {rec['sine']:.3f}, latent shift {rec['keep']:.4f}; "
          f"next: instructme train vae --init {args.out} --freeze-encoder ...")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from instructme.metrics.vae_eval import evaluate_vae

    if args.clips < 1:
        raise InstructMEError("--clips must be at least 1")
    if args.seconds <= 0:
        raise InstructMEError("--seconds must be positive")
    real = None if args.real is None else [Path(p) for p in args.real]
    out = args.json if args.json is not None else Path(args.model) / "eval.json"
    evaluate_vae(args.model, args.data, clips=args.clips, seconds=args.seconds, real=real,
                 out_json=out, extra_audio=args.extra_audio)
    print(f"wrote {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser("vae", help="train the audio VAE (latent space of the editor)")
    t.add_argument("--data", required=True, help="dataset folder written by 'data build'")
    t.add_argument("--out", required=True, help="run folder; also a loadable model folder")
    t.add_argument("--preset", choices=["tiny", "small", "medium", "large"], default=None,
                   help="model and training preset (default: small; with --init: the init's "
                        "model, or, if given, a wider decoder grown from it, e.g. medium)")
    t.add_argument("--steps", type=int, default=None, help="total steps (default: preset's)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--decay-steps", type=int, default=None,
                   help="cosine-decay the learning rate over the last N steps (default: the "
                        "preset's, 0 for small; may change on --resume)")
    t.add_argument("--disc-start", type=int, default=None,
                   help="step at which the adversarial loss starts")
    t.add_argument("--init", default=None,
                   help="VAE folder to start from (its weights and model config, or grown into "
                        "--preset's wider decoder; a new discriminator, optimiser and schedule)")
    t.add_argument("--freeze-encoder", action="store_true",
                   help="train only the decoder: the --init's encoder and latent scaling stay "
                        "exactly as they are, so an editor trained on its latents keeps working")
    t.add_argument("--extra-audio", default=None,
                   help="recorded music imported with 'data import-audio' to train on too")
    t.add_argument("--p-extra", type=float, default=None,
                   help="share of crops drawn from --extra-audio (default 0.5)")
    t.add_argument("--low-band-weight", type=float, default=None,
                   help="weight of the mel bands under 500 Hz in the mel loss (default 1)")
    t.add_argument("--sine-slots", type=int, default=None,
                   help="add a sinusoidal low band (held bass notes at their own pitch): "
                        "oscillators for the first N bins of a 2048-point STFT, 45 covers the "
                        "default 200-350 Hz crossover; a new run, from --init or not")
    t.add_argument("--sine-weight", type=float, default=None,
                   help="weight of the sine head's peak losses (default 1)")
    t.add_argument("--sine-floor-db", type=float, default=None,
                   help="peaks this far under a frame's loudest bin still count as partials "
                        "in the sine head's targets (default -60)")
    t.add_argument("--save-every", type=int, default=None)
    t.add_argument("--snapshot-every", type=int, default=None,
                   help="keep a loadable EMA snapshot every N steps in OUT/snapshots/ "
                        "(for 'train vae-average')")
    t.add_argument("--sample-every", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    a = train_sub.add_parser("vae-average",
                             help="average the weights of VAE snapshots of one run")
    a.add_argument("snapshots", nargs="+", help="VAE folders (e.g. RUN/snapshots/step_*)")
    a.add_argument("--out", required=True, help="new VAE folder")
    a.add_argument("--data", default=None,
                   help="dataset folder: re-measure the latent scaling factor on its training "
                        "crops (default: the snapshots' mean factor)")
    a.add_argument("--fp16", action="store_true", help="store the weights as float16")
    a.set_defaults(func=_cmd_average)

    s = train_sub.add_parser(
        "vae-sines", help="add a sinusoidal low band to a trained VAE and teach its latents "
                          "the bass partials (stage 1; then 'train vae --freeze-encoder')")
    s.add_argument("--init", required=True, help="trained VAE folder")
    s.add_argument("--data", required=True, help="dataset folder written by 'data build'")
    s.add_argument("--out", required=True, help="new VAE folder")
    s.add_argument("--sine-slots", type=int, default=45,
                   help="oscillators: the first N bins of a 2048-point STFT (45: up to 350 Hz)")
    s.add_argument("--steps", type=int, default=2500)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--keep-weight", type=float, default=1.0,
                   help="weight of the latent means' squared distance from the init's")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--extra-audio", default=None,
                   help="recorded music imported with 'data import-audio' to train on too")
    s.add_argument("--p-extra", type=float, default=0.5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its saved settings; --steps may extend it)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_sines)

    e = eval_sub.add_parser("vae", help="VAE round-trip fidelity vs Opus 6/12/24 kbps")
    e.add_argument("--model", required=True, help="VAE folder (a 'train vae' --out)")
    e.add_argument("--data", default=None, help="dataset folder (its test split is used)")
    e.add_argument("--clips", type=int, default=8, help="clips per set")
    e.add_argument("--seconds", type=float, default=10.0, help="clip length")
    e.add_argument("--real", nargs="*", default=None,
                   help="real recordings to add (default: ones found in installed packages)")
    e.add_argument("--extra-audio", default=None,
                   help="imported recorded music ('data import-audio'): its held-out (val) "
                        "files are scored as one more set")
    e.add_argument("--json", default=None, help="report path (default: MODEL/eval.json)")
    e.set_defaults(func=_cmd_eval)
