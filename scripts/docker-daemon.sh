#!/usr/bin/env bash
# Starts Debian's Docker engine (docker.io) when none answers, for the image build
# (scripts/docker-images.sh) and the compose test (test/docker). Machines here have no init
# system to start it, so this runs dockerd itself, detached, logging to
# ${TEMPER_DOCKERD_DIR:-/var/lib/temper-dockerd}/dockerd.log.
#   bash scripts/docker-daemon.sh          start it if needed; prints the socket
#   bash scripts/docker-daemon.sh stop     stop the one this script started (its pid file)
# The engine runs without a bridge, NAT or iptables rules (--bridge=none --iptables=false
# --ip-forward=false): temper's containers use the host's network, and the engine leaves the
# host's firewall as it found it (the default would set FORWARD to DROP, which the worker-host
# tests' network namespaces rely on being open). Needs root.
set -euo pipefail

DOCKER=/usr/bin/docker # Debian's client; a newer one earlier on PATH may not talk to 20.10
SOCK=/var/run/docker.sock
STATE=${TEMPER_DOCKERD_DIR:-/var/lib/temper-dockerd}
PIDFILE=$STATE/dockerd.pid

if [[ $(id -u) -ne 0 ]]; then
  echo "docker-daemon: needs root (dockerd)" >&2
  exit 1
fi
for bin in /usr/sbin/dockerd $DOCKER; do
  if [[ ! -x $bin ]]; then
    echo "docker-daemon: $bin is missing (scripts/setup.sh installs docker.io)" >&2
    exit 1
  fi
done

if [[ ${1:-start} == stop ]]; then
  if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  exit 0
fi

if $DOCKER -H "unix://$SOCK" version >/dev/null 2>&1; then
  echo "$SOCK"
  exit 0
fi

mkdir -p "$STATE"
setsid /usr/sbin/dockerd --host "unix://$SOCK" --bridge=none --iptables=false --ip-forward=false \
  >>"$STATE/dockerd.log" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 1 300); do
  if $DOCKER -H "unix://$SOCK" version >/dev/null 2>&1; then
    echo "$SOCK"
    exit 0
  fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "docker-daemon: dockerd did not come up; the end of $STATE/dockerd.log:" >&2
tail -n 20 "$STATE/dockerd.log" >&2
exit 1
