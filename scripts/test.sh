#!/usr/bin/env bash
# Runs every test of switchboard on a fresh Debian 12 machine: installs the peers the tests talk
# to (SIPp, baresip, sipvicious, sngrep, Chromium, Redis, PostgreSQL, protoc, socat, xmllint) when missing, starts a private Redis, a
# private three-master Redis Cluster and a private PostgreSQL cluster on free ports in a
# temporary directory, runs the whole cargo test suite, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
command -v baresip >/dev/null || missing+=(baresip-core)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
# rdkafka builds its bundled librdkafka with TLS against the system OpenSSL.
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v make >/dev/null || missing+=(make)
# The TLS test of reporting: certificates made with openssl, TLS in front of the broker by socat.
command -v openssl >/dev/null || missing+=(openssl)
command -v socat >/dev/null || missing+=(socat)
# The scanners of the defence tests.
command -v svwar >/dev/null || missing+=(sipvicious)
# Checks the MSML bodies the media server of the supervisor tests receives.
command -v xmllint >/dev/null || missing+=(libxml2-utils)
# The HEP collector of the SIP capture test.
command -v sngrep >/dev/null || missing+=(sngrep)
# The browser of the WebSocket and wallboard tests.
command -v chromium >/dev/null || missing+=(chromium)
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
[ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Builds outside the checkout, so a fresh clone reuses earlier work.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard/target}"

# The Kafka-compatible broker of the reporting tests: tansu, built once (about 13 minutes)
# into a cache outside the checkout and reused; each test starts its own on a private port.
# dynostore gives its memory storage; libsql its SQLite storage, which keeps the SASL users
# of the TLS test across a restart. A build with other features is replaced.
tools="${SWITCHBOARD_TOOLS:-$HOME/.cache/switchboard/tools}"
tansu_features="dynostore,libsql"
if [ ! -x "$tools/bin/tansu" ] || [ "$(cat "$tools/tansu.features" 2>/dev/null)" != "$tansu_features" ]; then
  echo "building tansu 0.6 (the test broker) with $tansu_features into $tools, once"
  env -u CARGO_TARGET_DIR cargo install tansu --version '^0.6' --features "$tansu_features" --root "$tools" --locked --quiet --force
  echo "$tansu_features" > "$tools/tansu.features"
fi
export SWITCHBOARD_TEST_TANSU="$tools/bin/tansu"

work=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-test.XXXXXX")
redis_pid=""
cluster_pids=()
pg_data=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  [ -n "$pg_data" ] && as_pg "$(pg_bin)/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1
  rm -rf "$work"
}

# initdb refuses to run as root: the cluster belongs to the postgres user (created by Debian's
# package) when we are root, to us otherwise.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
trap cleanup EXIT

free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly yes --appendfsync everysec --databases 64 \
  --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 1 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null
export SWITCHBOARD_TEST_REDIS="redis://127.0.0.1:$redis_port"
echo "private redis on $SWITCHBOARD_TEST_REDIS"

# A three-master Redis Cluster (no replicas) for the tests of switchboard on a cluster. Each
# node also listens on its port + 10000 for the cluster's own bus.
# A port picked free may be taken before the node binds it (or picked twice): a node that
# does not answer is started again on another port.
cluster_seeds=()
for i in 1 2 3; do
  for attempt in 1 2 3 4 5; do
    while :; do
      port=$(free_port)
      [[ " ${cluster_seeds[*]} " == *":$port "* ]] && continue
      (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null || break
    done
    mkdir -p "$work/cluster/$port"
    (cd "$work/cluster/$port" && exec redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file nodes.conf --save "" --appendonly no --logfile redis.log) &
    pid=$!
    up=""
    for _ in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && { up=1; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -n "$up" ]; then
      cluster_pids+=($pid)
      cluster_seeds+=("127.0.0.1:$port")
      break
    fi
    kill "$pid" 2>/dev/null || true
    echo "redis cluster node on port $port did not start (attempt $attempt): trying another port"
  done
done
((${#cluster_seeds[@]} == 3)) || { echo "the test Redis Cluster did not start"; exit 1; }
redis-cli --cluster create "${cluster_seeds[@]}" --cluster-replicas 0 --cluster-yes >"$work/cluster/create.log" 2>&1 \
  || { cat "$work/cluster/create.log"; exit 1; }
for _ in $(seq 1 100); do
  redis-cli -p "${cluster_seeds[0]#*:}" cluster info | grep -q '^cluster_state:ok' && break
  sleep 0.1
done
SWITCHBOARD_TEST_REDIS_CLUSTER=$(printf 'redis://%s,' "${cluster_seeds[@]}")
export SWITCHBOARD_TEST_REDIS_CLUSTER="${SWITCHBOARD_TEST_REDIS_CLUSTER%,}"
echo "private redis cluster on $SWITCHBOARD_TEST_REDIS_CLUSTER"

pg_port=$(free_port)
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg" && chmod 755 "$work"
pg_data="$work/pg/data"
as_pg "$(pg_bin)/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
as_pg "$(pg_bin)/pg_ctl" -D "$pg_data" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export SWITCHBOARD_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "private postgresql on $SWITCHBOARD_TEST_POSTGRES"

cargo test --workspace --locked "$@"
