#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (and, later, `make run-ha`): Debian's package, installed
# if missing; initialised and run as the `postgres` user (PostgreSQL refuses root), socket-only
# in DIR, trust authentication on that socket.
#   tools/postgres.sh start DIR   prints the database URL (database `guard`)
#   tools/postgres.sh pause DIR   stops it, keeping its data; resume DIR starts it again
#   tools/postgres.sh stop DIR    stops it and removes DIR
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?folder}
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
bin=$(pg_bin)
case $cmd in
start)
  if [ -z "$bin" ]; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    bin=$(pg_bin)
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres "$dir"
  chmod 700 "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir -c listen_addresses='' -c fsync=on" start >/dev/null
  runuser -u postgres -- "$bin/createdb" -h "$dir" guard
  # The socket folder as the URL's host, percent-encoded.
  echo "postgresql://postgres@${dir//\//%2F}/guard"
  ;;
pause)
  # Stops the server, keeping its data (tests of a database restart).
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
resume)
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir -c listen_addresses='' -c fsync=on" start >/dev/null
  ;;
stop)
  if [ -d "$dir/data" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|pause|resume|stop DIR" >&2
  exit 2
  ;;
esac
