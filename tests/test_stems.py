"""Multitrack loaders on tiny fixtures in each layout (Slakh2100, MUSDB18, stem folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from instructme.dataset.stems import (
    StemSong,
    detect_layout,
    instrument_from_name,
    load_musdb,
    load_slakh,
    load_stem_folder,
    load_stems,
)
from instructme.errors import ManifestError

SR = 16_000


def _audio(path: Path, seconds: float = 0.05) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.sin(np.linspace(0, 100, int(SR * seconds))).astype(np.float32)
    sf.write(str(path), x, SR)
    return path


def _slakh_track(track: Path, stems: dict[str, dict], files: list[str],
                 mix: str | None = "mix.flac") -> Path:
    track.mkdir(parents=True, exist_ok=True)
    meta = {"UUID": "abc", "audio_dir": "stems", "normalization_factor": -13.0,
            "stems": stems}
    (track / "metadata.yaml").write_text(yaml.safe_dump(meta))
    for f in files:
        _audio(track / "stems" / f)
    if mix:
        _audio(track / mix)
    return track


def _stem(inst_class: str, program: int | None, is_drum: bool = False,
          rendered: bool = True) -> dict:
    d = {"inst_class": inst_class, "is_drum": is_drum, "audio_rendered": rendered,
         "midi_saved": True, "plugin_name": "x.nkm"}
    if program is not None:
        d["program_num"] = program
    return d


@pytest.fixture
def slakh(tmp_path: Path) -> Path:
    root = tmp_path / "slakh2100"
    _slakh_track(root / "train" / "Track00001", {
        "S00": _stem("Piano", 0),
        "S01": _stem("Drums", 128, is_drum=True),
        "S02": _stem("Guitar", 30, rendered=False),       # not rendered: skipped
        "S03": _stem("Bass", 33),                         # file missing: skipped
        "S04": _stem("Strings (continued)", 53),          # Voice Oohs -> choir
        "S05": _stem("Sound Effects", 122),               # seashore -> unmappable
        "S06": _stem("Reed", None),                       # no program: inst_class
        "S07": _stem("Synth Pad", 999),                   # bad program: inst_class
    }, ["S00.flac", "S01.flac", "S02.flac", "S04.flac", "S05.flac", "S06.flac", "S07.flac"])
    _slakh_track(root / "test" / "Track01876", {
        "S00": _stem("Bass", 34), "S01": _stem("Synth Lead", 81),
    }, ["S00.wav", "S01.wav"], mix=None)
    return root


def test_slakh(slakh: Path):
    songs = load_slakh(slakh)
    assert [s.song_id for s in songs] == ["Track01876", "Track00001"]  # test/ sorts first
    test, train = songs
    assert (train.split, test.split) == ("train", "test")
    assert train.mixture == slakh / "train" / "Track00001" / "mix.flac"
    assert test.mixture is None
    got = {s.name: s.instrument for s in train.stems}
    assert got == {"S00": "piano", "S01": "drums", "S04": "choir", "S05": None,
                   "S06": "woodwinds", "S07": "synth_pad"}
    s01 = next(s for s in train.stems if s.name == "S01")
    assert s01.is_drum and s01.program == 128 and s01.path.is_file()
    assert {s.name: s.instrument for s in test.stems} == {"S00": "bass", "S01": "synth_lead"}
    assert test.stems[0].path.suffix == ".wav"
    assert train.meta["UUID"] == "abc"
    assert set(train.by_instrument()) == {"piano", "drums", "choir", "woodwinds", "synth_pad"}


def test_slakh_split_and_track_roots(slakh: Path):
    assert [s.song_id for s in load_slakh(slakh / "train")] == ["Track00001"]
    one = load_slakh(slakh / "test" / "Track01876")
    assert len(one) == 1 and one[0].split is None and len(one[0].stems) == 2
    assert detect_layout(slakh) == "slakh"
    assert [s.song_id for s in load_stems(slakh)] == [s.song_id for s in load_slakh(slakh)]


def test_slakh_duplicate_ids_across_splits(tmp_path: Path):
    for split in ("train", "validation"):
        _slakh_track(tmp_path / split / "Track00001", {"S00": _stem("Piano", 0)}, ["S00.flac"])
    ids = sorted(s.song_id for s in load_slakh(tmp_path))
    assert ids == ["train/Track00001", "validation/Track00001"]


def test_slakh_errors(tmp_path: Path, slakh: Path):
    with pytest.raises(ManifestError, match="not found"):
        load_slakh(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no Slakh2100 tracks"):
        load_slakh(tmp_path / "empty")
    bad = slakh / "train" / "Track00001" / "metadata.yaml"
    bad.write_text("stems: {S00: [unclosed\n")
    with pytest.raises(ManifestError, match="Track00001.metadata.yaml: malformed") as e:
        load_slakh(slakh)
    assert "\n" not in str(e.value)
    bad.write_text("UUID: abc\n")
    with pytest.raises(ManifestError, match="no 'stems' mapping"):
        load_slakh(slakh)
    bad.write_text("stems:\n  S00: 3\n")
    with pytest.raises(ManifestError, match="S00 is not a mapping"):
        load_slakh(slakh)
    # Tracks with no rendered audio at all.
    _slakh_track(tmp_path / "silent" / "Track00009", {"S00": _stem("Piano", 0)}, [])
    with pytest.raises(ManifestError, match="no rendered stems"):
        load_slakh(tmp_path / "silent")


@pytest.fixture
def musdb(tmp_path: Path) -> Path:
    root = tmp_path / "musdb18hq"
    for name in ("mixture", "drums", "bass", "vocals", "other"):
        _audio(root / "train" / "A Classic Song" / f"{name}.wav")
    for name in ("mixture", "drums", "vocals"):
        _audio(root / "test" / "Another - Song" / f"{name}.wav")
    (root / "test" / ".DS_Store").mkdir()
    return root


def test_musdb(musdb: Path):
    songs = load_musdb(musdb)
    assert [(s.song_id, s.split) for s in songs] == [("A Classic Song", "train"),
                                                     ("Another - Song", "test")]
    a, b = songs
    assert {s.name: s.instrument for s in a.stems} == {
        "drums": "drums", "bass": "bass", "vocals": "vocals", "other": None}
    assert a.mixture == musdb / "train" / "A Classic Song" / "mixture.wav"
    assert [s.name for s in b.stems] == ["drums", "vocals"]
    assert detect_layout(musdb) == "musdb"
    assert len(load_stems(musdb, "auto")) == 2
    # One split folder on its own.
    assert [s.song_id for s in load_musdb(musdb / "test")] == ["Another - Song"]


def test_musdb_errors(tmp_path: Path):
    (tmp_path / "m" / "train").mkdir(parents=True)
    (tmp_path / "m" / "train" / "Song.stem.mp4").write_bytes(b"\0")
    with pytest.raises(ManifestError, match="stem.mp4"):
        load_musdb(tmp_path / "m")
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match="no MUSDB18 songs"):
        load_musdb(tmp_path / "e")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "mysongs"
    for f in ("Piano.wav", "drums_1.flac", "drums_2.flac", "bass-di.wav", "mix.wav",
              "other.ogg", "Lead Vocals.mp3", "piano.flac"):
        _audio(root / "song one" / f)
    (root / "song one" / "notes.txt").write_text("not audio")
    _audio(root / "song two" / "guitar_lead.wav")
    _audio(root / "song two" / "MIXTURE.flac")
    _audio(root / "only a mix" / "mix.wav")  # no stems: not a song
    (root / "empty").mkdir()
    return root


def test_stem_folder(folder: Path):
    songs = load_stem_folder(folder)
    assert [s.song_id for s in songs] == ["song one", "song two"]
    one, two = songs
    got = {s.name: s.instrument for s in one.stems}
    assert got == {"Lead Vocals": "vocals", "Piano": "piano", "bass-di": "bass",
                   "drums_1": "drums", "drums_2": "drums", "other": None,
                   "piano": "piano"}
    assert one.mixture == folder / "song one" / "mix.wav"
    counts = {k: len(v) for k, v in one.by_instrument().items()}
    assert counts == {"vocals": 1, "piano": 2, "bass": 1, "drums": 2}
    assert {s.name: s.instrument for s in two.stems} == {"guitar_lead": "guitar"}
    assert two.mixture is not None and two.mixture.name == "MIXTURE.flac"
    assert detect_layout(folder) == "folder"
    assert [s.song_id for s in load_stems(folder)] == ["song one", "song two"]


def test_stem_folder_single_song_and_duplicates(tmp_path: Path):
    _audio(tmp_path / "s" / "strings.wav")
    _audio(tmp_path / "s" / "strings.flac")
    songs = load_stem_folder(tmp_path / "s")
    assert len(songs) == 1 and songs[0].song_id == "s" and songs[0].mixture is None
    assert sorted(x.name for x in songs[0].stems) == ["strings", "strings.wav"]


def test_stem_folder_errors(tmp_path: Path):
    _audio(tmp_path / "two" / "a" / "mix.wav")
    _audio(tmp_path / "two" / "a" / "mixture.wav")
    _audio(tmp_path / "two" / "a" / "piano.wav")
    with pytest.raises(ManifestError, match="two mixture files"):
        load_stem_folder(tmp_path / "two")
    (tmp_path / "none" / "x").mkdir(parents=True)
    with pytest.raises(ManifestError, match="no songs"):
        load_stem_folder(tmp_path / "none")
    f = _audio(tmp_path / "file.wav")
    with pytest.raises(ManifestError, match="is a file"):
        load_stems(f)
    with pytest.raises(ManifestError, match="not found"):
        load_stems(tmp_path / "missing")
    with pytest.raises(ManifestError, match="unknown stem layout 'medley'.*slakh"):
        load_stems(tmp_path, layout="medley")


@pytest.mark.parametrize("name, cls", [
    ("Piano", "piano"), ("drums_1", "drums"), ("bass-di", "bass"), ("LeadVocals", "vocals"),
    ("lead_guitar", "guitar"), ("guitar_lead", "guitar"), ("lead", "synth_lead"),
    ("SynthBass", "bass"), ("01_kick", "drums"), ("Overheads", "drums"),
    ("backing_vocals", "vocals"), ("Violins I", "strings"), ("keys 2", "piano"),
    ("other", None), ("click", None),
])
def test_instrument_from_name(name: str, cls: str | None):
    assert instrument_from_name(name) == cls


def test_stemsong_is_the_common_description(slakh: Path, musdb: Path, folder: Path):
    for root in (slakh, musdb, folder):
        for song in load_stems(root):
            assert isinstance(song, StemSong) and song.stems
            assert all(s.path.is_file() for s in song.stems)
            assert song.mixture is None or song.mixture.is_file()
