"""Which models a report uses: defaults, n/a reasons, the madmom shim and its absence."""

from __future__ import annotations

import pytest

from instructme.errors import DependencyError, InstructMEError
from instructme.metrics import madmom_models
from instructme.metrics.report import build_analyzers


def test_no_models_gives_reasons(monkeypatch):
    monkeypatch.setattr(madmom_models, "madmom_available", lambda: False)
    an = build_analyzers()
    assert [e.name for e in an.embedders] == ["logmel-stats"]
    assert an.chord is None and an.classifier is None
    assert "madmom is not installed" in an.na["cra"] and "pip install" in an.na["cra"]
    assert an.na["cra_score"] == an.na["cra"]
    assert "madmom is not installed" in an.na["fad:madmom-cnn-chord"]
    assert an.na["ia"] == "no classifier (--classifier none)"


def test_chord_model_none_and_explicit_embeddings():
    an = build_analyzers(chord_model="none", embeddings=["logmel-stats"])
    assert an.chord is None and "disabled" in an.na["cra"]
    with pytest.raises(InstructMEError, match="needs --classifier"):
        build_analyzers(chord_model="none", embeddings=["classifier"])
    with pytest.raises(InstructMEError, match="unknown embedding"):
        build_analyzers(chord_model="none", embeddings=["openl3"])


def test_missing_model_folders_are_one_line_errors(tmp_path):
    with pytest.raises(InstructMEError) as e:
        build_analyzers(chord_model=str(tmp_path / "nope"))
    assert "\n" not in str(e.value)
    with pytest.raises(InstructMEError):
        build_analyzers(chord_model="none", classifier_dir=str(tmp_path / "nope"))


def test_import_madmom_without_any_distribution(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "madmom", raising=False)
    monkeypatch.setattr(madmom_models, "_installed_distribution", lambda: None)
    with pytest.raises(DependencyError, match="madmom is not installed"):
        madmom_models.import_madmom()


@pytest.mark.skipif(not madmom_models.madmom_available(), reason="madmom not installed")
def test_default_uses_one_shared_madmom_model():
    an = build_analyzers()
    names = [e.name for e in an.embedders]
    assert names == ["logmel-stats", "madmom-cnn-chord"]
    assert an.chord is an.embedders[1].model  # one CNN pass serves FAD and CRA
    assert "madmom" in an.chord_description and "cra" not in an.na
    mm = madmom_models.import_madmom()
    assert mm.__version__  # the version look-up works through the shim
