#!/usr/bin/env bash
# Memory per call: CALLS established calls (default 10,000) held open through `switchboard
# serve` (SIPp SBC on 127.0.0.2 to a SIPp phone on 1001), RSS read before and while they are
# all up, once the transactions that set them up have ended (64*T1 = 32 s after the last
# answer: what a call costs for as long as it lasts); then, after they end and every call
# actor is gone, RSS again and the calls left.
#
#   benches/sipp/call_memory.sh            # CALLS=10000 RATE=500 HOLD=120 (seconds)
#   REDIS=redis://127.0.0.1:6379/9 benches/sipp/call_memory.sh
#
# Call snapshots and events go to Redis, as in production: REDIS, or a private redis-server
# started here; with NO_REDIS=1 they stay in the node's memory (and count in its RSS).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/benches/sipp"
calls=${CALLS:-10000}
rate=${RATE:-500}
hold=${HOLD:-120}
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

redis=${REDIS:-}
if [ -z "$redis" ] && [ -z "${NO_REDIS:-}" ]; then
    redis-server --port $((sb_port + 3)) --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
        > "$work/redis.log" 2>&1 &
    pids+=($!)
    redis="redis://127.0.0.1:$((sb_port + 3))"
    sleep 0.5
fi
printf '[sip]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n[calls]\nprobe_secs = 0\n' \
    "$sb_port" $((sb_port + 1)) $((sb_port + 2)) > "$work/switchboard.toml"
if [ -n "$redis" ]; then printf '[stores]\nredis = "%s"\n' "$redis" >> "$work/switchboard.toml"; fi
RUST_LOG=warn "$bin/switchboard" serve --config "$work/switchboard.toml" > "$work/switchboard.log" 2>&1 &
sb=$!
pids+=($sb)
sleep 1
(cd "$work" && sipp -sf "$here/register_md5.xml" -s 1001 -au 1001 -ap demo1001 -m 1 -i 127.0.0.1 \
    -p "$phone_port" -timeout 10s -nostdin "127.0.0.1:$sb_port" > /dev/null 2>&1)
(cd "$work" && exec sipp -sf "$here/uas_load.xml" -i 127.0.0.1 -p "$phone_port" -nostdin \
    -max_socket 100000 > /dev/null 2>&1) &
pids+=($!)
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$sb/status"; }
active() { curl -s "http://127.0.0.1:$((sb_port + 1))/metrics" | awk '/^switchboard_calls_active/ {print $2}'; }
before=$(rss)
(cd "$work" && sipp -sn uac -s 1001 -i 127.0.0.2 -p $((phone_port + 100)) -r "$rate" -m "$calls" \
    -l $((calls + 100)) -d $((hold * 1000)) -timeout $((hold * 3 + 60))s -nostdin \
    "127.0.0.1:$sb_port" > /dev/null 2>&1) &
uac=$!
sleep $((calls / rate + 40))
up=$(active)
during=$(rss)
echo "$up calls up: RSS $before KiB before, $during KiB with them: $(( (during - before) * 1024 / (up > 0 ? up : 1) )) bytes per call"
wait "$uac" || echo "some calls failed"
for _ in $(seq 120); do [ "$(active)" = 0 ] && break; sleep 1; done
echo "after they ended: $(active) calls left, RSS $(rss) KiB"
