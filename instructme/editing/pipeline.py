"""EditPipeline: audio + instruction -> edited audio (InstructME, arXiv 2308.14360, Method:
the whole editing model at inference; Experiments: multi-round editing).

An edit runs as numbered stages (the shape of ``diffusers``' pipelines), on a whole song in
one pass; shapes are for one round, ``N`` samples at the user's rate, ``N'`` at the model's::

    1 check inputs     instruction(s) -> rounds; settings (:class:`EditSettings`) resolved
                       against the folder's defaults; audio checked
    2 prepare source   user audio [C, N] -> UserAudio: mono [N'] at the model rate and the
                       training level (:mod:`instructme.editing.user_audio`)
    3 encode           [1, N'] --VAE encode_latents--> z_src [1, C_z, T]  (fp16-rounded)
    4 condition        [1, N'] --chord predict_proba--> P [1, T_c, K]   (chord-conditioned
                       editors); text --encoder--> tokens [1, L, D], mask [1, L]
    5 sample           noise [1, C_z, T] --sampler + guided editor--> z_tgt [1, C_z, T]
                       (:mod:`instructme.samplers`, :mod:`instructme.editing.guidance`)
    6 decode           z_tgt --VAE decode_latents--> y [N']  (and VAE(z_src) when preserving)
    7 compose          add/remove/replace with ``preserve``: gains guided by y applied to the
                       user's audio, plus the added part (:mod:`instructme.editing.preserve`);
                       else y back at the user's rate, level and channels

With ``preserve`` untouched material never passes through the VAE and keeps the input's
rate, channels and stereo image; the result also carries the edited part alone
(``EditResult.part``). An extract, a remix, or ``preserve=False`` returns the generated mix
(an extract's part is its output). In a multi-round edit each round's output is the next
round's source (:meth:`UserAudio.next_round`).

An editor with part targets (``target="part"``) generates only the added or replacing part,
which stage 7 adds to the user's audio (:mod:`instructme.editing.parts`).

With a stem separator (a folder's ``separator/``), remove and extract skip stages 3-7: one
forward pass of the separator masks the user's audio (:mod:`instructme.editing.separation`);
a replace's old instrument is removed by it in stage 7 instead of by the guide's gains. An
instrument the separator does not hear gives a silent part and a notice
(``EditResult.notes``).

The conditioning is prepared exactly as :mod:`instructme.training.editor_cache` prepares it
for training: VAE posterior means (no sampling), chord probabilities of the source mix at the
recognizer's frame rate aligned to time 0, the instruction's token states of the frozen
encoder, each rounded through float16 as the cache stores them. Guidance drops the whole
instruction (the U-Net's learned null token only), as in training.

A pipeline folder holds ``vae/``, ``chord/`` (absent only for an editor without chord
conditioning), ``editor/`` and ``pipeline.json``; see :mod:`instructme.editing.folder` and
``docs/ARCHITECTURE.md``.
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

from instructme.audio import peak_safe
from instructme.editing.folder import (
    PIPELINE_JSON,
    build_tiny_pipeline,
    check_components,
    default_model_dir,
    folder_defaults,
    missing_model_message,
    read_pipeline_json,
    write_pipeline_folder,
)
from instructme.editing.guidance import EditorDenoiser, split_passes
from instructme.editing.parts import part_round
from instructme.editing.preserve import PRESERVING_TASKS, compose, guide
from instructme.editing.separation import (
    SEPARATED_TASKS,
    absent_notice,
    separate,
    split_stems,
)
from instructme.editing.settings import EditSettings
from instructme.editing.user_audio import UserAudio
from instructme.errors import CheckpointError, InstructionError, InstructMEError

__all__ = ["EditPipeline", "EditResult", "EditSettings", "Round", "build_tiny_pipeline",
           "check_output_path", "chain_result", "edit", "load_pipeline", "plan_rounds"]

Progress = Callable[[int, int], None]


@dataclass
class EditResult:
    """One edit's output: ``audio`` in the input's rate, length, channels and layout.

    ``task``/``args``: the parsed instruction (a chain is ``"multiround"`` with
    ``args["rounds"]``). ``seconds``: wall time of the edit. ``timings``: seconds per stage.
    ``part``: the edited part alone (the added, removed or extracted instrument, the new one
    of a replace; same format as ``audio``) when the output was source-preserving, else None.
    ``notes``: one-line notices for the user (an instrument that was not heard).
    """

    audio: np.ndarray
    sample_rate: int
    instruction: str
    task: str
    args: dict[str, Any]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    part: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def chain_result(instruction: str, results: list[EditResult]) -> EditResult:
    """The result of a multi-round edit as one :class:`EditResult`: the last round's audio
    and part, task ``"multiround"`` with ``args["rounds"]`` (task, args, instruction of each),
    seconds and stage timings summed. One round: that round's result."""
    if len(results) == 1:
        return results[0]
    last = results[-1]
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    rounds = [{"task": r.task, "args": r.args, "instruction": r.instruction} for r in results]
    return EditResult(last.audio, last.sample_rate, instruction, "multiround",
                      {"rounds": rounds}, sum(r.seconds for r in results), timings, last.part,
                      [n for r in results for n in r.notes])


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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device` (None: CUDA if available, else CPU), checked: an
    unknown name or an accelerator this machine lacks is a one-line
    :class:`~instructme.errors.InstructMEError`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise InstructMEError(f"unknown device {str(device)!r} (use cpu, cuda or cuda:N)"
                              ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InstructMEError(f"device {device}: CUDA is not available on this machine "
                                  "(use --device cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and not 0 <= dev.index < count:
            raise InstructMEError(f"device {device}: this machine has {count} CUDA device(s) "
                                  f"(cuda:0..cuda:{count - 1})")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InstructMEError(f"device {device}: MPS is not available on this machine")
        return dev
    raise InstructMEError(f"device {device}: not supported (use cpu, cuda or cuda:N)")


@dataclass
class Conditioning:
    """What the editor is conditioned on in one round (stages 3 and 4): ``z_src [1, C_z, T]``,
    ``text [1, L, D]``, ``text_mask [1, L]``, ``chords [1, T_c, K]`` or None."""

    z_src: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    chords: torch.Tensor | None


class EditPipeline:
    """VAE + chord recognizer + text encoder + editor U-Net, ready to edit audio.

    ``defaults``: the :class:`EditSettings` of the pipeline folder (every field set); an
    edit's unset settings take them. Thread-safe: concurrent calls are served one at a time.
    """

    def __init__(self, vae: Any, chord: Any | None, editor: Any, text_config: Any,
                 defaults: EditSettings | dict[str, Any] | None = None,
                 device: str | torch.device | None = None,
                 separator: Any | None = None) -> None:
        from instructme.diffusion import Diffusion
        from instructme.editing.folder import DEFAULTS
        from instructme.models.text import TextEncoderConfig, build_text_encoder

        if isinstance(text_config, dict):
            text_config = TextEncoderConfig.from_dict(text_config)
        check_components(vae, chord, editor, text_config)
        self.device = resolve_device(device)
        self.vae = vae.to(self.device).eval()
        self.chord = chord.to(self.device).eval() if chord is not None else None
        self.editor = editor.to(self.device).eval()
        #: The stem separator that answers remove / extract (None: the generated path).
        self.separator = separator.to(self.device).eval() if separator is not None else None
        self.text_config = text_config
        self.text_encoder = build_text_encoder(text_config).to(self.device)
        if self.text_encoder.dim != editor.config.text_dim:
            raise CheckpointError(f"the {text_config.kind} text encoder gives "
                                  f"{self.text_encoder.dim}-d states, the editor expects "
                                  f"{editor.config.text_dim}-d")
        self.diffusion = Diffusion.from_config(editor.config)
        if isinstance(defaults, EditSettings):
            defaults = defaults.folder_defaults()
        self.defaults = EditSettings.from_folder(defaults, DEFAULTS)
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
        """Load a pipeline folder (:mod:`instructme.editing.folder`). ``device``: default
        CUDA if available, else CPU. Raises :class:`CheckpointError` for a missing or
        mismatched folder."""
        from instructme.checkpoint import load_model
        from instructme.models.chord import ChordRecognizer
        from instructme.models.unet import EditorUNet
        from instructme.models.vae import AudioVAE

        resolve_device(device)  # a bad device fails before the models are read
        root = Path(directory)
        meta = read_pipeline_json(root)
        defaults = folder_defaults(meta, root)
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
        separator = None
        if (root / "separator").exists():
            from instructme.models.separator import Separator

            separator = load_model(Separator, root / "separator")
            if int(separator.config.sample_rate) != int(vae.config.sample_rate):
                raise CheckpointError(f"{root}: the separator is {separator.config.sample_rate}"
                                      f" Hz, the VAE {vae.config.sample_rate} Hz")
        return cls(vae, chord, editor, meta["text_encoder"], defaults, device, separator)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``vae/``, ``chord/``, ``editor/`` and (last) ``pipeline.json``."""
        return write_pipeline_folder(directory, self.vae, self.chord, self.editor,
                                     self.text_config, self.defaults,
                                     separator=self.separator)

    def to(self, device: str | torch.device) -> EditPipeline:
        self.device = resolve_device(device)
        for m in (self.vae, self.chord, self.editor, self.text_encoder, self.separator):
            if m is not None:
                m.to(self.device)
        return self

    @property
    def sample_rate(self) -> int:
        """The models' sample rate (inputs at any rate are resampled to it and back)."""
        return int(self.vae.config.sample_rate)

    # ------------------------------------------------------------------ editing
    def __call__(self, audio: np.ndarray, sample_rate: int, instruction: str,
                 settings: EditSettings | None = None, *, progress: Progress | None = None,
                 **overrides: Any) -> EditResult:
        """Edit ``audio`` (``[N]``, ``[C, N]`` or ``[N, C]``) as ``instruction`` says.

        ``settings`` (and keyword ``overrides`` of its fields: ``steps``, ``guidance``,
        ``sampler``, ``seed``, ``preserve``): see :class:`EditSettings`; unset ones are the
        pipeline's :attr:`defaults`. ``progress(step, total)`` is called after every sampler
        step. A chained instruction runs as a multi-round edit and returns the last round
        (task ``"multiround"``, :func:`chain_result`). Deterministic for a seed.
        """
        results = self.edit_chain(audio, sample_rate, [instruction], settings,
                                  progress=progress, **overrides)
        return chain_result(instruction, results)

    def edit_chain(self, audio: np.ndarray, sample_rate: int, instructions: str | Sequence[str],
                   settings: EditSettings | None = None, *, progress: Progress | None = None,
                   **overrides: Any) -> list[EditResult]:
        """Multi-round editing: each round's output is the next round's source. Returns one
        :class:`EditResult` per round (a text that chains edits counts as several rounds).
        Round ``k`` (from 0) samples with seed ``seed + k``; ``progress(step, total)`` counts
        steps over the rounds that sample (:meth:`samples`; none for an edit the separator
        answers). ``settings``/``overrides``: as for :meth:`__call__`."""
        # 1. check inputs (instructions, settings, audio: one-line errors before any work)
        rounds = plan_rounds([instructions] if isinstance(instructions, str) else instructions)
        cfg = self.resolve_settings(settings, **overrides)
        # 2. prepare the source: the user's audio and its model side
        source = UserAudio.from_user(audio, sample_rate, self.sample_rate)
        steps = int(cfg.steps or 0)
        sampled = [self.samples(rd) for rd in rounds]
        total = steps * sum(sampled)
        results = []
        with self._lock, torch.inference_mode():
            for k, rd in enumerate(rounds):
                before = steps * sum(sampled[:k])

                def step_cb(i: int, n: int, before: int = before) -> None:
                    if progress is not None:
                        progress(before + i, total)

                result, source = self._edit_round(source, rd, cfg, cfg.seed + k, step_cb)
                results.append(result)
        return results

    def split(self, audio: np.ndarray, sample_rate: int,
              instruments: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Class -> stem (the input's rate and layout) for every class that sounds, plus
        ``"other"``; they sum to the input (:func:`~instructme.editing.separation.
        split_stems`). Needs a separator."""
        source = UserAudio.from_user(audio, sample_rate, self.sample_rate)
        with self._lock, torch.inference_mode():
            stems = split_stems(source, self.separator, instruments)
        return {k: source.to_layout(v, safe=False) for k, v in stems.items()}

    def resolve_settings(self, settings: EditSettings | None = None,
                         **overrides: Any) -> EditSettings:
        """``settings`` with ``overrides`` on top and the pipeline's :attr:`defaults` under,
        checked (one-line :class:`~instructme.errors.InstructMEError`): every field set."""
        return (settings or EditSettings()).override(**overrides).resolve(self.defaults)

    def samples(self, rd: Round) -> bool:
        """Whether round ``rd`` runs the diffusion sampler (a separated remove or extract
        is one forward pass of the separator, no sampling)."""
        return not (self.separator is not None and rd.task in SEPARATED_TASKS)

    def _edit_round(self, source: UserAudio, rd: Round, cfg: EditSettings, seed: int,
                    progress: Progress) -> tuple[EditResult, UserAudio]:
        """Stages 3-7 of one round -> ``(result, the next round's source)``. With a
        separator, remove and extract are one forward pass of it, and a replace's old
        instrument is removed by it (:mod:`~instructme.editing.separation`)."""
        t0 = time.perf_counter()
        if not self.samples(rd):
            return self._separate_round(source, rd)
        if self.editor.config.target == "part":
            if rd.task in SEPARATED_TASKS:
                raise CheckpointError("this pipeline's editor generates parts (add, replace, "
                                      f"remix): {rd.task} needs the stem separator")
            return part_round(self, source, rd, cfg, seed, progress)
        keep = bool(cfg.preserve) and rd.task in PRESERVING_TASKS
        timings: dict[str, float] = {}
        notes: list[str] = []
        kept = None
        if keep and rd.task == "replace" and self.separator is not None:
            t = time.perf_counter()
            kept, _, found = separate(source, self.separator, rd.args["instrument"], "remove")
            notes += [] if found else [absent_notice(rd.args["instrument"])]
            timings["separate"] = time.perf_counter() - t
        src = torch.from_numpy(source.model)[None].to(self.device)  # [1, N']
        cond = self._encode(src, rd.text, timings)  # 3. encode, 4. condition
        z = self._sample(cond, cfg, seed, progress, timings)  # 5. sample
        y, ref = self._decode(z, cond.z_src if keep else None, src.shape[-1], timings)  # 6.
        t1 = time.perf_counter()
        out, part, nxt = self._compose(source, rd.task, y, ref, bool(cfg.preserve), kept)  # 7.
        timings["output"] = time.perf_counter() - t1
        result = EditResult(out, source.sample_rate, rd.text, rd.task, dict(rd.args),
                            time.perf_counter() - t0, timings, part, notes)
        return result, nxt

    def _separate_round(self, source: UserAudio, rd: Round) -> tuple[EditResult, UserAudio]:
        """A remove or extract by the separator -> ``(result, the next round's source)``."""
        t0 = time.perf_counter()
        out, part, found = separate(source, self.separator, rd.args["instrument"], rd.task)
        dt = time.perf_counter() - t0
        notes = [] if found else [absent_notice(rd.args["instrument"])]
        return EditResult(source.to_layout(out, safe=False), source.sample_rate, rd.text,
                          rd.task, dict(rd.args), dt, {"separate": dt},
                          source.to_layout(part, safe=False), notes), source.next_round(out, None)

    def _encode(self, src: torch.Tensor, text: str, timings: dict[str, float]) -> Conditioning:
        """Stages 3 and 4: ``src [1, N']`` -> source latents, chord probabilities and the
        instruction's token states, float16-rounded as in the training cache."""
        t = time.perf_counter()
        z_src = _f16(self.vae.encode_latents(src))  # [1, C_z, T]
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
        timings["text"] = time.perf_counter() - t
        return Conditioning(z_src, tokens, mask.to(self.device), chords)

    def _sample(self, cond: Conditioning, cfg: EditSettings, seed: int, progress: Progress,
                timings: dict[str, float]) -> torch.Tensor:
        """Stage 5: noise ``[1, C_z, T]`` (seeded CPU generator) -> ``z_tgt [1, C_z, T]`` with
        the guided editor (:mod:`instructme.editing.guidance`)."""
        assert cfg.steps is not None and cfg.guidance is not None
        t = time.perf_counter()
        denoiser = EditorDenoiser(self.editor, cond.z_src, cond.text, cond.text_mask,
                                  cond.chords, cfg.guidance,
                                  sequential=split_passes(self.device, cond.z_src.shape[-1]))
        gen = torch.Generator().manual_seed(seed)
        shape = (1, int(self.editor.config.latent_channels), int(cond.z_src.shape[-1]))
        z = self.diffusion.sample(denoiser, shape, sampler=cfg.sampler_spec.name,
                                  steps=cfg.steps, generator=gen, device=self.device,
                                  callback=progress)
        timings["sample"] = time.perf_counter() - t
        return z

    def _decode(self, z: torch.Tensor, z_src: torch.Tensor | None, length: int,
                timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray | None]:
        """Stage 6: ``z_tgt`` -> ``y [N']``; with ``z_src`` also the VAE's own round trip of
        the source ``[N']`` (the reference of :func:`~instructme.editing.preserve.guide`)."""
        t = time.perf_counter()
        y = self.vae.decode_latents(z, length=length)[0]  # [N']
        ref = None
        if z_src is not None:
            ref = self.vae.decode_latents(z_src, length=length)[0].float().cpu().numpy()
        timings["decode"] = time.perf_counter() - t
        return y.float().cpu().numpy(), ref

    def _compose(self, source: UserAudio, task: str, y: np.ndarray, ref: np.ndarray | None,
                 preserve: bool, kept: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, UserAudio]:
        """Stage 7: the output in the input's layout, the edited part (or None) and the next
        round's source. With ``ref`` (a preserving task) the generated ``y [N']`` guides gains
        on the user's audio (:mod:`instructme.editing.preserve`), else ``y`` is the output;
        ``kept`` (a replace with a separator): the source without the old instrument."""
        part = None
        if ref is not None:
            g = guide(ref, y, self.sample_rate, task)
            out_cn, part_cn = compose(source.audio, source.sample_rate, g, task, source.gain,
                                      kept)
            part = source.to_layout(part_cn, safe=False)
        else:
            out_cn = source.from_model(y)
        user = peak_safe(np.nan_to_num(out_cn.astype(np.float32)))  # [C, N]
        out = source.to_layout(user)
        if preserve and task == "extract":  # the generated mix is the part
            part = out.copy()
        return out, part, source.next_round(user, None if ref is not None else y)


def load_pipeline(model: str | Path | EditPipeline | None = None,
                  device: str | torch.device | None = None) -> EditPipeline:
    """An :class:`EditPipeline` as is, or loaded from a folder (default:
    :func:`~instructme.editing.folder.default_model_dir`)."""
    if isinstance(model, EditPipeline):
        return model
    directory = Path(model) if model is not None else default_model_dir()
    if model is None and not directory.exists():
        raise CheckpointError(missing_model_message(directory))
    return EditPipeline.from_pretrained(directory, device=device)


def edit(path_in: str | Path, instruction: str | Sequence[str], path_out: str | Path,
         settings: EditSettings | None = None, *,
         model: str | Path | EditPipeline | None = None, progress: Progress | None = None,
         device: str | None = None, **overrides: Any) -> EditResult:
    """Edit an audio file and write the result (atomically; same rate, length, channels).

    ``instruction``: one text (may chain edits with 'then') or a list of rounds; returns the
    last round's :class:`EditResult` (a chain: :func:`chain_result`). ``settings`` and
    keyword ``overrides``: see :class:`EditSettings`. ``model``: a pipeline folder or a
    loaded pipeline (default: ``$INSTRUCTME_MODEL`` or the shipped one). Refuses to overwrite
    ``path_in``.
    """
    from instructme.audio import load, save

    check_output_path(path_in, path_out)
    texts = [instruction] if isinstance(instruction, str) else list(instruction)
    plan_rounds(texts)  # fail before loading anything
    settings = (settings or EditSettings()).override(**overrides).validate()
    x, sr = load(path_in, sample_rate=None, mono=False)  # [C, N]
    pipe = load_pipeline(model, device)
    results = pipe.edit_chain(x, sr, texts, settings, progress=progress)
    last = results[-1]
    save(path_out, last.audio, last.sample_rate)
    return chain_result(" then ".join(texts), results)


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
