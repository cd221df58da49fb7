"""EditPipeline: audio + instruction -> edited audio (InstructME, arXiv 2308.14360, Method:
the whole editing model at inference; Experiments: multi-round editing).

One edit, on a whole song in one pass (see :mod:`instructme.editing.user_audio` for how the
user's audio is converted to and from the models' mono 16 kHz at the training level)::

    x [N] --VAE encode_latents--> z_src [1, C, T]        (fp16-rounded, as in the latent cache)
    x [N] --chord predict_proba--> P [1, T_c, K]         (if the editor is chord-conditioned)
    instruction --text encoder--> tokens [1, L, D], mask [1, L]
    noise [1, C, T] --sampler (DDIM / DPM-Solver++) with EditorDenoiser (CFG)--> z_tgt
    z_tgt --VAE decode_latents--> y [N]
    VAE(x), y --preserve.guide--> gains; x + gains --compose--> output (add/remove/replace)

With ``preserve`` (the default of every pipeline folder unless its ``pipeline.json`` says
otherwise) the generated mix only guides gains on the user's own audio, and the added part
is mixed in (:mod:`instructme.editing.preserve`): untouched material never passes through
the VAE and keeps the input's rate, channels and stereo image; the result also carries the
edited part alone (``EditResult.part``). An extract, a remix, or ``preserve=False`` returns the
generated mix (an extract's part is its output).

The conditioning is prepared exactly as :mod:`instructme.training.editor_cache` prepares it
for training: VAE posterior means (no sampling), chord probabilities of the source mix at the
recognizer's frame rate aligned to time 0, the instruction's token states of the frozen
encoder, each rounded through float16 as the cache stores them. Guidance drops the whole
instruction (the U-Net's learned null token only), as in training.

A pipeline folder holds ``vae/``, ``chord/`` (absent only for an editor without chord
conditioning), ``editor/`` (model folders, :mod:`instructme.checkpoint`) and
``pipeline.json`` (format version, sample rate, text encoder config, default steps,
guidance and sampler); see :mod:`instructme.editing.folder`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instructme.audio import peak_safe, resample
from instructme.diffusion import EditorDenoiser, classifier_free_guidance
from instructme.editing.folder import (
    DEFAULTS,
    MODEL_ENV,
    PIPELINE_JSON,
    check_components,
    default_model_dir,
    missing_model_message,
    read_pipeline_json,
    write_pipeline_folder,
)
from instructme.errors import CheckpointError, InstructionError, InstructMEError

__all__ = ["EditPipeline", "EditResult", "Round", "build_tiny_pipeline", "check_output_path",
           "default_model_dir", "edit", "load_pipeline", "plan_rounds", "read_pipeline_json",
           "write_pipeline_folder", "MODEL_ENV"]

#: Sampler names accepted by :meth:`EditPipeline.__call__` -> :mod:`instructme.diffusion` names.
SAMPLERS: dict[str, str] = {"dpm": "dpmsolver++", "dpmsolver++": "dpmsolver++",
                            "ddim": "ddim", "ddpm": "ddpm"}
MAX_STEPS = 1000

#: On CPU, guidance runs the conditional and unconditional U-Net passes one after the other
#: (two batches of 1) from this many latent frames on, else as one batch of 2. Measured with
#: the small editor on one core: a batch of 2 is faster for short inputs (10 s: 66 vs 85
#: ms/step) and slower for long ones (5 min: 1.64 vs 1.45 s/step, as its activations no
#: longer fit the caches); the two meet near 3000 frames (~1.6 min at 31.25 frames/s).
SPLIT_GUIDANCE_FRAMES = 3000

Progress = Callable[[int, int], None]


@dataclass
class EditResult:
    """One edit's output: ``audio`` in the input's rate, length, channels and layout.

    ``task``/``args``: the parsed instruction (a chain is ``"multiround"`` with
    ``args["rounds"]``). ``seconds``: wall time of the edit. ``timings``: seconds per stage.
    ``part``: the edited part alone (the added, removed or extracted instrument, the new one
    of a replace; same format as ``audio``) when the output was source-preserving, else None.
    """

    audio: np.ndarray
    sample_rate: int
    instruction: str
    task: str
    args: dict[str, Any]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    part: np.ndarray | None = None


@dataclass(frozen=True)
class Round:
    """One single-task edit of a plan: the text the editor sees and its parse."""

    text: str
    task: str
    args: dict[str, Any]


def plan_rounds(instructions: str | Sequence[str]) -> list[Round]:
    """Instruction(s) -> single-task rounds, in order; a text may itself chain edits
    ("add a piano then remove the drums"). Raises :class:`InstructionError` (one line,
    listing what is understood) for empty or unknown instructions."""
    from instructme.instructions import parse_instructions, phrasings, split_chain

    texts = [instructions] if isinstance(instructions, str) else list(instructions)
    if not texts:
        raise InstructionError("no instruction given")
    rounds: list[Round] = []
    for text in texts:
        parse_instructions(text)  # validates the whole text first (one clear error)
        for clause in split_chain(text):
            edits = parse_instructions(clause)
            if len(edits) == 1:
                rounds.append(Round(clause.strip(), *edits[0]))
                continue
            pieces = [p.strip() for p in re.split(r",|\band\b", clause) if p.strip()]
            if len(pieces) != len(edits):  # fall back on the canonical phrasing
                pieces = [phrasings(t, a)[0] for t, a in edits]
            rounds += [Round(p, t, a) for p, (t, a) in zip(pieces, edits)]
    return rounds


def _f16(x: torch.Tensor) -> torch.Tensor:
    """Round through float16, as the training cache stores latents, chords and text states."""
    return x.half().float()


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class EditPipeline:
    """VAE + chord recognizer + text encoder + editor U-Net, ready to edit audio.

    Thread-safe: concurrent calls are served one at a time.
    """

    def __init__(self, vae: Any, chord: Any | None, editor: Any, text_config: Any,
                 defaults: dict[str, Any] | None = None,
                 device: str | torch.device | None = None) -> None:
        from instructme.diffusion import Diffusion
        from instructme.models.text import TextEncoderConfig, build_text_encoder

        if isinstance(text_config, dict):
            text_config = TextEncoderConfig.from_dict(text_config)
        check_components(vae, chord, editor, text_config)
        self.device = _device(device)
        self.vae = vae.to(self.device).eval()
        self.chord = chord.to(self.device).eval() if chord is not None else None
        self.editor = editor.to(self.device).eval()
        self.text_config = text_config
        self.text_encoder = build_text_encoder(text_config).to(self.device)
        if self.text_encoder.dim != editor.config.text_dim:
            raise CheckpointError(f"the {text_config.kind} text encoder gives "
                                  f"{self.text_encoder.dim}-d states, the editor expects "
                                  f"{editor.config.text_dim}-d")
        self.diffusion = Diffusion.from_config(editor.config)
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_components(cls, vae: Any, chord: Any | None, editor: Any, text_config: Any,
                        **kw: Any) -> EditPipeline:
        """From loaded models and a :class:`~instructme.models.text.TextEncoderConfig` (or
        its dict). ``chord`` may be None only for an editor without chord conditioning."""
        return cls(vae, chord, editor, text_config, **kw)

    @classmethod
    def from_pretrained(cls, directory: str | Path,
                        device: str | torch.device | None = None) -> EditPipeline:
        """Load a pipeline folder (see the module docstring). ``device``: default CUDA if
        available, else CPU. Raises :class:`CheckpointError` for a missing or mismatched
        folder."""
        from instructme.checkpoint import load_model
        from instructme.models.chord import ChordRecognizer
        from instructme.models.unet import EditorUNet
        from instructme.models.vae import AudioVAE

        root = Path(directory)
        meta = read_pipeline_json(root)
        vae = load_model(AudioVAE, root / "vae")
        editor = load_model(EditorUNet, root / "editor")
        chord = None
        if (root / "chord").exists():
            chord = load_model(ChordRecognizer, root / "chord")
        elif editor.config.chord_conditioning:
            raise CheckpointError(f"{root}: no chord/ model folder, and the editor is "
                                  "chord-conditioned")
        if int(meta["sample_rate"]) != int(vae.config.sample_rate):
            raise CheckpointError(f"{root}: {PIPELINE_JSON} says {meta['sample_rate']} Hz, the "
                                  f"VAE is {vae.config.sample_rate} Hz")
        return cls(vae, chord, editor, meta["text_encoder"], meta.get("defaults"), device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``vae/``, ``chord/``, ``editor/`` and (last) ``pipeline.json``."""
        return write_pipeline_folder(directory, self.vae, self.chord, self.editor,
                                     self.text_config, self.defaults)

    def to(self, device: str | torch.device) -> EditPipeline:
        self.device = torch.device(device)
        for m in (self.vae, self.chord, self.editor, self.text_encoder):
            if m is not None:
                m.to(self.device)
        return self

    @property
    def sample_rate(self) -> int:
        """The models' sample rate (inputs at any rate are resampled to it and back)."""
        return int(self.vae.config.sample_rate)

    # ------------------------------------------------------------------ editing
    def __call__(self, audio: np.ndarray, sample_rate: int, instruction: str,
                 steps: int | None = None, guidance: float | None = None, seed: int = 0,
                 sampler: str | None = None, progress: Progress | None = None,
                 preserve: bool | None = None) -> EditResult:
        """Edit ``audio`` (``[N]``, ``[C, N]`` or ``[N, C]``) as ``instruction`` says.

        ``steps``, ``guidance``, ``sampler`` (``dpm`` or ``ddim``; also ``ddpm``) and
        ``preserve`` (source-preserving output, see the module docstring) default to the
        pipeline's (50, 3.0, dpm, True unless its ``pipeline.json`` says otherwise).
        ``progress(step, total)`` is called after every sampler step. A chained instruction
        runs as a multi-round edit and returns the last round (task ``"multiround"``).
        Deterministic for a ``seed``.
        """
        rounds = plan_rounds(instruction)
        results = self._run(audio, sample_rate, rounds, steps, guidance, seed, sampler, progress,
                            preserve)
        if len(results) == 1:
            return results[0]
        last = results[-1]
        return EditResult(last.audio, last.sample_rate, instruction, "multiround",
                          {"rounds": [{"task": r.task, "args": r.args, "instruction": r.text}
                                      for r in rounds]},
                          sum(r.seconds for r in results), _sum_timings(results), last.part)

    def edit_chain(self, audio: np.ndarray, sample_rate: int, instructions: Sequence[str],
                   steps: int | None = None, guidance: float | None = None, seed: int = 0,
                   sampler: str | None = None, progress: Progress | None = None,
                   preserve: bool | None = None) -> list[EditResult]:
        """Multi-round editing: each round's output is the next round's source. Returns one
        :class:`EditResult` per round (a text that chains edits counts as several rounds).
        Round ``k`` (from 0) samples with seed ``seed + k``; ``progress(step, total)`` counts
        steps over all rounds."""
        if isinstance(instructions, str):
            instructions = [instructions]
        return self._run(audio, sample_rate, plan_rounds(instructions), steps, guidance, seed,
                         sampler, progress, preserve)

    def resolve_settings(self, steps: int | None, guidance: float | None, sampler: str | None
                  ) -> tuple[int, float, str]:
        """``(steps, guidance, scheduler name)`` after defaults and checks (one-line errors)."""
        steps = self.defaults["steps"] if steps is None else steps
        guidance = self.defaults["guidance"] if guidance is None else guidance
        sampler = self.defaults["sampler"] if sampler is None else sampler
        if (isinstance(steps, bool) or not isinstance(steps, int | np.integer)
                or not 1 <= steps <= MAX_STEPS):
            raise InstructMEError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
        steps = int(steps)
        try:
            guidance = float(guidance)
        except (TypeError, ValueError):
            raise InstructMEError(f"guidance must be a number, got {guidance!r}") from None
        if not (np.isfinite(guidance) and 0.0 <= guidance <= 50.0):
            raise InstructMEError(f"guidance must be in 0..50, got {guidance}")
        if sampler not in SAMPLERS:
            raise InstructMEError(f"unknown sampler {sampler!r} (known: dpm, ddim, ddpm)")
        return steps, guidance, SAMPLERS[sampler]

    def resolve_preserve(self, preserve: bool | None) -> bool:
        """Whether outputs are source-preserving (``None``: the pipeline's default)."""
        preserve = self.defaults.get("preserve", True) if preserve is None else preserve
        if not isinstance(preserve, bool | np.bool_):
            raise InstructMEError(f"preserve must be true or false, got {preserve!r}")
        return bool(preserve)

    def _run(self, audio: np.ndarray, sample_rate: int, rounds: list[Round],
             steps: int | None, guidance: float | None, seed: int, sampler: str | None,
             progress: Progress | None, preserve: bool | None = None) -> list[EditResult]:
        from instructme.editing.preserve import PRESERVING_TASKS, compose, guide
        from instructme.editing.user_audio import finish_channels, limit_source, prepare, to_layout

        steps, guidance, sampler = self.resolve_settings(steps, guidance, sampler)
        preserve = self.resolve_preserve(preserve)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise InstructMEError(f"seed must be an integer, got {seed!r}")
        prep = prepare(audio, sample_rate, self.sample_rate)
        total = steps * len(rounds)
        results = []
        with self._lock, torch.inference_mode():
            x, gain = prep.mono, prep.gain
            user = prep.audio  # [C, N]: the user's audio as the current round's source
            for k, rd in enumerate(rounds):
                t0 = time.perf_counter()

                def step_cb(i: int, n: int, k: int = k) -> None:
                    if progress is not None:
                        progress(k * steps + i, total)

                keep = preserve and rd.task in PRESERVING_TASKS
                y, timings, ref = self._edit_mono(x, rd.text, steps, guidance, int(seed) + k,
                                                  sampler, step_cb, reference=keep)
                t1 = time.perf_counter()
                part = None
                if keep:
                    assert ref is not None and user is not None
                    g = guide(ref, y, self.sample_rate, rd.task)
                    out_cn, part_cn = compose(user, prep.sample_rate, g, rd.task, gain)
                    part = to_layout(part_cn, prep, safe=False)
                else:
                    out_cn = finish_channels(y, prep, gain)
                user = peak_safe(np.nan_to_num(out_cn.astype(np.float32)))  # [C, N]
                out = to_layout(user, prep)
                if keep:  # the next round edits what the user got, at the model's rate/level
                    y = resample(user.mean(axis=0), prep.sample_rate, self.sample_rate) * gain
                if preserve and rd.task == "extract":  # the generated mix is the part
                    part = out.copy()
                timings["output"] = time.perf_counter() - t1
                results.append(EditResult(out, prep.sample_rate, rd.text, rd.task, dict(rd.args),
                                          time.perf_counter() - t0, timings, part))
                x, scale = limit_source(y)  # the next round's source, at the training level
                gain *= scale
        return results

    def _edit_mono(self, x: np.ndarray, text: str, steps: int, guidance: float, seed: int,
                   sampler: str, progress: Progress, reference: bool = False
                   ) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
        """One edit of mono model-rate audio ``x: [N]`` -> ``(y [N], stage timings, VAE
        round trip of x [N] if reference else None)``."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        src = torch.from_numpy(x)[None].to(self.device)  # [1, N]
        z_src = _f16(self.vae.encode_latents(src))  # [1, C, T]
        timings["encode"] = time.perf_counter() - t
        chords = None
        if self.editor.config.chord_conditioning:
            t = time.perf_counter()
            assert self.chord is not None
            chords = _f16(self.chord.predict_proba(src))  # [1, T_c, K]
            timings["chords"] = time.perf_counter() - t
        t = time.perf_counter()
        tokens, mask = self.text_encoder.encode([text])  # [1, L, D], [1, L]
        tokens = _f16(tokens.to(self.device))
        mask = mask.to(self.device)
        timings["text"] = time.perf_counter() - t
        t = time.perf_counter()
        split = self.device.type == "cpu" and z_src.shape[-1] >= SPLIT_GUIDANCE_FRAMES
        denoiser = (SequentialGuidance if split else EditorDenoiser)(
            self.editor, z_src, tokens, mask, chords, guidance)
        gen = torch.Generator().manual_seed(seed)
        z = self.diffusion.sample(denoiser, tuple(z_src.shape), sampler=sampler, steps=steps,
                                  generator=gen, device=self.device, callback=progress)
        timings["sample"] = time.perf_counter() - t
        t = time.perf_counter()
        y = self.vae.decode_latents(z, length=src.shape[-1])[0]  # [N]
        ref = None
        if reference:  # what the VAE alone does to the source: the guide's reference
            ref = self.vae.decode_latents(z_src, length=src.shape[-1])[0].float().cpu().numpy()
        timings["decode"] = time.perf_counter() - t
        return y.float().cpu().numpy(), timings, ref


class SequentialGuidance(EditorDenoiser):
    """:class:`~instructme.diffusion.EditorDenoiser` with the conditional and the unconditional
    (instruction fully masked) passes run one after the other, each ``[1, C, T]``."""

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.text is None or self.scale == 1.0:
            return super().__call__(z_t, t)
        mask = self.text_mask
        if mask is None:
            mask = torch.ones(self.text.shape[:2], dtype=torch.bool, device=z_t.device)
        cond = self.model(z_t, t, self.z_src, self.text, mask, self.chords)
        uncond = self.model(z_t, t, self.z_src, self.text, torch.zeros_like(mask), self.chords)
        return classifier_free_guidance(cond, uncond, self.scale)


def _sum_timings(results: list[EditResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            out[k] = out.get(k, 0.0) + v
    return out


def build_tiny_pipeline(directory: str | Path, seed: int = 0) -> Path:
    """Write an UNTRAINED pipeline of ``tiny`` presets (hash text encoder) to ``directory``
    in about a second, for tests of the CLI and the web UI.

    A freshly initialised editor predicts exactly zero (zero-initialised output layers);
    those layers get small random weights here, so that the output depends on the source,
    the instruction and the seed as a trained model's does.
    """
    from instructme.models.chord import ChordConfig, ChordRecognizer
    from instructme.models.text import TextEncoderConfig
    from instructme.models.unet import EditorConfig, EditorUNet
    from instructme.models.vae import AudioVAE, VAEConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AudioVAE(VAEConfig.preset("tiny"))
        chord = ChordRecognizer(ChordConfig.preset("tiny"))
        editor = EditorUNet(EditorConfig.preset("tiny"))
        with torch.no_grad():
            for p in editor.parameters():
                if p.dim() > 1 and not p.any():
                    p.normal_(0.0, 0.05)
    text = TextEncoderConfig(kind="hash", dim=editor.config.text_dim)
    return write_pipeline_folder(directory, vae, chord, editor, text)


def load_pipeline(model: str | Path | EditPipeline | None = None,
                  device: str | torch.device | None = None) -> EditPipeline:
    """An :class:`EditPipeline` as is, or loaded from a folder (default:
    :func:`default_model_dir`)."""
    if isinstance(model, EditPipeline):
        return model
    directory = Path(model) if model is not None else default_model_dir()
    if model is None and not directory.exists():
        raise CheckpointError(missing_model_message(directory))
    return EditPipeline.from_pretrained(directory, device=device)


def edit(path_in: str | Path, instruction: str | Sequence[str], path_out: str | Path, *,
         model: str | Path | EditPipeline | None = None, steps: int | None = None,
         guidance: float | None = None, seed: int = 0, sampler: str | None = None,
         progress: Progress | None = None, device: str | None = None,
         preserve: bool | None = None) -> EditResult:
    """Edit an audio file and write the result (atomically; same rate, length, channels).

    ``instruction``: one text (may chain edits with 'then') or a list of rounds; returns the
    last round's :class:`EditResult`. ``model``: a pipeline folder or a loaded pipeline
    (default: :func:`default_model_dir`). Refuses to overwrite ``path_in``.
    """
    from instructme.audio import load, save

    check_output_path(path_in, path_out)
    plan_rounds(instruction)  # fail before loading anything
    x, sr = load(path_in, sample_rate=None, mono=False)  # [C, N]
    pipe = load_pipeline(model, device)
    texts = [instruction] if isinstance(instruction, str) else list(instruction)
    results = pipe.edit_chain(x, sr, texts, steps, guidance, seed, sampler, progress, preserve)
    last = results[-1]
    save(path_out, last.audio, last.sample_rate)
    if len(results) == 1:
        return last
    return EditResult(last.audio, last.sample_rate, " then ".join(texts), "multiround",
                      {"rounds": [{"task": r.task, "args": r.args, "instruction": r.instruction}
                                  for r in results]},
                      sum(r.seconds for r in results), _sum_timings(results), last.part)


def check_output_path(path_in: str | Path, path_out: str | Path) -> None:
    """Refuse an output that is the input file (same resolved path) or of an unknown format."""
    import os

    from instructme.errors import AudioError

    src, dst = Path(path_in), Path(path_out)
    same = src.resolve() == dst.resolve()
    if not same and src.exists() and dst.exists():
        same = os.path.samefile(src, dst)
    if same:
        raise AudioError(f"{dst}: refusing to overwrite the input file; choose another output")
    if dst.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise AudioError(f"{dst}: unsupported output format (use .wav, .flac or .ogg)")
    if dst.is_dir():
        raise AudioError(f"{dst}: is a folder; give an output file name")
