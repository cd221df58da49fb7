"""Growing a trained classifier wider (Net2Wider): same function, symmetry broken, refusals,
and the trainer / CLI path (``train classifier --init M --channels ... --embed-dim ...``)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from synth_songs import make_dataset

from instructme.checkpoint import load_model
from instructme.cli import main
from instructme.errors import CheckpointError
from instructme.models.classifier import ClassifierConfig, InstrumentClassifier
from instructme.models.classifier_grow import can_grow, grow_classifier
from instructme.training.classifier import train_classifier


def _trained_tiny(seed: int = 0) -> InstrumentClassifier:
    """A tiny classifier with non-trivial batch-norm statistics (as after training)."""
    torch.manual_seed(seed)
    model = InstrumentClassifier(dataclasses.replace(ClassifierConfig.preset("tiny"),
                                                     channels=(8, 16, 16)))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 8000) * 0.3)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_grown_model_computes_the_same_function():
    src = _trained_tiny()
    cfg = dataclasses.replace(src.config, channels=(8, 24, 48), embed_dim=48)
    dst = grow_classifier(src, cfg, noise=0.05)
    assert dst.config.channels == (8, 24, 48) and dst.config.embed_dim == 48
    assert sum(p.numel() for p in dst.parameters()) > 2 * sum(p.numel() for p in src.parameters())
    x = torch.randn(3, 12000) * 0.2
    a, b = src(x), dst(x)
    for k in ("instruments", "style"):
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    assert a["instruments"].abs().max() > 0.1  # not a trivially zero output
    assert b["embedding"].shape == (3, 48)
    # batch statistics (train mode) are preserved too: copies share statistics
    src.train(), dst.train()
    src.drop.p = dst.drop.p = 0.0
    assert torch.allclose(src(x)["instruments"], dst(x)["instruments"], atol=1e-4)


def test_copies_get_different_gradients():
    src = _trained_tiny()
    dst = grow_classifier(src, dataclasses.replace(src.config, channels=(8, 16, 32)))
    dst.train()
    dst(torch.randn(4, 12000) * 0.2)["instruments"].sum().backward()
    w = dst.cnn[2][0].weight  # last block, first conv: outputs 16..31 copy outputs 0..15
    grad = w.grad.flatten(1)
    # each new unit is a copy of an old one with the same weights, but its gradient differs
    pairs = [(j, i) for j in range(16, 32) for i in range(16) if torch.equal(w[j], w[i])]
    assert len(pairs) == 16, "every new unit starts as a copy of an old one"
    assert all(not torch.allclose(grad[j], grad[i]) for j, i in pairs)


def test_refuses_what_cannot_grow():
    src = _trained_tiny()
    cases = {
        "shrink": dataclasses.replace(src.config, channels=(8, 8, 16)),
        "conv blocks": dataclasses.replace(src.config, channels=(8, 16, 16, 32)),
        "n_mels": dataclasses.replace(src.config, n_mels=64),
        "embedding": dataclasses.replace(src.config, embed_dim=8),
    }
    for word, cfg in cases.items():
        why = can_grow(src.config, cfg)
        assert why is not None and word in why, (word, why)
        with pytest.raises(CheckpointError, match="cannot grow"):
            grow_classifier(src, cfg)
    assert can_grow(src.config, src.config) is None


def test_train_classifier_grows_its_init(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_classifier(data, base, preset="tiny", steps=2, log=lambda s: None)
    out = tmp_path / "wide"
    lines: list[str] = []
    train_classifier(data, out, preset="tiny", steps=1, init=base, lr=1e-12,
                     channels=(16, 16), embed_dim=48, log=lines.append)
    assert any(line.startswith("grew ") for line in lines)
    # train mode: batch statistics (the one step moved the running ones); tiny has no dropout
    wide = load_model(InstrumentClassifier, out).train()
    small = load_model(InstrumentClassifier, base).train()
    assert wide.config.channels == (16, 16) and wide.config.embed_dim == 48
    x = torch.randn(2, 16000) * 0.2
    assert torch.allclose(wide(x)["instruments"], small(x)["instruments"], atol=1e-3)
    # a fresh model takes the widths directly
    train_classifier(data, tmp_path / "fresh", preset="tiny", steps=1, channels=(4, 12),
                     log=lambda s: None)
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["channels"] == [4, 12]

    for argv, word in (
        (["--init", str(base), "--channels", "4,4"], "shrink"),
        (["--init", str(base), "--channels", "16,16,16"], "conv blocks"),
        (["--channels", "16,0"], "positive"),
        (["--embed-dim", "0"], "positive"),
        (["--resume", "--out", str(out), "--channels", "16,16"], "--resume"),
    ):
        target = [] if "--out" in argv else ["--out", str(tmp_path / "never")]
        rc = main(["train", "classifier", "--data", str(data), "--preset", "tiny", "--steps",
                   "1", *target, *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1, argv
        assert word in err, (argv, err)
    assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit):  # argparse: not a list of integers
        main(["train", "classifier", "--data", str(data), "--out", str(tmp_path / "n"),
              "--channels", "16,x"])
