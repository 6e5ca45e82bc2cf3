#!/usr/bin/env bash
# A three-node NATS JetStream cluster and two airlock brokers on this machine
# (loopback ports), for trying fleet mode. docs/deploy.md explains each part.
#
#   deploy/cluster.sh up     [DIR]   # start (DIR default: ./airlock-fleet)
#   deploy/cluster.sh down   [DIR]   # stop everything started by `up`
#   deploy/cluster.sh status [DIR]   # the processes; `airlock status` tells the rest
#   deploy/cluster.sh kill   NAME [DIR]   # kill -9 one part (n0 n1 n2 b1 b2)
#   deploy/cluster.sh start  NAME [DIR]   # start it again (same store, same name)
#
# Needs nats-server on PATH (go install github.com/nats-io/nats-server/v2@v2.15.3),
# curl, and an airlock binary (AIRLOCK=path, default: go build into DIR).
# AIRLOCK_FLEET_PORT moves the ports (default 14222; see below); POLICY picks
# the policy (default examples/policy.yaml).
set -euo pipefail
cmd=${1:-up}
case $cmd in kill | start) NAME=${2:?usage: $0 $cmd NAME [DIR]}; shift ;; esac
DIR=$(realpath -m "${2:-./airlock-fleet}")
HERE=$(cd "$(dirname "$0")" && pwd)
POLICY=${POLICY:-$HERE/../examples/policy.yaml}
AIRLOCK=${AIRLOCK:-$DIR/airlock}
# Ports: client BASE, BASE+1, BASE+2; cluster BASE+2000…; monitoring BASE+4000…
BASE=${AIRLOCK_FLEET_PORT:-14222}
CLIENT_PORTS=($BASE $((BASE + 1)) $((BASE + 2)))
CLUSTER_PORTS=($((BASE + 2000)) $((BASE + 2001)) $((BASE + 2002)))
MONITOR_PORTS=($((BASE + 4000)) $((BASE + 4001)) $((BASE + 4002)))
URLS="nats://127.0.0.1:${CLIENT_PORTS[0]},nats://127.0.0.1:${CLIENT_PORTS[1]},nats://127.0.0.1:${CLIENT_PORTS[2]}"

node_conf() {
  local i=$1 routes=""
  for j in 0 1 2; do
    [ "$j" = "$i" ] && continue
    routes="${routes:+$routes, }nats://127.0.0.1:${CLUSTER_PORTS[$j]}"
  done
  cat >"$DIR/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${CLIENT_PORTS[$i]}
http: 127.0.0.1:${MONITOR_PORTS[$i]}
jetstream {
  store_dir: "$DIR/n$i"
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: airlock
  listen: 127.0.0.1:${CLUSTER_PORTS[$i]}
  routes: [$routes]
}
CONF
}

start_node() {
  local i=$1
  mkdir -p "$DIR/n$i"
  [ -f "$DIR/n$i.conf" ] || node_conf "$i"
  nats-server -c "$DIR/n$i.conf" >>"$DIR/n$i.log" 2>&1 &
  echo $! >"$DIR/n$i.pid"
}

start_broker() {
  local b=$1
  "$AIRLOCK" serve --nats "$URLS" --replicas 3 --name "$b" --data "$DIR/$b" \
    --audit-db "$DIR/audit.db" --policy "$POLICY" --log "$DIR/$b.log" >>"$DIR/$b.out" 2>&1 &
  echo $! >"$DIR/$b.pid"
}

# healthy waits until a node's monitoring endpoint says JetStream is current
# (it has a meta leader and has caught up).
healthy() {
  local port=$1
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "nats node on monitor port $port never became healthy (see $DIR/n*.log)" >&2
  return 1
}

# ready waits until broker b answers as part of the airlock service
# (`airlock status` lists it) and still runs.
ready() {
  local b=$1
  for _ in $(seq 1 300); do
    kill -0 "$(cat "$DIR/$b.pid")" 2>/dev/null || { echo "broker $b exited:" >&2; cat "$DIR/$b.out" >&2; return 1; }
    { "$AIRLOCK" status --nats "$URLS" --json 2>/dev/null || true; } | grep -q "\"name\": \"$b\"" && return 0
    sleep 0.1
  done
  echo "broker $b never became ready (see $DIR/$b.out, $DIR/$b.log)" >&2
  return 1
}

stop_pid() { # stop_pid FILE SIGNAL: signal the process and wait until it is gone
  local f=$1 sig=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

case $cmd in
up)
  mkdir -p "$DIR"
  command -v nats-server >/dev/null || { echo "nats-server not on PATH (go install github.com/nats-io/nats-server/v2@v2.15.3)" >&2; exit 2; }
  command -v curl >/dev/null || { echo "curl is needed to wait for the cluster" >&2; exit 2; }
  [ -x "$AIRLOCK" ] || (cd "$HERE/.." && go build -tags sqlite_fts5 -o "$AIRLOCK" ./cmd/airlock)
  for i in 0 1 2; do start_node $i; done
  for p in "${MONITOR_PORTS[@]}"; do healthy "$p"; done
  # One broker after the other: the first creates the replicated buckets.
  for b in b1 b2; do
    start_broker $b
    ready $b
  done
  echo "fleet up: NATS $URLS · brokers b1 b2 · audit $DIR/audit.db"
  echo "try: $AIRLOCK submit --nats $URLS --agent research-assistant --tool search_web --args '{\"query\":\"hi\"}'"
  ;;
down)
  for f in "$DIR"/b*.pid; do stop_pid "$f" TERM; done
  for f in "$DIR"/n*.pid; do stop_pid "$f" TERM; done
  echo "fleet down"
  ;;
status)
  for f in "$DIR"/n*.pid "$DIR"/b*.pid; do
    [ -f "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$(basename "$f" .pid): running"; else echo "$(basename "$f" .pid): dead"; fi
  done
  [ -f "$DIR/audit.db" ] && echo "audit: $DIR/audit.db" || true
  ;;
kill)
  stop_pid "$DIR/$NAME.pid" KILL
  echo "$NAME killed (-9)"
  ;;
start)
  case $NAME in
  n[0-2]) start_node "${NAME#n}"; healthy "${MONITOR_PORTS[${NAME#n}]}" ;;
  b*) start_broker "$NAME"; ready "$NAME" ;;
  *) echo "unknown part $NAME (n0 n1 n2 b1 b2)" >&2; exit 2 ;;
  esac
  echo "$NAME started"
  ;;
*) echo "usage: $0 up|down|status [DIR] · $0 kill|start NAME [DIR]" >&2; exit 2 ;;
esac
