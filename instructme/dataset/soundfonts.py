"""The General MIDI soundfonts a data build may render with, by name.

Timbre diversity: a build with several ``soundfonts`` draws one per stem (seeded), so models
learn instruments rather than one soundfont's samples. Two soundfonts are **held out**: never
used for a training build, kept for measuring how models do on timbres they never heard
(docs/ARCHITECTURE.md, "Data").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from instructme.errors import DependencyError, InstructMEError


@dataclass(frozen=True)
class SoundfontInfo:
    name: str
    path: str
    package: str  # the Debian package that ships it
    held_out: bool = False


SOUNDFONTS: dict[str, SoundfontInfo] = {s.name: s for s in (
    SoundfontInfo("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    SoundfontInfo("musescore", "/usr/share/sounds/sf3/MuseScore_General.sf3",
                  "musescore-general-soundfont"),
    SoundfontInfo("csound", "/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
    SoundfontInfo("timgm6mb", "/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont",
                  held_out=True),
    SoundfontInfo("opl3", "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont",
                  held_out=True),
)}

#: The soundfonts of the timbre-diverse training builds.
TRAINING_SOUNDFONTS: tuple[str, ...] = ("fluidr3", "musescore", "csound")
#: Never trained on: the unseen-timbre evaluation renders.
HELD_OUT_SOUNDFONTS: tuple[str, ...] = tuple(n for n, s in SOUNDFONTS.items() if s.held_out)


def resolve_soundfont(name_or_path: str) -> str:
    """The file of a soundfont given by registry name or path; a one-line
    :class:`DependencyError` with the package to install when it is missing."""
    info = SOUNDFONTS.get(name_or_path)
    path = Path(info.path if info else name_or_path)
    if not path.is_file():
        hint = (f"install it with: sudo apt-get install {info.package}" if info else
                f"known names: {', '.join(SOUNDFONTS)}")
        raise DependencyError(f"soundfont {name_or_path} not found ({path}); {hint}")
    return str(path)


def soundfont_name(path_or_name: str) -> str:
    """The registry name of a soundfont file (or the file name when it is not registered)."""
    if path_or_name in SOUNDFONTS:
        return path_or_name
    resolved = Path(path_or_name).resolve()
    for info in SOUNDFONTS.values():
        if Path(info.path).resolve() == resolved:
            return info.name
    return Path(path_or_name).name


def check_trainable(names: tuple[str, ...] | list[str]) -> None:
    """Refuse held-out soundfonts in a build that models will train on."""
    held = [n for n in names if soundfont_name(n) in HELD_OUT_SOUNDFONTS]
    if held:
        raise InstructMEError(
            f"soundfont {', '.join(held)} is held out for unseen-timbre evaluation and never "
            "used for training data (use 'instructme data render-eval' for evaluation sets)")
