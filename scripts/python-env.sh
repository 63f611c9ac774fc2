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

# Venvs of NAME's earlier pins (another hash) that no run has asked for in a week are removed:
# each is hundreds of MB to GB, and a checkout with other pins still in use keeps its own
# fresh by asking for it (the touch below).
prune_stale() {
  local other
  for other in "$root/$name"-*; do
    # NAME-<12 hex> only: another env's name may start with this one's.
    [[ -d $other && $other != "$venv" && ${other##*/} =~ ^$name-[0-9a-f]{12}$ ]] || continue
    if [[ -f $other/.complete ]]; then
      [[ -n $(find "$other/.complete" -mtime -7) ]] && continue
    else
      # Unfinished: maybe being built right now by another checkout; gone after a day.
      [[ -n $(find "$other" -maxdepth 0 -mtime -1) ]] && continue
    fi
    rm -rf "$other"
  done
}

if [[ -f $venv/.complete ]]; then
  touch "$venv/.complete"
  prune_stale
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
prune_stale
echo "$venv"
