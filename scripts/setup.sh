#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (no GPU):
#   - Debian packages (FluidSynth, the General MIDI soundfont, libsndfile, ffmpeg) when missing,
#   - a virtual environment in .venv with the CPU build of torch 2.13.0,
#   - this package with its dev extras (editable).
# A second run reuses everything: it only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
ldconfig -p 2>/dev/null | grep -q libsndfile.so || need_apt+=(libsndfile1)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# timbre-diverse data (MuseScore General, csound's GM bank) and two held-out soundfonts (TimGM6mb, OPL3)
[ -f /usr/share/sounds/sf3/MuseScore_General.sf3 ] || need_apt+=(musescore-general-soundfont)
[ -f /usr/share/sounds/sf2/sf_GMbank.sf2 ] || need_apt+=(csound-soundfont)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need_apt+=(timgm6mb-soundfont)
[ -f /usr/share/sounds/sf2/OPL-3_FM_128M.sf2 ] || need_apt+=(opl3-soundfont)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)          # web studio browser test
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp_want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
stamp_have=$(cat .venv/.setup-stamp 2>/dev/null || true)
if [ "$stamp_want" != "$stamp_have" ]; then
  echo "[setup] installing torch==2.13.0 (CPU) and instructme[dev]"
  pipq() { .venv/bin/python -m pip install -q "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
  pipq --upgrade pip
  pipq torch==2.13.0
  pipq -e ".[dev,eval]"
  .venv/bin/python -c "import torch, instructme" || { echo "[setup] install failed" >&2; exit 1; }
  echo "$stamp_want" > .venv/.setup-stamp
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, instructme; print("torch", torch.__version__, "| instructme", instructme.__version__)')"
