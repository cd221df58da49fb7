"""The layering rules of docs/ARCHITECTURE.md hold, and the docs name only files that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "instructme"

#: layer -> layers it must not import (docs/ARCHITECTURE.md, "Layers", the rules marked).
FORBIDDEN = {
    "music": {"models", "dataset", "training", "editing", "metrics", "web", "commands"},
    "models": {"dataset", "training", "editing", "metrics", "web", "commands", "music"},
    "editing": {"dataset", "training", "web", "commands", "music"},
    "training": {"editing", "web", "commands"},
    "instructions": {"dataset", "music", "models", "training", "editing", "metrics"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "instructme"


def imports_by_layer() -> dict[str, set[tuple[str, str]]]:
    """layer -> {(importing module, imported module)} over the package, local imports too."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("instructme."):
                    found.setdefault(_layer(module), set()).add((module, name))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    bad = sorted((a, b) for a, b in imports_by_layer().get(layer, set())
                 if _layer(b) in FORBIDDEN[layer])
    assert not bad, bad


def test_one_training_loop() -> None:
    """Only the shared trainer calls ``accelerator.backward`` in a loop over steps, and no
    module but it installs signal handlers or writes the run log."""
    for path in (PACKAGE / "training").glob("*.py"):
        text = path.read_text()
        if path.name == "trainer.py":
            continue
        assert "signal.signal" not in text, path
        assert '"logs.jsonl"' not in text and '"train_log.jsonl"' not in text, path
        assert "save_state(" not in text and "load_state(str" not in text, path


def test_docs_name_only_files_that_exist() -> None:
    docs = [ROOT / "docs" / "ARCHITECTURE.md", ROOT / "README.md"]
    for doc in docs:
        text = doc.read_text()
        for ref in re.findall(r"`((?:[\w-]+/)+[\w-]+\.(?:py|md|json|jsonl|flac|png))`", text):
            top = ref.split("/")[0]
            if "NNN" in ref or top == "runs" or not ((ROOT / top).is_dir()
                                                       or (PACKAGE / top).is_dir()):
                continue  # a pattern, or a folder the user or a build makes
            assert (ROOT / ref).exists() or (PACKAGE / ref).exists(), f"{doc.name}: {ref}"
    for path in PACKAGE.rglob("*.py"):
        assert "DESIGN.md" not in path.read_text(), path
