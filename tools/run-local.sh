#!/usr/bin/env bash
# The local stack behind `make run`: guardctl on :8081, the demo MCP server on :8000 (or
# MCP_UPSTREAM), Envoy with mcp-guard on :10000 (admin :9901). Ctrl-C stops everything.
#
# With HA=1 (`make run-ha`): a throwaway PostgreSQL (tools/postgres.sh, in $DATA/pg) and two
# guardctl replicas on it, :8081 and :8082, both in Envoy's guardctl cluster (the shipped config
# lists both). The database is removed on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
BIN=target/native-release
DATA=${MCP_GUARD_DATA:-.data}
HA=${HA:-}
mkdir -p "$DATA"
pids=()
pg_dir=$(realpath -m "$DATA/pg")

stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the local stack"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n $HA ]]; then tools/postgres.sh stop "$pg_dir"; fi
}
trap stop INT TERM EXIT

wait_for_port() { # name host port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$2/$3") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $1 did not open $2:$3 (see $DATA/$1.log)" >&2
  exit 1
}

guardctl_ports=(8081)
if [[ -n $HA ]]; then guardctl_ports=(8081 8082); fi
for port in "${guardctl_ports[@]}" 10000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "error: 127.0.0.1:$port is already in use; stop what holds it first" >&2
    exit 1
  fi
done

db="$DATA/guard.db"
if [[ -n $HA ]]; then
  db=$(tools/postgres.sh start "$pg_dir")
fi
# One after the other: the first replica creates the admin token file the others read.
for port in "${guardctl_ports[@]}"; do
  log=guardctl
  if [[ -n $HA ]]; then log=guardctl-$port; fi
  "$BIN/guardctl" serve --listen "127.0.0.1:$port" --db "$db" \
    --admin-token-file "$DATA/admin-token" >"$DATA/$log.log" 2>&1 &
  pids+=($!)
  wait_for_port "$log" 127.0.0.1 "$port"
done

config=envoy/envoy.yaml
if [[ -n "${MCP_UPSTREAM:-}" ]]; then
  host=${MCP_UPSTREAM%:*}
  port=${MCP_UPSTREAM##*:}
  if [[ -z "$host" || ! "$port" =~ ^[0-9]+$ ]]; then
    echo "error: MCP_UPSTREAM must be HOST:PORT, got '$MCP_UPSTREAM'" >&2
    exit 1
  fi
  config="$DATA/envoy.yaml"
  # The upstream endpoint is the only `port_value: 8000` in the shipped config.
  sed -e "s/{ address: 127.0.0.1, port_value: 8000 }/{ address: $host, port_value: $port }/" \
    envoy/envoy.yaml >"$config"
  upstream="$MCP_UPSTREAM"
else
  "$BIN/mcp-demo-server" --listen 127.0.0.1:8000 >"$DATA/mcp-demo-server.log" 2>&1 &
  pids+=($!)
  wait_for_port mcp-demo-server 127.0.0.1 8000
  upstream="127.0.0.1:8000 (demo MCP server)"
fi

"$ENVOY" -c "$config" --concurrency 2 --log-level warn --component-log-level wasm:info \
  --file-flush-interval-msec 500 \
  >"$DATA/envoy.log" 2>&1 &
pids+=($!)
wait_for_port envoy 127.0.0.1 10000

key_json=$("$BIN/guardctl" keys create --org demo --role member --name "make run $(date +%F)" --json \
  --admin-token-file "$DATA/admin-token")
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$key_json")
key_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])' <<<"$key_json")

# Print the curl line only once it works: the proxy has loaded the key set and the new key
# (a path Envoy answers itself gives 404 once the key is accepted, 503 or 401 before).
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
    http://127.0.0.1:10000/not-mcp || true)
  if [[ $code == 404 ]]; then break; fi
  sleep 0.1
done
if [[ $code != 404 ]]; then
  echo "error: Envoy does not accept the new key yet (HTTP $code; see $DATA/envoy.log)" >&2
  exit 1
fi

cat <<EOF

mcp-guard local stack is up
  Envoy + mcp-guard  http://127.0.0.1:10000/api/mcp   (admin http://127.0.0.1:9901)
$(if [[ -n $HA ]]; then
  echo "  guardctl replicas  http://127.0.0.1:8081 and http://127.0.0.1:8082 (admin token: $DATA/admin-token)"
  echo "  PostgreSQL         $db (removed on Ctrl-C)"
else
  echo "  guardctl           http://127.0.0.1:8081             (admin token: $DATA/admin-token)"
fi)
  upstream           $upstream
  logs               $DATA/*.log

A demo key for org "demo" (key-id $key_id) was created. Try it:

  curl -sS http://127.0.0.1:10000/api/mcp \\
    -H 'Authorization: Bearer $token' \\
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}'

Without the header you get 401; revoke it with:
  $BIN/guardctl keys revoke $key_id --admin-token-file $DATA/admin-token
$(if [[ -n $HA ]]; then
  echo "Any replica takes it: add --server http://127.0.0.1:8082, or kill one replica and go on."
fi)

Ctrl-C stops everything.
EOF

wait -n "${pids[@]}" || true
echo "a component exited; see $DATA/*.log" >&2
