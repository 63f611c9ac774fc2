#!/usr/bin/env bash
# Builds temper's container images with Debian's Docker engine, from Debian packages only
# (no image is pulled: registries are out of reach here, and the base is ours to audit):
#   1. temper/debian:<hash>   Debian bookworm made by debootstrap (minbase) and `docker import`ed
#   2. temper/postgres:<hash> that base + Debian's PostgreSQL (docker/postgres.Dockerfile)
#   3. temper/temporal:<hash> that base + the Temporal CLI dev server setup.sh built
#                             (docker/temporal.Dockerfile)
#   4. temper/control-plane:<hash>, temper/worker:<hash>   docker/Dockerfile on that base
# Each tag is a content hash of what goes into it, and an image already there is not rebuilt,
# so a rerun on the same machine costs seconds; within a build, Docker's layer cache keeps
# `npm ci` while package.json and package-lock.json are unchanged.
#   bash scripts/docker-images.sh          build what is missing (downloads: setup.sh time)
#   bash scripts/docker-images.sh --check  build nothing; fail naming what is missing (the
#                                          test's fixture: nothing downloads at test time, and
#                                          BuildKit's cache of a step built with the network is
#                                          not used by a build without it, so an offline rebuild
#                                          could not reuse `npm ci`)
# Prints `KEY=VALUE` lines last (TEMPER_IMAGE_TAG, TEMPER_BASE_IMAGE, ...) for compose.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHECK=0
[[ ${1:-} == --check ]] && CHECK=1
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1
log() { printf 'docker-images: %s\n' "$*" >&2; }
has_image() { $DOCKER image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-16; }

bash scripts/docker-daemon.sh >/dev/null

# ---- 1. base: debootstrap -> docker import ------------------------------------------------
SUITE=bookworm
MIRROR=${TEMPER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# ca-certificates: TLS to object stores; the rest of what temper needs (libstdc++, util-linux's
# setpriv) is in minbase already.
BASE_PACKAGES=ca-certificates
# The certificate authorities this machine adds to Debian's (update-ca-certificates' local
# folder) are trusted in the images too: where HTTPS goes through an intercepting egress proxy,
# as here, the builds' downloads (npm, prebuilt addons) need its CA exactly as the host does.
LOCAL_CAS=(/usr/local/share/ca-certificates/*.crt)
[[ -e ${LOCAL_CAS[0]} ]] || LOCAL_CAS=()
BASE_TAG=temper/debian:$SUITE-$({ printf '%s\n' v2 "$SUITE" "$MIRROR" "$BASE_PACKAGES"; cat "${LOCAL_CAS[@]}" </dev/null; } | hash_of)
if has_image "$BASE_TAG"; then
  log "$BASE_TAG is there"
else
  ((CHECK)) && { log "$BASE_TAG is missing: run bash scripts/docker-images.sh (setup.sh does)"; exit 1; }
  command -v debootstrap >/dev/null || { log "debootstrap is missing (setup.sh installs it)"; exit 1; }
  started=$SECONDS
  root=$(mktemp -d /var/tmp/temper-debootstrap.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  if ((${#LOCAL_CAS[@]} > 0)); then
    cp "${LOCAL_CAS[@]}" "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # Smaller and reproducible-ish: no package lists or caches in the image (apt-get update
  # fetches lists again in the builds on top).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" --numeric-owner -c . | $DOCKER import \
    -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null
  rm -rf "$root"
  trap - EXIT
  log "$BASE_TAG made by debootstrap in $((SECONDS - started)) s"
fi

NETWORK=(--network host)

build() { # tag dockerfile context [args...]
  local tag=$1 file=$2 context=$3 started=$SECONDS
  shift 3
  if has_image "$tag"; then
    log "$tag is there"
    return
  fi
  if ((CHECK)); then
    log "$tag is missing (its inputs changed since the last build): run bash scripts/docker-images.sh (setup.sh does)"
    exit 1
  fi
  if ! $DOCKER build -q "${NETWORK[@]}" --build-arg "BASE_IMAGE=$BASE_TAG" -f "$file" -t "$tag" "$@" "$context" >/dev/null 2>"$STAGE/build.log"; then
    tail -n 40 "$STAGE/build.log" >&2
    log "building $tag failed"
    exit 1
  fi
  log "$tag built in $((SECONDS - started)) s"
}
STAGE=$(mktemp -d /var/tmp/temper-docker.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

# ---- 2. PostgreSQL -----------------------------------------------------------------------
PG_TAG=temper/postgres:$({ echo "$BASE_TAG"; cat docker/postgres.Dockerfile docker/postgres-entrypoint.sh; } | hash_of)
mkdir -p "$STAGE/postgres"
cp docker/postgres-entrypoint.sh "$STAGE/postgres/"
build "$PG_TAG" docker/postgres.Dockerfile "$STAGE/postgres"

# ---- 3. Temporal (the CLI's dev server, built once per machine by install-temporal.sh) -----
TEMPORAL_BIN=${TEMPER_TEMPORAL_BIN_DIR:-$HOME/.cache/temper/bin}/temporal
[[ -x $TEMPORAL_BIN ]] || { log "$TEMPORAL_BIN is missing (scripts/install-temporal.sh)"; exit 1; }
TEMPORAL_TAG=temper/temporal:$({ echo "$BASE_TAG"; cat docker/temporal.Dockerfile; sha256sum <"$TEMPORAL_BIN"; } | hash_of)
mkdir -p "$STAGE/temporal"
cp "$TEMPORAL_BIN" "$STAGE/temporal/temporal"
build "$TEMPORAL_TAG" docker/temporal.Dockerfile "$STAGE/temporal"

# ---- 4. temper ---------------------------------------------------------------------------
# The hash covers every file the build context sends (docker/Dockerfile.dockerignore leaves the
# rest out): the tracked files under the paths the Dockerfile copies, as they are on disk.
TEMPER_INPUTS=(package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json docker/provision-node.sh
  scripts/build-native.mjs native/src web src bin catalog docker/Dockerfile docker/Dockerfile.dockerignore)
TEMPER_TAG=$({ echo "$BASE_TAG"; git ls-files -z -- "${TEMPER_INPUTS[@]}" | sort -z |
  xargs -0 sha256sum; } | hash_of)
for target in control-plane worker; do
  build "temper/$target:$TEMPER_TAG" docker/Dockerfile . --target "$target"
done

# Older tags of these images (from earlier trees) are removed, so the disk holds one set.
if ((!CHECK)); then
  for keep in "$BASE_TAG" "$PG_TAG" "$TEMPORAL_TAG" "temper/control-plane:$TEMPER_TAG" "temper/worker:$TEMPER_TAG"; do
    $DOCKER images --format '{{.Repository}}:{{.Tag}}' "${keep%%:*}" | while read -r old; do
      [[ $old == "$keep" ]] || $DOCKER rmi "$old" >/dev/null
    done
  done
  # BuildKit keeps the layers of removed images as build cache; bounded, so rebuilds over
  # many trees cannot fill the disk (it had grown to 12 GB), while today's layers stay cached.
  $DOCKER builder prune -f --keep-storage 4GB >/dev/null
fi

echo "TEMPER_BASE_IMAGE=$BASE_TAG"
echo "TEMPER_POSTGRES_IMAGE=$PG_TAG"
echo "TEMPER_TEMPORAL_IMAGE=$TEMPORAL_TAG"
echo "TEMPER_IMAGE_TAG=$TEMPER_TAG"
