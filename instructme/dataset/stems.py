"""Loaders for users' own multitrack data: Slakh2100, MUSDB18 (wav/HQ), generic stem folders.

InstructME (arXiv 2308.14360, Sec. 4.1) trains on multitrack music where every instrument
is a separate stem, so add/remove/extract/replace targets are exact sums of stems. This
module only *describes* such data -- which stems a song has, where their files are and
which instrument class (:data:`~instructme.vocab.INSTRUMENT_CLASSES`) each one
is -- as a list of :class:`StemSong`; no audio is read here.

Layouts::

    slakh   root/[split/]TrackXXXXX/{metadata.yaml, mix.flac, stems/S00.flac, ...}
    musdb   root/{train,test}/<Song Name>/{mixture,drums,bass,vocals,other}.wav
    folder  root/<song>/<stem>.{wav,flac,ogg,mp3}   (mix.* / mixture.* is the mixture)

Bad roots raise :class:`~instructme.errors.ManifestError` with a one-line message.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from instructme.errors import ManifestError
from instructme.vocab import program_to_class, resolve_instrument

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("auto", "slakh", "musdb", "folder")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
MIXTURE_NAMES: frozenset[str] = frozenset({"mix", "mixture"})

#: Slakh2100 ``inst_class`` (lower case) -> class; used when ``program_num`` does not map.
SLAKH_CLASSES: dict[str, str | None] = {
    "piano": "piano", "chromatic percussion": "mallets", "organ": "organ", "guitar": "guitar",
    "bass": "bass", "strings": "strings", "strings (continued)": "strings", "brass": "brass",
    "reed": "woodwinds", "pipe": "woodwinds", "synth lead": "synth_lead",
    "synth pad": "synth_pad", "drums": "drums", "ensemble": "strings", "synth effects": None,
    "ethnic": None, "percussive": None, "sound effects": None,
}

#: MUSDB18 stem names -> class ("other" is a mix of everything else: no class).
MUSDB_STEMS: dict[str, str | None] = {
    "drums": "drums", "bass": "bass", "vocals": "vocals", "other": None,
}

#: Abbreviations and mic names common in stem file names (not instruction vocabulary).
STEM_NAME_HINTS: dict[str, str] = {
    "kick": "drums", "snare": "drums", "hihat": "drums", "hi hat": "drums", "hh": "drums",
    "hat": "drums", "hats": "drums", "tom": "drums", "toms": "drums", "overhead": "drums",
    "overheads": "drums", "cymbal": "drums", "cymbals": "drums", "ride": "drums",
    "crash": "drums", "perc": "drums", "drumkit": "drums", "tambourine": "drums",
    "shaker": "drums", "conga": "drums", "congas": "drums", "bongo": "drums",
    "bongos": "drums", "vox": "vocals", "bv": "vocals", "bvs": "vocals", "gtr": "guitar",
    "gtrs": "guitar", "guit": "guitar", "banjo": "guitar", "ukulele": "guitar",
    "mandolin": "guitar", "pno": "piano", "epiano": "piano", "wurli": "piano",
    "wurlitzer": "piano", "clav": "piano", "str": "strings", "strs": "strings",
    "vln": "strings", "vla": "strings", "vc": "strings", "synthbass": "bass", "sub": "bass",
    "subbass": "bass", "tpt": "brass", "trp": "brass", "tbn": "brass", "glock": "mallets",
}
#: Words that name an instrument only weakly ("lead guitar" is a guitar, not a synth lead).
_WEAK_WORDS = frozenset({"lead", "synth", "kit", "beat", "beats", "groove", "line"})


@dataclass(frozen=True)
class StemRef:
    """One stem file. ``instrument`` is a class name, or ``None`` if unmappable ("other")."""

    name: str
    path: Path
    instrument: str | None
    program: int | None = None
    is_drum: bool = False


@dataclass
class StemSong:
    """A multitrack song: its stems and, when present, the mixture file."""

    song_id: str
    stems: list[StemRef]
    mixture: Path | None
    split: str | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def by_instrument(self) -> dict[str, list[StemRef]]:
        """Stems grouped by instrument class (unmapped stems are left out)."""
        out: dict[str, list[StemRef]] = {}
        for s in self.stems:
            if s.instrument is not None:
                out.setdefault(s.instrument, []).append(s)
        return out


# -- helpers -------------------------------------------------------------------------------

def _root(root: str | os.PathLike[str], what: str) -> Path:
    p = Path(root).expanduser()
    if not p.exists():
        raise ManifestError(f"{what} folder not found: {p}")
    if not p.is_dir():
        raise ManifestError(f"{p} is a file, not a {what} folder")
    return p


def _visible_dirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))


def _audio_files(p: Path) -> list[Path]:
    return sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                  and f.suffix.lower() in AUDIO_EXTENSIONS)


def _first_existing(base: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        for cand in (base / f"{stem}{ext}", base / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def _unique_ids(songs: list[StemSong]) -> list[StemSong]:
    """Song ids clash only across splits: prefix those with the split name."""
    counts: dict[str, int] = {}
    for s in songs:
        counts[s.song_id] = counts.get(s.song_id, 0) + 1
    for s in songs:
        if counts[s.song_id] > 1 and s.split:
            s.song_id = f"{s.split}/{s.song_id}"
    return songs


def instrument_from_name(name: str) -> str | None:
    """Stem file name (no extension) -> class: "Piano" -> piano, "drums_1" -> drums,
    "bass-di" -> bass, "LeadVocals" -> vocals, "lead_guitar" -> guitar, "other" -> None.

    Tries word n-grams, longest first and right to left (the head noun comes last);
    weak words such as "lead" or "synth" count only if nothing else matches.
    """
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    words = [w for w in re.split(r"[^a-z]+", spaced.lower()) if w]
    weak: str | None = None
    for n in range(len(words), 0, -1):
        for i in range(len(words) - n, -1, -1):
            phrase = " ".join(words[i:i + n])
            cls = resolve_instrument(phrase) or STEM_NAME_HINTS.get(phrase)
            if cls is None:
                continue
            if phrase not in _WEAK_WORDS:
                return cls
            weak = weak or cls
    return weak


# -- Slakh2100 -----------------------------------------------------------------------------

def _slakh_instrument(info: dict[str, object]) -> tuple[str | None, int | None, bool]:
    is_drum = bool(info.get("is_drum", False))
    program: int | None
    try:
        program = int(info["program_num"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        program = None
    cls: str | None = None
    if is_drum:
        cls = "drums"
    elif program is not None:
        try:
            cls = program_to_class(program, False)
        except ValueError:
            cls = None
    if cls is None:
        cls = SLAKH_CLASSES.get(str(info.get("inst_class", "")).strip().lower())
    return cls, program, is_drum


def _slakh_track(track: Path, split: str | None) -> StemSong | None:
    meta_path = track / "metadata.yaml"
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ManifestError(f"{meta_path}: malformed metadata.yaml ({first})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict):
        raise ManifestError(f"{meta_path}: malformed metadata.yaml (no 'stems' mapping)")
    audio_dir = track / str(meta.get("audio_dir") or "stems")
    stems: list[StemRef] = []
    for key in sorted(meta["stems"], key=str):
        info = meta["stems"][key]
        if not isinstance(info, dict):
            raise ManifestError(f"{meta_path}: malformed metadata.yaml (stem {key} is not a "
                                "mapping)")
        if info.get("audio_rendered") is False:
            log.debug("%s: stem %s not rendered, skipped", track.name, key)
            continue
        path = _first_existing(audio_dir, str(key))
        if path is None:
            log.debug("%s: stem %s has no audio file, skipped", track.name, key)
            continue
        cls, program, is_drum = _slakh_instrument(info)
        stems.append(StemRef(str(key), path, cls, program, is_drum))
    if not stems:
        log.info("%s: no rendered stems, skipped", track)
        return None
    extra = {k: meta[k] for k in ("UUID", "normalization_factor", "overall_gain") if k in meta}
    return StemSong(track.name, stems, _first_existing(track, "mix"), split, extra)


def _slakh_tracks(root: Path) -> list[tuple[Path, str | None]]:
    if (root / "metadata.yaml").is_file():
        return [(root, None)]
    found: list[tuple[Path, str | None]] = []
    for d in _visible_dirs(root):
        if (d / "metadata.yaml").is_file():
            found.append((d, None))
        else:
            found += [(t, d.name) for t in _visible_dirs(d) if (t / "metadata.yaml").is_file()]
    return found


def load_slakh(root: str | os.PathLike[str]) -> list[StemSong]:
    """Slakh2100 (or a split/track of it) -> songs; stems not rendered or missing are skipped.

    Instrument classes come from ``program_num``/``is_drum`` (General MIDI families), falling
    back to ``inst_class`` ("Piano", "Reed", "Synth Pad", ...).
    """
    r = _root(root, "Slakh2100")
    tracks = _slakh_tracks(r)
    if not tracks:
        raise ManifestError(f"no Slakh2100 tracks (TrackXXXXX/metadata.yaml) under {r}")
    songs = [s for t, split in tracks if (s := _slakh_track(t, split)) is not None]
    if not songs:
        raise ManifestError(f"no rendered stems in the {len(tracks)} Slakh2100 tracks under {r}")
    return _unique_ids(songs)


# -- MUSDB18 -------------------------------------------------------------------------------

def _musdb_song(d: Path, split: str | None) -> StemSong | None:
    stems = [StemRef(name, p, cls) for name, cls in MUSDB_STEMS.items()
             if (p := _first_existing(d, name)) is not None]
    mixture = _first_existing(d, "mixture")
    if not stems:
        return None
    return StemSong(d.name, stems, mixture, split)


def load_musdb(root: str | os.PathLike[str]) -> list[StemSong]:
    """MUSDB18 wav/HQ (``root/{train,test}/<song>/``, or one split folder) -> songs.

    Stems: drums, bass, vocals -> their classes; other -> ``None``.
    """
    r = _root(root, "MUSDB18")
    splits = [(r / s, s) for s in ("train", "test") if (r / s).is_dir()]
    if not splits:
        splits = [(r, None)]
    songs: list[StemSong] = []
    for folder, split in splits:
        if any(folder.glob("*.stem.mp4")):
            raise ManifestError(f"{folder} holds MUSDB18 .stem.mp4 files; only the wav layout "
                                "is read (convert with 'musdbconvert', from the musdb package)")
        songs += [s for d in _visible_dirs(folder) if (s := _musdb_song(d, split)) is not None]
    if not songs:
        raise ManifestError(f"no MUSDB18 songs (<song>/mixture.wav, drums.wav, bass.wav, "
                            f"vocals.wav, other.wav) under {r}")
    return _unique_ids(songs)


# -- generic folders -----------------------------------------------------------------------

def _folder_song(d: Path, files: Iterable[Path]) -> StemSong:
    stems: list[StemRef] = []
    mixture: Path | None = None
    names: set[str] = set()
    for f in files:
        base = f.stem
        if base.strip().lower() in MIXTURE_NAMES:
            if mixture is not None:
                raise ManifestError(f"{d}: two mixture files ({mixture.name}, {f.name})")
            mixture = f
            continue
        name = base if base not in names else f.name
        names.add(name)
        stems.append(StemRef(name, f, instrument_from_name(base)))
    return StemSong(d.name, stems, mixture)


def load_stem_folder(root: str | os.PathLike[str]) -> list[StemSong]:
    """Generic ``root/<song>/<stem>.<wav|flac|ogg|mp3>`` (or a single song folder) -> songs.

    Classes come from the stem file names ("Piano.wav", "drums_1.flac", "bass-di.wav");
    ``mix.*``/``mixture.*`` is the mixture; unrecognised names get ``instrument=None``.
    """
    r = _root(root, "stem")
    songs = []
    for d in _visible_dirs(r):
        files = _audio_files(d)
        if any(f.stem.strip().lower() not in MIXTURE_NAMES for f in files):
            songs.append(_folder_song(d, files))
    if not songs:
        top = _audio_files(r)
        if any(f.stem.strip().lower() not in MIXTURE_NAMES for f in top):
            songs.append(_folder_song(r, top))
    if not songs:
        raise ManifestError(f"no songs under {r}: expected <song>/<stem>.wav|flac|ogg|mp3 "
                            "files")
    return songs


# -- dispatch ------------------------------------------------------------------------------

def detect_layout(root: str | os.PathLike[str]) -> str:
    """Guess the layout of ``root``: "slakh", "musdb" or "folder"."""
    r = _root(root, "stem")
    if _slakh_tracks(r):
        return "slakh"
    for folder in [r / "train", r / "test", r]:
        if not folder.is_dir():
            continue
        if any(folder.glob("*.stem.mp4")):
            return "musdb"
        for d in _visible_dirs(folder)[:20]:
            found = [n for n in MUSDB_STEMS if _first_existing(d, n) is not None]
            if _first_existing(d, "mixture") is not None and len(found) >= 2:
                return "musdb"
    return "folder"


def load_stems(root: str | os.PathLike[str], layout: str = "auto") -> list[StemSong]:
    """Load multitrack songs from ``root`` in ``layout`` ("auto" detects it)."""
    if layout not in LAYOUTS:
        raise ManifestError(f"unknown stem layout {layout!r}; choose one of: "
                            f"{', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)
    loader = {"slakh": load_slakh, "musdb": load_musdb, "folder": load_stem_folder}[layout]
    return loader(root)
