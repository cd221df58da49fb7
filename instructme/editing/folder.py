"""Pipeline folders (InstructME, arXiv 2308.14360: the trained VAE, chord recognizer and
editor used together at inference).

A pipeline folder holds ``vae/``, ``chord/`` (absent only for an editor without chord
conditioning) and ``editor/`` (model folders, :mod:`instructme.checkpoint`) and
``pipeline.json``: format name and version, sample rate, the text encoder's config
(:class:`~instructme.models.text.TextEncoderConfig` without its cache size), the default
edit settings (steps, guidance, sampler, preserve: :class:`~instructme.editing.settings.
EditSettings`). ``pipeline.json`` is written last: a folder without it is incomplete. These
folder defaults (else :data:`DEFAULTS`) are the only defaults of an edit's settings.
Loading it is :meth:`instructme.editing.pipeline.EditPipeline.from_pretrained`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from instructme.config import shipped_model_dir
from instructme.editing.settings import EditSettings
from instructme.errors import CheckpointError, InstructMEError

FORMAT = "instructme-pipeline"
FORMAT_VERSION = 1
PIPELINE_JSON = "pipeline.json"
#: Default sampler steps, guidance scale, sampler and source-preserving output
#: (:mod:`instructme.editing.preserve`) of a new pipeline folder, and of one whose
#: ``pipeline.json`` leaves a setting out.
DEFAULTS = EditSettings(steps=50, guidance=3.0, sampler="dpm", preserve=True)
#: Environment variable naming the default pipeline folder.
MODEL_ENV = "INSTRUCTME_MODEL"


def check_components(vae: Any, chord: Any | None, editor: Any, text_config: Any) -> None:
    """The models must agree on latents, rates, chords and text (else CheckpointError)."""
    vc, ec = vae.config, editor.config
    if int(vc.latent_channels) != int(ec.latent_channels):
        raise CheckpointError(f"the VAE has {vc.latent_channels} latent channels, the editor "
                              f"{ec.latent_channels}")
    if abs(float(vc.latent_rate) - float(ec.latent_rate)) > 1e-6:
        raise CheckpointError(f"the VAE's latent rate is {vc.latent_rate} Hz, the editor's "
                              f"{ec.latent_rate} Hz")
    if ec.chord_conditioning:
        if chord is None:
            raise CheckpointError("the editor is chord-conditioned but no chord model is given")
        if int(chord.config.sample_rate) != int(vc.sample_rate):
            raise CheckpointError(f"the chord model is {chord.config.sample_rate} Hz, the VAE "
                                  f"{vc.sample_rate} Hz")
        if abs(float(chord.frame_rate) - float(ec.chord_rate)) > 1e-6:
            raise CheckpointError(f"the chord model gives {chord.frame_rate} frames/s, the "
                                  f"editor expects {ec.chord_rate}")
        if len(chord.labels) != int(ec.chord_classes):
            raise CheckpointError(f"the chord model has {len(chord.labels)} classes, the editor "
                                  f"expects {ec.chord_classes}")
    if text_config.kind != ec.text_encoder:
        raise CheckpointError(f"the editor was trained with the {ec.text_encoder} text encoder, "
                              f"the pipeline names {text_config.kind}")


def write_pipeline_folder(directory: str | Path, vae: Any, chord: Any | None, editor: Any,
                          text_config: Any,
                          defaults: EditSettings | dict[str, Any] | None = None,
                          editor_dtype: Any = None, separator: Any | None = None) -> Path:
    """Write a pipeline folder from models (checked to fit together) without loading the
    text encoder; ``pipeline.json`` is written last, so a folder without it is incomplete.
    ``defaults``: the folder's edit settings (unset ones: :data:`DEFAULTS`).
    ``editor_dtype=torch.float16`` stores the editor's weights at half size (they load back
    as float32)."""
    from instructme.checkpoint import save_model
    from instructme.fileio import atomic_write_json
    from instructme.models.text import TextEncoderConfig

    if isinstance(text_config, dict):
        text_config = TextEncoderConfig.from_dict(text_config)
    check_components(vae, chord, editor, text_config)
    if isinstance(defaults, EditSettings):
        defaults = defaults.folder_defaults()
    settings = EditSettings.from_folder(defaults, DEFAULTS)
    root = Path(directory)
    (root / PIPELINE_JSON).unlink(missing_ok=True)
    save_model(vae, root / "vae")
    if chord is not None:
        save_model(chord, root / "chord")
    save_model(editor, root / "editor", dtype=editor_dtype)
    if separator is not None:
        save_model(separator, root / "separator")
    text = text_config.to_dict()
    text.pop("cache_size", None)
    atomic_write_json(root / PIPELINE_JSON, {
        "format": FORMAT, "version": FORMAT_VERSION, "sample_rate": int(vae.config.sample_rate),
        "text_encoder": text, "defaults": settings.folder_defaults(),
        "chord": chord is not None, "separator": separator is not None})
    return root


def read_pipeline_json(directory: str | Path) -> dict[str, Any]:
    """``DIR/pipeline.json``, checked (format, version, required keys)."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"{root}: pipeline folder not found")
    path = root / PIPELINE_JSON
    if not path.is_file():
        raise CheckpointError(f"{root}: no {PIPELINE_JSON} (not a pipeline folder: it needs "
                              f"vae/, chord/, editor/ and {PIPELINE_JSON})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an instructme pipeline description")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: pipeline format version {meta.get('version')!r}, this "
                              f"instructme reads version {FORMAT_VERSION}")
    for key in ("sample_rate", "text_encoder"):
        if key not in meta:
            raise CheckpointError(f"{path}: missing {key!r}")
    return meta


def folder_defaults(meta: dict[str, Any], directory: str | Path) -> EditSettings:
    """The default edit settings of a folder's ``pipeline.json`` (``meta``; unset ones:
    :data:`DEFAULTS`). Raises :class:`CheckpointError` for a bad or unknown setting."""
    try:
        return EditSettings.from_folder(meta.get("defaults"), DEFAULTS)
    except InstructMEError as e:
        raise CheckpointError(f"{Path(directory) / PIPELINE_JSON}: {e}") from None


def default_model_dir() -> Path:
    """``$INSTRUCTME_MODEL`` or the shipped ``models/instructme-small`` of the repository."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    return shipped_model_dir("instructme-small")


def missing_model_message(directory: Path) -> str:
    return (f"no edit model at {directory}: pass --model DIR (or set {MODEL_ENV}) with a "
            "pipeline folder, or build one from trained models with 'instructme pipeline "
            "--vae V --chord C --editor E -o DIR' (train them with 'instructme train vae', "
            "'train chord', 'train editor')")


def build_tiny_pipeline(directory: str | Path, seed: int = 0,
                        defaults: EditSettings | None = None) -> Path:
    """Write an UNTRAINED pipeline of ``tiny`` presets (hash text encoder) to ``directory``
    in about a second, for tests of the CLI and the web UI (``defaults``: its edit settings).

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
    return write_pipeline_folder(directory, vae, chord, editor, text, defaults)
