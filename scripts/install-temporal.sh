#!/usr/bin/env bash
# Builds the Temporal CLI (which embeds the SQLite-backed dev server) from its Go module,
# once per machine, as specs/temporal.md describes, into
#   ${TEMPER_TEMPORAL_BIN_DIR:-$HOME/.cache/temper/bin}/temporal
# and prints where it is. Does nothing when a v1.5.1 binary is already there.
#
# Needs Go >= 1.25 (the CLI's go.mod) and the Go module proxy; nothing else.
# A cold build takes a few minutes; later builds reuse Go's module and build caches.
set -euo pipefail

CLI_MODULE=github.com/temporalio/cli
CLI_VERSION=1.5.1
BIN_DIR="${TEMPER_TEMPORAL_BIN_DIR:-$HOME/.cache/temper/bin}"
BIN="$BIN_DIR/temporal"

log() { printf 'install-temporal: %s\n' "$*" >&2; }

# Is $1 a build of the CLI at CLI_VERSION? A release-style build says so in --version (we
# stamp it below); an unstamped `go install` says 0.0.0-DEV, so also read the module version
# Go records in every binary (kept by -s -w).
is_wanted() {
  local bin=$1
  [[ -x $bin ]] || return 1
  if "$bin" --version 2>/dev/null | grep -q "^temporal version ${CLI_VERSION} "; then
    return 0
  fi
  if command -v go >/dev/null 2>&1 &&
    go version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+${CLI_MODULE}[[:space:]]+v${CLI_VERSION}[[:space:]]"; then
    return 0
  fi
  return 1
}

done_msg() {
  log "$("$BIN" --version 2>/dev/null || echo temporal) at $BIN"
  echo "$BIN"
}

if [[ -z "$(command -v go || true)" && -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi

if is_wanted "$BIN"; then
  done_msg
  exit 0
fi

mkdir -p "$BIN_DIR"
# One build at a time per bin dir; a second caller waits, then finds the binary.
exec 9>"$BIN_DIR/.install-temporal.lock"
if command -v flock >/dev/null 2>&1; then
  if ! flock -n 9; then
    log "another install is running; waiting for it ($BIN_DIR/.install-temporal.lock)"
    flock 9
  fi
  if is_wanted "$BIN"; then
    done_msg
    exit 0
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed. Install Go >= 1.25 (https://go.dev/dl/), then run this again."
  exit 1
fi
go_minor=$(go env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')
if [[ -z ${GOTOOLCHAIN:-} && ${go_minor:-0} -lt 25 ]]; then
  log "Go $(go env GOVERSION) is too old: the Temporal CLI v${CLI_VERSION} needs Go >= 1.25."
  log "Install a newer Go, or run with GOTOOLCHAIN=go1.25.0 to let Go fetch that toolchain from the module proxy."
  exit 1
fi

log "building ${CLI_MODULE}/cmd/temporal@v${CLI_VERSION} with $(go env GOVERSION) (a cold build takes a few minutes)"
start=$(date +%s)
stage=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# As in specs/temporal.md, plus the version stamp the CLI's release builds (goreleaser) use,
# so that `temporal --version` reports ${CLI_VERSION} instead of 0.0.0-DEV.
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 GOBIN="$stage" go install -trimpath \
  -ldflags "-s -w -X ${CLI_MODULE}/temporalcli.Version=${CLI_VERSION}" \
  "${CLI_MODULE}/cmd/temporal@v${CLI_VERSION}"
# Move into place in one step so that no reader ever sees a half-written binary.
mv -f "$stage/temporal" "$BIN"
if ! is_wanted "$BIN"; then
  log "built $BIN but it does not report v${CLI_VERSION}: $("$BIN" --version 2>&1 || true)"
  exit 1
fi
log "built in $(($(date +%s) - start)) s"
done_msg
