#!/usr/bin/env bash
# Builds (once) the pinned Python environment NAME from scripts/python-envs/NAME.txt and prints
# its path. The venv lives at ${TEMPER_VENV_DIR:-~/.cache/temper/venvs}/NAME-<hash>, where
# <hash> is the first 12 hex digits of the requirements file's sha256: editing the pins makes a
# new venv instead of mutating one a running test may use, and an unchanged file costs nothing.
# test/support/python-env.ts computes the same path. Run: `bash scripts/python-env.sh NAME`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

name=${1:?usage: python-env.sh NAME (one of: $(cd scripts/python-envs && ls *.txt | sed 's/\.txt$//' | tr '\n' ' '))}
requirements="scripts/python-envs/$name.txt"
[[ -f $requirements ]] || { echo "python-env: no $requirements" >&2; exit 1; }

hash=$(sha256sum "$requirements" | cut -c1-12)
root="${TEMPER_VENV_DIR:-$HOME/.cache/temper/venvs}"
venv="$root/$name-$hash"
if [[ -f $venv/.complete ]]; then
  echo "$venv"
  exit 0
fi

# Built in place (a venv's scripts name their interpreter by absolute path); `.complete` is
# written last, so an interrupted build is rebuilt from scratch on the next run.
mkdir -p "$root"
rm -rf "$venv"
python3 -m venv "$venv" >&2
# pip keeps its download/wheel cache (~/.cache/pip), so a rebuild after a pin change is quick.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
touch "$venv/.complete"
echo "$venv"
