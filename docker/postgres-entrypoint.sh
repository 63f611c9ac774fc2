#!/bin/sh
# First start: a cluster whose superuser is $POSTGRES_USER with $POSTGRES_PASSWORD (password
# authentication for TCP, trust only on the container's own socket) and a $POSTGRES_DB database.
# Then the server in the foreground, as PID 1's child replaced by exec (SIGTERM is a smart
# shutdown).
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:=$POSTGRES_USER}"
PORT=${POSTGRES_PORT:-5432}
LISTEN=${POSTGRES_LISTEN:-127.0.0.1}
SOCKETS=/tmp
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $SOCKETS -p $PORT" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    createdb -h "$SOCKETS" -p "$PORT" -U "$POSTGRES_USER" "$POSTGRES_DB"
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c "listen_addresses=$LISTEN" -p "$PORT" -k "$SOCKETS"
