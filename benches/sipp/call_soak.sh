#!/usr/bin/env bash
# No growth: calls at RATE per second for SECS seconds (default 1000/s for 10 minutes) through
# `switchboard serve` (SIPp SBC on 127.0.0.2 to a SIPp phone on 1001, snapshots and events in
# a private Redis); the node's RSS and calls in progress every minute, then, once the load
# stops, the time until every call actor (and with it every transaction and dialog) is gone.
#
#   benches/sipp/call_soak.sh             # RATE=1000 SECS=600
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/benches/sipp"
rate=${RATE:-1000}
secs=${SECS:-600}
sb_port=${SB_PORT:-35060}
phone_port=${PHONE_PORT:-36001}

(cd "$root" && cargo build --release --locked -q -p switchboard)
bin=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port $((sb_port + 3)) --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    > "$work/redis.log" 2>&1 &
pids+=($!)
sleep 0.5
printf '[sip]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n[calls]\nprobe_secs = 0\n[stores]\nredis = "redis://127.0.0.1:%s"\n[events]\nstream_length = 100000\n' \
    "$sb_port" $((sb_port + 1)) $((sb_port + 2)) $((sb_port + 3)) > "$work/switchboard.toml"
RUST_LOG=warn "$bin/switchboard" serve --config "$work/switchboard.toml" > "$work/switchboard.log" 2>&1 &
sb=$!
pids+=($sb)
sleep 1
# Registered for an hour (the registrar's maximum), so the binding outlives the run.
sed 's/Expires: 300/Expires: 3600/' "$here/register_md5.xml" > "$work/register_hour.xml"
(cd "$work" && sipp -sf "$work/register_hour.xml" -s 1001 -au 1001 -ap demo1001 -m 1 -i 127.0.0.1 \
    -p "$phone_port" -timeout 10s -nostdin "127.0.0.1:$sb_port" > /dev/null 2>&1)
(cd "$work" && exec sipp -sf "$here/uas_load.xml" -i 127.0.0.1 -p "$phone_port" -nostdin \
    > /dev/null 2>&1) &
pids+=($!)
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$sb/status"; }
active() { curl -s "http://127.0.0.1:$((sb_port + 1))/metrics" | awk '/^switchboard_calls_active/ {print $2}'; }
calls=$((rate * secs))
(cd "$work" && sipp -sn uac -s 1001 -i 127.0.0.2 -p $((phone_port + 100)) -r "$rate" -m "$calls" \
    -timeout $((secs + 120))s -nostdin -trace_stat -stf soak.csv "127.0.0.1:$sb_port" > /dev/null 2>&1) &
uac=$!
echo "$calls calls at $rate/s over $secs s"
for ((t = 60; t <= secs; t += 60)); do
    sleep 60
    echo "  at ${t}s: RSS $(rss) KiB, $(active) calls in progress"
done
wait "$uac" || true
python3 - "$work/soak.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(f"  SIPp: {last[h.index('SuccessfulCall(C)')]} successful, {last[h.index('FailedCall(C)')]} failed")
PY
start=$(date +%s)
for _ in $(seq 120); do [ "$(active)" = 0 ] && break; sleep 1; done
echo "  load stopped: $(active) calls left after $(( $(date +%s) - start )) s, RSS $(rss) KiB"
