"""The project's vocabulary: instrument classes, styles and tasks (the single source of them).

Instructions (:mod:`instructme.instructions`), the procedural music, dataset building, the
classifier's heads and the metrics all name instruments, styles and tasks with these lists.
General MIDI programs (0-127) map to instrument classes by GM family; dataset loaders
(Slakh2100 class names, MUSDB18 stem names) map onto the same classes. Synonyms let
instructions say "keys", "violins", "sax", "beat", "edm", "salsa", ...
"""

from __future__ import annotations

#: Edit tasks (InstructME, arXiv 2308.14360, Sec. 3.1): the ``task`` of every instruction.
TASKS: tuple[str, ...] = ("add", "remove", "extract", "replace", "remix", "multiround")

#: Instrument classes, in a fixed order (classifier outputs use this order).
INSTRUMENT_CLASSES: tuple[str, ...] = (
    "piano", "mallets", "organ", "guitar", "bass", "strings", "choir", "brass",
    "woodwinds", "synth_lead", "synth_pad", "drums", "vocals",
)

#: Human-readable names used in generated instructions.
DISPLAY_NAMES: dict[str, str] = {
    "piano": "piano", "mallets": "mallets", "organ": "organ", "guitar": "guitar",
    "bass": "bass", "strings": "strings", "choir": "choir", "brass": "brass",
    "woodwinds": "woodwinds", "synth_lead": "synth lead", "synth_pad": "synth pad",
    "drums": "drums", "vocals": "vocals",
}

#: Synonyms (lower case) -> class. Multi-word synonyms are matched before single words.
SYNONYMS: dict[str, str] = {
    # piano
    "piano": "piano", "pianos": "piano", "keys": "piano", "keyboard": "piano",
    "electric piano": "piano", "e piano": "piano", "rhodes": "piano", "grand piano": "piano",
    "harpsichord": "piano", "clavinet": "piano",
    # mallets / chromatic percussion
    "mallets": "mallets", "mallet": "mallets", "vibraphone": "mallets", "vibes": "mallets",
    "marimba": "mallets", "xylophone": "mallets", "glockenspiel": "mallets",
    "celesta": "mallets", "bells": "mallets", "chromatic percussion": "mallets",
    # organ
    "organ": "organ", "organs": "organ", "hammond": "organ", "church organ": "organ",
    "accordion": "organ", "harmonica": "organ",
    # guitar
    "guitar": "guitar", "guitars": "guitar", "acoustic guitar": "guitar",
    "electric guitar": "guitar", "distorted guitar": "guitar", "nylon guitar": "guitar",
    "rhythm guitar": "guitar",
    # bass
    "bass": "bass", "bassline": "bass", "bass line": "bass", "bass guitar": "bass",
    "electric bass": "bass", "synth bass": "bass", "upright bass": "bass",
    "double bass": "bass", "low end": "bass",
    # strings
    "strings": "strings", "string": "strings", "string section": "strings",
    "violin": "strings", "violins": "strings", "viola": "strings", "cello": "strings",
    "cellos": "strings", "fiddle": "strings", "orchestra strings": "strings",
    "harp": "strings",
    # choir
    "choir": "choir", "choirs": "choir", "voices": "choir", "ooh": "choir",
    "aahs": "choir", "chorus voices": "choir",
    # brass
    "brass": "brass", "brass section": "brass", "horns": "brass", "horn": "brass",
    "trumpet": "brass", "trumpets": "brass", "trombone": "brass", "trombones": "brass",
    "tuba": "brass", "french horn": "brass",
    # woodwinds (GM reed + pipe)
    "woodwinds": "woodwinds", "woodwind": "woodwinds", "winds": "woodwinds",
    "flute": "woodwinds", "flutes": "woodwinds", "clarinet": "woodwinds",
    "oboe": "woodwinds", "bassoon": "woodwinds", "sax": "woodwinds",
    "saxophone": "woodwinds", "recorder": "woodwinds", "piccolo": "woodwinds",
    # synth lead
    "synth lead": "synth_lead", "lead synth": "synth_lead", "synth_lead": "synth_lead",
    "lead": "synth_lead", "synth": "synth_lead", "synthesizer": "synth_lead",
    # synth pad
    "synth pad": "synth_pad", "pad": "synth_pad", "pads": "synth_pad",
    "synth_pad": "synth_pad", "ambient pad": "synth_pad", "warm pad": "synth_pad",
    # drums
    "drums": "drums", "drum": "drums", "drum kit": "drums", "percussion": "drums",
    "beat": "drums", "beats": "drums", "groove": "drums", "kit": "drums",
    "rhythm section drums": "drums",
    # vocals
    "vocals": "vocals", "vocal": "vocals", "voice": "vocals", "singer": "vocals",
    "singing": "vocals", "lead vocals": "vocals",
}


#: Instrument name of stems no instruction can name (e.g. MUSDB18's "other"): such stems are
#: in every mix but never edited.
UNNAMED = "other"

#: Styles the procedural arranger renders, in its order (the remix vocabulary; the default
#: order of the classifier's style head).
STYLES: tuple[str, ...] = (
    "pop", "rock", "jazz", "funk", "ballad", "electronic", "latin", "orchestral", "reggae",
    "country", "bossa",
)

#: Broad styles instructions name; every style of :data:`STYLES` is one of these or one of
#: :data:`SUBSTYLES`.
KNOWN_STYLES: tuple[str, ...] = (
    "pop", "rock", "jazz", "funk", "ballad", "electronic", "latin", "orchestral", "country",
    "reggae",
)

#: Style words (lower case) -> style.
STYLE_SYNONYMS: dict[str, str] = {
    "pop": "pop", "poppy": "pop", "pop music": "pop",
    "rock": "rock", "hard rock": "rock", "rock n roll": "rock", "rock and roll": "rock",
    "rock'n'roll": "rock", "punk": "rock", "metal": "rock", "grunge": "rock",
    "jazz": "jazz", "jazzy": "jazz", "swing": "jazz", "bebop": "jazz", "big band": "jazz",
    "funk": "funk", "funky": "funk", "disco": "funk",
    "ballad": "ballad", "slow": "ballad", "slow ballad": "ballad", "power ballad": "ballad",
    "love song": "ballad",
    "electronic": "electronic", "electro": "electronic", "edm": "electronic",
    "techno": "electronic", "house": "electronic", "dance": "electronic",
    "electronica": "electronic", "trance": "electronic", "synthwave": "electronic",
    "latin": "latin", "latino": "latin", "latin jazz": "latin", "bossa": "latin",
    "bossa nova": "latin", "salsa": "latin", "samba": "latin", "cumbia": "latin",
    "reggaeton": "latin", "tango": "latin",
    "orchestral": "orchestral", "classical": "orchestral", "symphonic": "orchestral",
    "orchestra": "orchestral", "symphony": "orchestral", "cinematic": "orchestral",
    "country": "country", "country music": "country", "bluegrass": "country",
    "western": "country", "country and western": "country",
    "reggae": "reggae", "ska": "reggae", "dub": "reggae", "dancehall": "reggae",
}

#: Styles that are synonyms of a broader one unless the arranger renders them on their own
#: (then their words resolve to them): style -> its words.
SUBSTYLES: dict[str, tuple[str, ...]] = {"bossa": ("bossa", "bossa nova", "bossanova")}


def program_to_class(program: int, is_drum: bool = False) -> str | None:
    """General MIDI program (0-127) -> instrument class; ``None`` for sound effects."""
    if is_drum:
        return "drums"
    if not 0 <= program <= 127:
        raise ValueError(f"GM program out of range: {program}")
    family = program // 8
    if family == 0:
        return "piano"
    if family == 1:
        return "mallets"
    if family == 2:
        return "organ"
    if family == 3:
        return "guitar"
    if family == 4:
        return "bass"
    if family == 5:  # solo strings
        return "strings"
    if family == 6:  # ensemble: string ensembles (48-51), choir (52-54), orchestra hit (55)
        if 52 <= program <= 54:
            return "choir"
        return "strings"
    if family == 7:
        return "brass"
    if family in (8, 9):  # reed, pipe
        return "woodwinds"
    if family == 10:
        return "synth_lead"
    if family == 11:
        return "synth_pad"
    if family == 13 and program in (104, 105, 106, 107):  # sitar, banjo, shamisen, koto
        return "guitar"
    if family == 13 and program == 110:  # fiddle
        return "strings"
    if family == 13 and program in (109, 111):  # bagpipe, shanai
        return "woodwinds"
    if family == 14 and program in (112, 113, 114):  # tinkle bell, agogo, steel drums
        return "mallets"
    return None


def resolve_instrument(name: str) -> str | None:
    """Synonym or class name (any case, extra spaces) -> class, or ``None`` if unknown."""
    key = " ".join(name.lower().replace("-", " ").replace("_", " ").split())
    if key in SYNONYMS:
        return SYNONYMS[key]
    key_us = key.replace(" ", "_")
    if key_us in INSTRUMENT_CLASSES:
        return key_us
    if key.endswith("s") and key[:-1] in SYNONYMS:
        return SYNONYMS[key[:-1]]
    return None
