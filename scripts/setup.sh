#!/usr/bin/env bash
# Prepares a fresh Debian bookworm machine for temper's build and tests (as root, or a user
# with passwordless sudo for apt): Debian packages, npm packages (which builds the native
# engine), the Temporal CLI dev server (built once per machine from its Go module), the
# Python reference environment (PyTorch, transformers, PEFT) and the TypeScript build.
# Safe to rerun: every step skips what is already there. Run: `bash scripts/setup.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
export npm_config_yes=true

step() { printf '\n=== %s\n' "$*"; }

# System packages the build and the tests need. Add to this list, one package a line.
APT_PACKAGES=(
  build-essential      # g++/make for the native engine (scripts/build-native.mjs)
  g++
  python3-venv         # the Python reference environment below
  libopenblas0-pthread # OpenBLAS runtime, pthreads build
)

step "apt packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]} > 0)); then
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo -n); fi
  echo "installing: ${missing[*]}"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
else
  echo "all present: ${APT_PACKAGES[*]}"
fi

step "npm ci"
npm ci

step "Temporal CLI (dev server)"
# Built once per machine into ${TEMPER_TEMPORAL_BIN_DIR:-~/.cache/temper/bin}; see
# specs/temporal.md. The tests find it there (src/orchestration/temporal-binary.ts).
bash scripts/install-temporal.sh

step "Python reference environment"
PYREF_VENV="$HOME/.cache/temper/pyref"
PYREF_REQUIREMENTS=scripts/reference/requirements.txt
if [[ -f $PYREF_REQUIREMENTS ]]; then
  if [[ ! -x $PYREF_VENV/bin/python ]]; then
    python3 -m venv "$PYREF_VENV"
  fi
  # pip keeps its download/wheel cache (~/.cache/pip), so reruns are quick.
  "$PYREF_VENV/bin/python" -m pip install -q -r "$PYREF_REQUIREMENTS"
  echo "venv: $PYREF_VENV"
else
  echo "no $PYREF_REQUIREMENTS; skipped"
fi

step "npm run build"
npm run build
